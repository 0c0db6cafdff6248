"""rwkvfast: fast, exact RWKV-6 ("Finch") inference on the CPU from GGUF files.

>>> import rwkvfast
>>> model = rwkvfast.Model("model.gguf")              # doctest: +SKIP
>>> state = model.new_state()                          # doctest: +SKIP
>>> logits = model.forward(model.tokenizer.encode("Hi"), state)   # doctest: +SKIP
"""
from __future__ import annotations

import os

try:
    from rwkvfast import _core
except ImportError as e:  # a source checkout whose extension was never built in place
    raise ImportError(
        f"rwkvfast's C extension is not built next to {os.path.dirname(__file__)}: "
        "run `pip install -e .` in the source tree (or run Python from another directory "
        "after `pip install .`)") from e

from rwkvfast.chat import Chat
from rwkvfast import perplexity
from rwkvfast.convert import convert
from rwkvfast.demo import demo_model_path
from rwkvfast.generate import generate
from rwkvfast.model import Model
from rwkvfast.quantize import quantize
from rwkvfast.sampler import Sampler, SamplerParams
from rwkvfast.state import State
from rwkvfast.tokenizer import StreamDecoder, Tokenizer

__all__ = ["Model", "State", "Tokenizer", "StreamDecoder", "Sampler", "SamplerParams", "Chat", "generate", "convert", "gguf_metadata",
           "demo_model_path", "perplexity", "quantize", "system_info",
           "__version__"]
__version__ = "0.1.0"


def gguf_metadata(path: str | os.PathLike) -> dict:
    """Read a GGUF's header, metadata and tensor table without loading a model.

    Returns ``{"version", "alignment", "data_offset", "file_size", "metadata": {key: value},
    "tensors": [{"name", "type", "shape" (ggml ne order), "offset", "nbytes"}]}``.
    Raises ValueError naming the file and the problem for a malformed file.
    """
    return _core.gguf_read(path)


def system_info() -> str:
    """Which SIMD level and kernel each slot uses, like llama.cpp's system_info line, and the
    Vulkan devices found (or why there are none).

    RWKVFAST_CPU=scalar|avx2|avx512|avx512vnni|amx (read at import) caps the level.
    """
    return f"{_core.system_info().rstrip(' |')} | vulkan: {vulkan_devices_line()}"


def vulkan_devices_line() -> str:
    """'0: NVIDIA ... (discrete, 1.3.280, 24.0 GiB), 1: ...', or why there is no device."""
    if not _core.vk_built():
        return "not built"
    try:
        devs = _core.vk_devices()
    except RuntimeError as e:
        return f"none ({e})"
    if not devs:
        return "none (no device found)"
    return ", ".join(f"{d['index']}: {d['name']} ({d['type']}, {d['api_version']}, "
                     f"{d['memory_bytes'] / 2**30:.1f} GiB)" for d in devs)
