"""to_gguf.py — write a checkpoint as the GGUF llama.cpp's converter makes of it.

What llama.cpp's converter does to RWKV-6 tensors, reproduced here (RWKV-7: x070.py):

* names: `blk.N.time_mix_*`, `blk.N.channel_mix_*`, `token_embd`, `output`, ... (_plan below);
* time_maa_w1, time_decay_w1, time_decay_w2 are transposed; time_maa_w2 [5, D, C] becomes
  [5, C, D]; time_decay and the lerps lose their unit dimensions; time_maa_{w,k,v,r,g} are
  stacked in that order into time_mix_lerp_fused [5, 1, 1, C];
* time_mix_output and channel_mix_value of layer i are divided by 2^(i // rescale_every)
  (exact: powers of two), which the engine undoes on the residual stream;
* 1-D tensors, norms, time_mix_first and the LoRA/lerp tensors stay F32 in every file; the big
  matrices, token_embd and output take the output type (quantized types through the quantizer's
  per-tensor rules);
* tensors come in the order of the Hugging Face names sorted as strings (the order of the
  safetensors file llama.cpp reads), metadata in the converter's order, with the RWKV World
  vocabulary (ids 1.. from rwkv_vocab_v20230424.txt, `<s>` at 0, `[PADi]` up to the embedding
  size) and its chat template.

The GGUF is written to a temporary file and renamed when complete; an existing output is
replaced only with overwrite=True (--force). Before anything is written, the output's size is
checked against the input's (every output element comes from one stored element of at least
2 bytes and takes at most 4, so the tensors can at most double) and against the free space
where it goes.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..gguf_writer import F32, U32, tensor_nbytes, write_gguf
from ..quantize import FType, _from_f32, _n_dims, parse_ftype, tensor_target_type
from .checkpoint import LERPS, ConvertError, RWKV6Params, blink_to_hf, infer_hparams, load_checkpoint
from .pth import CheckpointTensor
from .vocab import load_world_vocab, token_metadata, vocab_path
from .x070 import infer_hparams7, is_x070, metadata7, plan7

__all__ = ["convert", "ConvertProgress", "size_label", "OUTTYPES"]

GGML_QNT_VERSION = 2
OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m",
            "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")


def size_label(n_params: int) -> str:
    """general.size_label as gguf-py writes it: two significant digits at least ("1.6B", "2.5M")."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n_params > scale or suffix == "K":
            v = n_params / scale
            break
    digits = max(2 - len(str(round(v)).lstrip("0")), 0)
    return f"{v:.{digits}f}{suffix}"


# ------------------------------------------------------------------------- tensors --

@dataclass
class _Out:
    name: str  # GGUF name
    ne: tuple[int, ...]  # ggml order
    hf_key: str  # sort key: the Hugging Face name of (the last of) its sources
    sources: list[str]
    make: Callable[[], np.ndarray] | None  # small tensors: whole f32 array
    rows: CheckpointTensor | None  # big plain tensors: streamed by rows of this source
    scale: float = 1.0
    type: str = "F32"


_PLAIN = {"att.receptance.weight": "time_mix_receptance", "att.key.weight": "time_mix_key",
          "att.value.weight": "time_mix_value", "att.gate.weight": "time_mix_gate",
          "att.output.weight": "time_mix_output", "ffn.key.weight": "channel_mix_key",
          "ffn.receptance.weight": "channel_mix_receptance", "ffn.value.weight": "channel_mix_value"}
_VECTORS = {"ln1.weight": "attn_norm.weight", "ln1.bias": "attn_norm.bias", "ln2.weight": "attn_norm_2.weight",
            "ln2.bias": "attn_norm_2.bias", "att.ln_x.weight": "time_mix_ln.weight",
            "att.ln_x.bias": "time_mix_ln.bias", "att.time_maa_x": "time_mix_lerp_x.weight",
            "att.time_decay": "time_mix_decay.weight", "ffn.time_maa_k": "channel_mix_lerp_k.weight",
            "ffn.time_maa_r": "channel_mix_lerp_r.weight"}


