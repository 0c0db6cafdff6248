"""checkpoint.py — an RWKV-6 checkpoint's tensors under BlinkDL's names, and its hyper-parameters.

Loads a .pth / pytorch_model.bin (pth.py), a .safetensors file (safetensors.py) or a Hugging
Face directory (config.json with one weights file or shards listed in a *.index.json), renames
Hugging Face keys (`rwkv.blocks.N.attention.*`, `.feed_forward.*`, `pre_ln`, `rwkv.embeddings`)
to BlinkDL's, and reads the dimensions off the tensor shapes, checking every tensor.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .pth import CheckpointTensor, read_torch_checkpoint
from .safetensors import read_safetensors
from .strict_json import parse_json

__all__ = ["ConvertError", "RWKV6Params", "load_checkpoint", "infer_hparams", "hf_to_blink", "blink_to_hf",
           "LERPS"]

LAYER_NORM_EPS = 1e-5  # BlinkDL's RWKV-6 (not stored in a .pth)
DEFAULT_RESCALE_EVERY = 6  # the Hugging Face RWKV-6 configs' value
LERPS = ("w", "k", "v", "r", "g")  # the order of time_mix_lerp_fused


class ConvertError(ValueError):
    """A checkpoint that is not a consistent RWKV-6 model."""


# (BlinkDL prefix, Hugging Face prefix): whole-name renames, then the parts of a block's keys
_TOP = (("emb.weight", "rwkv.embeddings.weight"), ("ln_out.", "rwkv.ln_out."))
_BLOCK = (("att.", "attention."), ("ffn.", "feed_forward."), ("ln0.", "pre_ln."))


def _rename(name: str, to_hf: bool) -> str:
    i, o = (0, 1) if to_hf else (1, 0)
    for pair in _TOP:
        if name.startswith(pair[i]):
            return pair[o] + name[len(pair[i]):]
    m = re.match(r"(rwkv\.)?blocks\.(\d+)\.(.*)$", name)
    if m and bool(m.group(1)) != to_hf:
        rest = m.group(3)
        for pair in _BLOCK:
            if rest.startswith(pair[i]):
                rest = pair[o] + rest[len(pair[i]):]
                break
        return f"{'rwkv.' if to_hf else ''}blocks.{m.group(2)}.{rest}"
    return name


def hf_to_blink(name: str) -> str:
    """Hugging Face RWKV-6 key -> BlinkDL key (BlinkDL keys pass through)."""
    return _rename(name, to_hf=False)


def blink_to_hf(name: str) -> str:
    """BlinkDL key -> Hugging Face RWKV-6 key (the renaming of the user guide's script)."""
    return _rename(name, to_hf=True)


def _read_any(path: Path) -> dict[str, CheckpointTensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return read_torch_checkpoint(path)


_MAX_JSON = 64 << 20  # config.json is ~1 KB; a shard index ~100 bytes per tensor


def _read_json(p: Path) -> Any:
    """A small JSON file; ConvertError naming it when it is too big, not UTF-8, not JSON, or
    nested deeper than the parser can follow."""
    with open(p, "rb") as f:
        raw = f.read(_MAX_JSON + 1)
    if len(raw) > _MAX_JSON:
        raise ConvertError(f"{p}: more than {_MAX_JSON >> 20} MiB; not a model's JSON file")
    return parse_json(raw, str(p), ConvertError)


# config.json keys read here and the types they must have (None, JSON null, means "not given")
_CONFIG_INTS = ("hidden_size", "num_hidden_layers", "head_size", "vocab_size", "intermediate_size", "rescale_every")
_CONFIG_FLOATS = ("layer_norm_epsilon",)


def _check_config(cfg: Any, where: str) -> dict[str, Any]:
    """The config as a dict whose keys we use have the right types, or ConvertError naming `where`."""
    if not isinstance(cfg, dict):
        raise ConvertError(f"{where}: not a JSON object")
    for key in _CONFIG_INTS:
        v = cfg.get(key)
        if v is not None and (type(v) is not int or v < 0):
            raise ConvertError(f"{where}: {key} must be a non-negative integer, got {_show(v)}")
    for key in _CONFIG_FLOATS:
        v = cfg.get(key)
        if v is not None and (type(v) not in (int, float) or not math.isfinite(v) or v <= 0):
            raise ConvertError(f"{where}: {key} must be a positive number, got {_show(v)}")
    return cfg


def _show(v: Any) -> str:
    """A JSON value for a message: short, and never str() of a deep or huge structure."""
    if isinstance(v, (bool, float)) or v is None or (type(v) is int and abs(v) < 10 ** 30):
        return json.dumps(v)
    if isinstance(v, str):
        return repr(v[:40])
    return f"a JSON {type(v).__name__}"


def _shard_files(path: Path, ip: Path) -> list[Path]:
    """The weight files a *.index.json lists, each a plain file name in `path` that exists."""
    index = _read_json(ip)
    wm = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
        raise ConvertError(f"{ip}: not a shard index (no weight_map of tensor name -> file name)")
    files = []
    for n in sorted(set(wm.values())):
        if n in ("", ".", "..") or Path(n).name != n:
            raise ConvertError(f"{ip}: shard name {n[:80]!r} is not a file in {path}")
        if not (path / n).is_file():
            raise ConvertError(f"{ip}: shard {n[:80]!r} is missing from {path}")
        files.append(path / n)
    return files


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, CheckpointTensor], dict[str, Any] | None]:
    """(tensors by BlinkDL name, the Hugging Face config or None) of a .pth / .bin / .safetensors
    file or a Hugging Face directory (config.json with model.safetensors, pytorch_model.bin, or
    shards listed in a *.index.json). ValueError (ConvertError, CheckpointError) naming the file
    for anything malformed; OSError when a file cannot be read."""
    path = Path(path)
    config = None
    if path.is_dir():
        cfg = path / "config.json"
        if cfg.is_file():
            config = _check_config(_read_json(cfg), str(cfg))
        files: list[Path] = []
        for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            ip = path / index
            if ip.is_file():
                files = _shard_files(path, ip)
                break
        if not files:
            for single in ("model.safetensors", "pytorch_model.bin"):
                if (path / single).is_file():
                    files = [path / single]
                    break
        if not files:
            raise ConvertError(f"{path}: no model.safetensors, pytorch_model.bin or shard index in the directory")
    else:
        files = [path]
    tensors: dict[str, CheckpointTensor] = {}
    for f in files:
        for name, t in _read_any(f).items():
            key = hf_to_blink(name)
            if key in tensors:
                raise ConvertError(f"{f}: tensor {name[:80]!r} appears twice in the checkpoint")
            t.name = key
            tensors[key] = t
    from .x070 import hf_x070_to_blink  # noqa: PLC0415 (x070 builds on this module)
    return hf_x070_to_blink(tensors), config


