"""Fuzz the safetensors reader and the Hugging Face directory reader (rwkvfast/convert/).

Each input is written as a .safetensors file and given to read_safetensors (every tensor it
returns is read in full) and load_checkpoint; the same bytes are also written as the config.json
of a Hugging Face directory holding a valid tiny RWKV-6 model (load_checkpoint, then
infer_hparams, which reads the config's values) and as the shard index of another, so JSON
seeds exercise those readers. Only ValueError and OSError may come out (_harness.py).

    python tests/fuzz/fuzz_safetensors.py -runs=20000   # atheris; see _harness.py for the rest
"""
from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _harness
sys.path.insert(0, str(HERE.parent))  # tests/: torch_zip

import numpy as np  # noqa: E402

from _harness import main, scratch_dir  # noqa: E402
from rwkvfast.convert import infer_hparams, load_checkpoint, read_safetensors, write_safetensors  # noqa: E402
from rwkvfast.convert.checkpoint import blink_to_hf  # noqa: E402
from torch_zip import rwkv6_weights  # noqa: E402


_DIR = scratch_dir("fuzz_safetensors")
_INPUT = _DIR / "input.safetensors"
_HF_CONFIG = _DIR / "hf-config"  # a valid model; the input is its config.json
_HF_INDEX = _DIR / "hf-index"  # the input is its model.safetensors.index.json

_WEIGHTS = rwkv6_weights(n_layer=1, C=64, F=64, V=64, head=64, D=8, Dd=8)
for d in (_HF_CONFIG, _HF_INDEX):
    d.mkdir()
    write_safetensors(d / "model.safetensors", [(blink_to_hf(k), "F32", v.shape, (lambda v=v: iter([v])))
                                                for k, v in _WEIGHTS.items()])
shutil.copy(_HF_INDEX / "model.safetensors", _HF_INDEX / "model-00001-of-00001.safetensors")


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    blob = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(blob)) + blob + data


def seeds() -> list[bytes]:
    """Valid files (each dtype, empty tensors, metadata), the hostile headers of
    tests/test_convert_hostile.py, and config.json / shard index texts."""
    f32 = np.arange(6, dtype="<f4").tobytes()
    out = [
        _safetensors({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                      "b": {"dtype": "F16", "shape": [2], "data_offsets": [24, 28]},
                      "c": {"dtype": "BF16", "shape": [0, 5], "data_offsets": [28, 28]}}, f32 + bytes(4)),
        _safetensors({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                      "y": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)),  # shared bytes
        struct.pack("<Q", 40) + b"[" * 20 + b"]" * 20,
        _safetensors({"x": {"dtype": [], "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
        _safetensors({"x": {"dtype": "F32", "shape": [True], "data_offsets": [False, 4]}}, bytes(4)),
        _safetensors({"x": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 4]}}, bytes(4)),
        json.dumps({"hidden_size": 64, "num_hidden_layers": 1, "head_size": 64, "vocab_size": 64,
                    "intermediate_size": 64, "layer_norm_epsilon": 1e-5, "rescale_every": 6}).encode(),
        b'{"hidden_size": [64], "layer_norm_epsilon": "x", "rescale_every": {}}',
        json.dumps({"weight_map": {blink_to_hf(k): "model-00001-of-00001.safetensors" for k in _WEIGHTS}}).encode(),
        b'{"weight_map": {"a": ".."}}',
    ]
    # the real tiny model too (its header drives the checks of every field)
    out.append((_HF_CONFIG / "model.safetensors").read_bytes()[:4096])
    return out


def one_input(data: bytes) -> None:
    _INPUT.write_bytes(data)
    try:
        for t in read_safetensors(_INPUT).values():
            t.f32()
            t.raw()
    except (ValueError, OSError):
        pass
    try:
        load_checkpoint(_INPUT)
    except (ValueError, OSError):
        pass
    (_HF_CONFIG / "config.json").write_bytes(data)
    try:
        infer_hparams(*load_checkpoint(_HF_CONFIG))
    except (ValueError, OSError):
        pass
    (_HF_INDEX / "model.safetensors.index.json").write_bytes(data)
    try:
        load_checkpoint(_HF_INDEX)
    except (ValueError, OSError):
        pass


if __name__ == "__main__":
    main(seeds, one_input)