def _plan(t: dict[str, CheckpointTensor], p: RWKV6Params) -> list[_Out]:
    C = p.n_embd
    outs = [
        _Out("token_embd.weight", (C, p.n_vocab), "rwkv.embeddings.weight", ["emb.weight"], None, t["emb.weight"]),
        _Out("output.weight", (C, p.n_vocab), "head.weight", ["head.weight"], None, t["head.weight"]),
    ]
    for k, g in (("weight", "weight"), ("bias", "bias")):
        outs.append(_Out(f"token_embd_norm.{g}", (C,), f"rwkv.blocks.0.pre_ln.{k}", [f"blocks.0.ln0.{k}"],
                         (lambda k=k: t[f"blocks.0.ln0.{k}"].f32()), None))
        outs.append(_Out(f"output_norm.{g}", (C,), f"rwkv.ln_out.{k}", [f"ln_out.{k}"],
                         (lambda k=k: t[f"ln_out.{k}"].f32()), None))
    for i in range(p.n_layer):
        b, blk = f"blocks.{i}.", f"blk.{i}."
        scale = 0.5 ** (i // p.rescale_every) if p.rescale_every > 0 else 1.0
        for k, g in _PLAIN.items():
            src = t[b + k]
            outs.append(_Out(blk + g + ".weight", src.shape[::-1], blink_to_hf(b + k), [b + k], None, src,
                             scale if g in ("time_mix_output", "channel_mix_value") else 1.0))
        for k, g in _VECTORS.items():
            outs.append(_Out(blk + g, (C,), blink_to_hf(b + k), [b + k],
                             (lambda k=b + k: t[k].f32().reshape(-1)), None))
        lerps = [b + f"att.time_maa_{x}" for x in LERPS]
        outs += [
            _Out(blk + "time_mix_lerp_fused.weight", (C, 1, 1, 5), max(blink_to_hf(k) for k in lerps), lerps,
                 (lambda ks=lerps: np.stack([t[k].f32().reshape(1, 1, C) for k in ks])), None),
            _Out(blk + "time_mix_w1.weight", (C, 5 * p.time_mix_extra_dim), blink_to_hf(b + "att.time_maa_w1"),
                 [b + "att.time_maa_w1"], (lambda k=b + "att.time_maa_w1": t[k].f32().T), None),
            _Out(blk + "time_mix_w2.weight", (p.time_mix_extra_dim, C, 5), blink_to_hf(b + "att.time_maa_w2"),
                 [b + "att.time_maa_w2"], (lambda k=b + "att.time_maa_w2": t[k].f32().transpose(0, 2, 1)), None),
            _Out(blk + "time_mix_decay_w1.weight", (C, p.time_decay_extra_dim), blink_to_hf(b + "att.time_decay_w1"),
                 [b + "att.time_decay_w1"], (lambda k=b + "att.time_decay_w1": t[k].f32().T), None),
            _Out(blk + "time_mix_decay_w2.weight", (p.time_decay_extra_dim, C), blink_to_hf(b + "att.time_decay_w2"),
                 [b + "att.time_decay_w2"], (lambda k=b + "att.time_decay_w2": t[k].f32().T), None),
            _Out(blk + "time_mix_first.weight", (p.head_size, p.n_head), blink_to_hf(b + "att.time_faaaa"),
                 [b + "att.time_faaaa"], (lambda k=b + "att.time_faaaa": t[k].f32()), None),
        ]
    outs.sort(key=lambda o: o.hf_key)
    return outs


_CHUNK_BYTES = 16 << 20


def _chunks(o: _Out) -> Iterator[np.ndarray]:
    if o.rows is None:
        yield _from_f32(o.type, np.ascontiguousarray(o.make(), dtype=np.float32).reshape(-1))
        return
    src = o.rows
    n_rows = src.shape[0]
    row_elems = math.prod(src.shape[1:])
    step = max(1, _CHUNK_BYTES // (4 * max(row_elems, 1)))
    for r0 in range(0, n_rows, step):
        x = src.f32(r0, min(n_rows, r0 + step))
        if o.scale != 1.0:
            x *= np.float32(o.scale)  # a power of two: exact
        yield _from_f32(o.type, x.reshape(-1))


@dataclass(frozen=True)
class ConvertProgress:
    """One tensor written; str() is a log line like llama.cpp's converter prints."""
    index: int
    count: int
    name: str
    ne: tuple[int, ...]
    src_dtype: str
    type: str

    def __str__(self) -> str:
        shape = "{" + ", ".join(str(d) for d in self.ne) + "}"
        return (f"[{self.index:4d}/{self.count:4d}] {self.name + ',':<37s} {self.src_dtype.lower():>4s} --> "
                f"{self.type}, shape = {shape}")


def convert(input: str | os.PathLike, output: str | os.PathLike, outtype: str = "f16",
            model_name: str | None = None, vocab: str | os.PathLike | None = None,
            rescale_every: int | None = None, overwrite: bool = False,
            progress: Callable[[ConvertProgress], Any] | None = None) -> Path:
    """Convert an RWKV-6 or RWKV-7 checkpoint (BlinkDL .pth, a .safetensors file, or a Hugging Face
    directory) to a GGUF that llama.cpp and rwkvfast load; returns the output path.

    outtype: f32, f16, bf16, q8_0 as llama.cpp's converter, or any rwkvfast.quantize type (q4_k_m,
    q5_1, ...), applied with llama-quantize's per-tensor rules straight from the checkpoint.
    model_name: general.name (default: the input's file or directory name). vocab: an RWKV World
    vocabulary file (default: one named rwkv_vocab_v20230424.txt beside the input, else the
    packaged one). rescale_every: the rescale interval (default: config.json's, else 6).
    Raises ValueError (CheckpointError, ConvertError) for unsafe or inconsistent input and
    FileExistsError when output exists and overwrite is False.
    """
    src, dst = Path(input), Path(output)
    ft: FType = parse_ftype(outtype)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--force) to replace it")
    if dst.exists() and src.exists() and os.path.samefile(src, dst):
        raise ValueError(f"output {dst} is the input")
    tensors, config = load_checkpoint(src)
    name = model_name or (src.name if src.is_dir() else src.stem)
    if is_x070(tensors):
        p7 = infer_hparams7(tensors, config)
        arch, n_vocab, outs, arch_meta = "rwkv7", p7.n_vocab, plan7(tensors, p7, _Out), metadata7(p7)
    else:
        p = infer_hparams(tensors, config, rescale_every)
        arch, n_vocab, outs = "rwkv6", p.n_vocab, _plan(tensors, p)
        arch_meta = [
            ("rwkv6.context_length", U32(1048576)), ("rwkv6.embedding_length", U32(p.n_embd)),
            ("rwkv6.block_count", U32(p.n_layer)), ("rwkv6.attention.layer_norm_epsilon", F32(p.layer_norm_eps)),
            ("rwkv6.rescale_every_n_layers", U32(p.rescale_every)), ("rwkv6.wkv.head_size", U32(p.head_size)),
            ("rwkv6.time_mix_extra_dim", U32(p.time_mix_extra_dim)),
            ("rwkv6.time_decay_extra_dim", U32(p.time_decay_extra_dim)),
            ("rwkv6.feed_forward_length", U32(p.n_ffn))]
    toks = token_metadata(load_world_vocab(vocab_path(src, vocab)), n_vocab)
    for o in outs:
        o.type = _target_type(o.name, o.ne, ft)
    meta: list[tuple[str, Any]] = [
        ("general.architecture", arch), ("general.type", "model"), ("general.name", name),
        ("general.size_label", size_label(sum(math.prod(o.ne) for o in outs))),
        *arch_meta, ("general.file_type", U32(ft.id)), (f"{arch}.attention.head_count", U32(0)),
        ("general.quantization_version", U32(GGML_QNT_VERSION)),
    ] + toks

    def stream(i: int, o: _Out) -> Iterator[np.ndarray]:
        yield from _chunks(o)
        for k in o.sources:
            tensors[k].release()
        if progress is not None:
            progress(ConvertProgress(i + 1, len(outs), o.name, o.ne, tensors[o.sources[0]].dtype, o.type))

    specs = [(o.name, o.type, o.ne, (lambda i=i, o=o: stream(i, o))) for i, o in enumerate(outs)]
    # fail before writing anything on a shape the type cannot hold, or an output out of proportion
    need = sum(-(-tensor_nbytes(o.type, o.ne) // 32) * 32 for o in outs)  # aligned as written
    _check_output_size(src, dst, need)
    return write_gguf(dst, meta, specs, sweep=True)  # sweep: what an interrupted conversion left


# what gguf-py's converter keeps F32 in an F16/BF16 file, beyond 1-D tensors and norms: RWKV-6's
# LoRAs and lerps, which RWKV-7's decay LoRA shares names with (its a/v/g LoRAs go to F16)
_FLOAT_KEEP_F32 = ("time_mix_first.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight",
                   "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight")


def _target_type(name: str, ne: tuple[int, ...], ft: FType) -> str:
    """llama.cpp's converter's choice for float outputs, llama-quantize's for quantized ones."""
    if ft.is_quantized:
        return tensor_target_type(name, ne, ft)[0] or "F32"
    if _n_dims(ne) <= 1 or name.endswith("_norm.weight") or name.endswith(_FLOAT_KEEP_F32):
        return "F32"
    return ft.base


def _input_bytes(src: Path) -> int:
    """Bytes of the input: the file, or the files directly in a Hugging Face directory."""
    if not src.is_dir():
        return src.stat().st_size
    return sum(p.stat().st_size for p in src.iterdir() if p.is_file())


def _check_output_size(src: Path, dst: Path, need: int) -> None:
    """ConvertError when `need` bytes of output tensors cannot come from the input (the readers
    refuse reused bytes; this is the last guard before a small file starts a huge write) or do
    not fit in the free space of the destination's filesystem (the temporary file is written
    whole before it replaces anything)."""
    have = _input_bytes(src)
    if need > 2 * have:
        raise ConvertError(f"{src}: the output's tensors would take {need} bytes from an input of {have} bytes "
                           f"(at most 2x, from 16-bit to f32): the checkpoint's tensors claim more data than it holds")
    free = shutil.disk_usage(dst.parent).free
    if need > free:
        raise ConvertError(f"not enough space for {dst}: the output needs at least {need} bytes "
                           f"({need / 2**30:.2f} GiB), its filesystem has {free} bytes ({free / 2**30:.2f} GiB) free")
