"""The demo model, packaged in rwkvfast/data/demo: a small RWKV-6 trained on WordNet 3.0, so an
installation chats before anything is downloaded. rwkvfast-chat and rwkvfast-server use it
when no -m is given; rwkvfast.Model.demo() opens it. Git keeps the file with the test models
(tests/data/demo) and the build copies it here (setup.py).

It is a real model, not random weights: tools/train_demo.py trains it (see
rwkvfast/data/demo/README.md for its size, training and held-out perplexity). It knows what
English words mean, in the chat format, and little else.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

FILE = "rwkv6-demo-Q8_0.gguf"


def demo_model_path() -> Path:
    """The shipped GGUF; FileNotFoundError (saying what to do) where a build left it out."""
    p = Path(str(resources.files("rwkvfast").joinpath("data", "demo", FILE)))
    if not p.is_file():
        raise FileNotFoundError(f"the demo model {p} is not in this installation; pass -m MODEL.gguf, or "
                                "reinstall from a checkout that has tests/data/demo/" + FILE +
                                " (the build copies it; tools/train_demo.py makes a new one)")
    return p