@dataclass(frozen=True)
class RWKV6Params:
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ffn: int
    head_size: int
    n_head: int
    time_mix_extra_dim: int  # D: time_maa_w1 is [C, 5 D]
    time_decay_extra_dim: int  # time_decay_w1 is [C, Dd]
    layer_norm_eps: float = LAYER_NORM_EPS
    rescale_every: int = DEFAULT_RESCALE_EVERY


def _layer_shapes(C: int, F: int, H: int, N: int, D: int, Dd: int) -> dict[str, tuple[int, ...]]:
    s = {f"ln{k}.{w}": (C,) for k in (1, 2) for w in ("weight", "bias")}
    s.update({f"att.time_maa_{x}": (1, 1, C) for x in ("x",) + LERPS})
    s.update({"att.time_maa_w1": (C, 5 * D), "att.time_maa_w2": (5, D, C), "att.time_decay": (1, 1, C),
              "att.time_decay_w1": (C, Dd), "att.time_decay_w2": (Dd, C), "att.time_faaaa": (H, N),
              "att.ln_x.weight": (C,), "att.ln_x.bias": (C,),
              "ffn.time_maa_k": (1, 1, C), "ffn.time_maa_r": (1, 1, C), "ffn.key.weight": (F, C),
              "ffn.receptance.weight": (C, C), "ffn.value.weight": (C, F)})
    s.update({f"att.{m}.weight": (C, C) for m in ("receptance", "key", "value", "gate", "output")})
    return s


