"""The demo model, packaged in rwkvfast/data/demo: a small RWKV-6 trained on WordNet 3.0, so an
installation that carries it chats before anything is downloaded. rwkvfast-chat and
rwkvfast-server use it when no -m is given. The file is made, not kept in git.

It is a real model, not random weights: tools/train_demo.py trains it (see
rwkvfast/data/demo/README.md for its size, training and held-out perplexity). It knows what
English words mean, in the chat format, and little else.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

FILE = "rwkv6-demo-Q8_0.gguf"


def demo_model_path() -> Path:
    """The shipped GGUF; FileNotFoundError (saying how to make it) where a build left it out."""
    p = Path(str(resources.files("rwkvfast").joinpath("data", "demo", FILE)))
    if not p.is_file():
        raise FileNotFoundError(f"the demo model {p} is not in this installation; pass -m MODEL.gguf, or make it "
                                "with tools/train_demo.py")
    return p
