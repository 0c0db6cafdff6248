"""rwkvfast.convert — official RWKV-6 and RWKV-7 checkpoints (.pth, Hugging Face, .safetensors) to GGUF, as llama.cpp's
convert_hf_to_gguf.py writes them, in one step and without torch.

    >>> import rwkvfast
    >>> rwkvfast.convert("RWKV-x060-World-1B6-v2.1.pth", "rwkv6-1b6-F16.gguf", outtype="f16")  # doctest: +SKIP

Inputs are read by pth.py (a pickle reader that runs no code) or safetensors.py, and
their keys normalised to BlinkDL's (`emb.weight`, `blocks.N.att.*`, `blocks.N.ffn.*`,
`blocks.0.ln0.*`, `ln_out.*`, `head.weight`). The hyper-parameters come from the tensor shapes
and are cross-checked.

Files: pth.py (the .pth reader; unpickle.py its pickle, read without running it),
safetensors.py, checkpoint.py (names, shapes, hyper-parameters), vocab.py, to_gguf.py (the
GGUF llama.cpp's converter writes), to_hf.py (--to-hf).
"""
from __future__ import annotations

from .checkpoint import ConvertError, RWKV6Params, infer_hparams, load_checkpoint
from .pth import CheckpointError, CheckpointTensor, read_torch_checkpoint
from .safetensors import read_safetensors, write_safetensors
from .to_gguf import OUTTYPES, ConvertProgress, convert, size_label
from .to_hf import to_hf
from .vocab import load_world_vocab

__all__ = ["convert", "to_hf", "load_checkpoint", "infer_hparams", "RWKV6Params", "ConvertProgress",
           "ConvertError", "CheckpointError", "CheckpointTensor", "read_torch_checkpoint", "read_safetensors",
           "write_safetensors", "load_world_vocab", "size_label", "OUTTYPES"]