def infer_hparams(tensors: dict[str, CheckpointTensor], config: dict[str, Any] | None = None,
                  rescale_every: int | None = None) -> RWKV6Params:
    """The model's dimensions from its tensor shapes; ConvertError naming the tensor when the
    checkpoint is not a complete, consistent RWKV-6 (x060) model."""
    def shape(k: str, ndim: int | None = None) -> tuple[int, ...]:
        t = tensors.get(k)
        if t is None:
            raise ConvertError(f"missing tensor {k!r}: not an RWKV-6 checkpoint"
                               + (" (an RWKV-7 checkpoint: it converts to GGUF, but --to-hf writes RWKV-6 layouts only)"
                                  if any(".att.x_" in n or "w0" in n for n in tensors) else ""))
        if ndim is not None and len(t.shape) != ndim:
            raise ConvertError(f"tensor {k!r} has shape {list(t.shape)}, expected {ndim} dimensions")
        return t.shape

    if "blocks.0.att.time_maa_w1" not in tensors and "blocks.0.att.time_mix_k" in tensors:
        raise ConvertError("this is an RWKV-4/5 checkpoint (time_mix_* without time_maa_w1); only RWKV-6 and RWKV-7 are supported")
    V, C = shape("emb.weight", 2)
    # [0-9]{1,9}: int() of a 5000-digit block number would raise; no model has 10^9 layers
    layers = sorted({int(m.group(1)) for k in tensors for m in [re.match(r"blocks\.([0-9]{1,9})\.", k)] if m})
    if not layers or layers != list(range(len(layers))):
        raise ConvertError(f"block numbers must run 0..n-1, found {layers[:8]}{'...' if len(layers) > 8 else ''}")
    H, N = shape("blocks.0.att.time_faaaa", 2)
    F = shape("blocks.0.ffn.key.weight", 2)[0]
    w1 = shape("blocks.0.att.time_maa_w1", 2)
    if w1[1] % 5:
        raise ConvertError(f"blocks.0.att.time_maa_w1 has shape {list(w1)}, expected [C, 5 * D]")
    D, Dd = w1[1] // 5, shape("blocks.0.att.time_decay_w1", 2)[-1]
    if min(V, C, F, H, N, D, Dd) < 1:
        raise ConvertError(f"a dimension is 0 (vocab {V}, n_embd {C}, ffn {F}, {H} heads of {N}, LoRA dims {D}/{Dd})")
    if H * N != C:
        raise ConvertError(f"time_faaaa {H}x{N} does not match n_embd {C} (heads x head size)")
    want = {"emb.weight": (V, C), "blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,), "ln_out.weight": (C,),
            "ln_out.bias": (C,), "head.weight": (V, C)}
    for i in layers:
        want.update({f"blocks.{i}.{k}": v for k, v in _layer_shapes(C, F, H, N, D, Dd).items()})
    def same(have: tuple[int, ...], v: tuple[int, ...]) -> bool:
        # the (1, 1, C) mixing vectors may be stored squeezed; they are squeezed on output anyway
        return have == v or (v[:-1] == (1, 1) and tuple(d for d in have if d != 1) == (v[-1],))

    for k, v in want.items():
        if not same(shape(k), v):
            raise ConvertError(f"tensor {k!r} has shape {list(shape(k))}, expected {list(v)} "
                               f"(n_embd {C}, ffn {F}, {H} heads of {N}, LoRA dims {D}/{Dd})")
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise ConvertError(f"unexpected tensor(s) for RWKV-6: {', '.join(extra[:5])}"
                           f"{' ...' if len(extra) > 5 else ''}")
    cfg = _check_config(config if config is not None else {}, "config.json")
    eps = float(cfg.get("layer_norm_epsilon") or LAYER_NORM_EPS)
    r = rescale_every if rescale_every is not None else cfg.get("rescale_every")
    r = DEFAULT_RESCALE_EVERY if r is None else r
    if type(r) is not int or r < 0:
        raise ConvertError(f"rescale_every must be an integer >= 0, got {r!r}")
    for key, have in (("hidden_size", C), ("num_hidden_layers", len(layers)), ("head_size", N),
                      ("vocab_size", V), ("intermediate_size", F)):
        if cfg.get(key) is not None and cfg[key] != have:
            raise ConvertError(f"config.json says {key} = {cfg[key]}, the tensors say {have}")
    return RWKV6Params(len(layers), C, V, F, N, H, D, Dd, eps, r)
