"""convert.py — official RWKV-6 checkpoints (.pth, Hugging Face, .safetensors) to GGUF, as llama.cpp's
convert_hf_to_gguf.py writes them, in one step and without torch.

    >>> import rwkvfast
    >>> rwkvfast.convert("RWKV-x060-World-1B6-v2.1.pth", "rwkv6-1b6-F16.gguf", outtype="f16")  # doctest: +SKIP

Inputs are read by torch_checkpoint (a pickle reader that runs no code) or safetensors_io, and
their keys normalised to BlinkDL's (`emb.weight`, `blocks.N.att.*`, `blocks.N.ffn.*`,
`blocks.0.ln0.*`, `ln_out.*`, `head.weight`). The hyper-parameters come from the tensor shapes
and are cross-checked. What llama.cpp's converter does to RWKV-6 tensors, reproduced here:

* names: `blk.N.time_mix_*`, `blk.N.channel_mix_*`, `token_embd`, `output`, ... (TENSORS below);
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
replaced only with overwrite=True (--force).
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .gguf_writer import F32, U32, Array, GGUFValueType, f32_to_bf16, tensor_nbytes, write_gguf
from .quantize import FType, _block_quantize, parse_ftype, tensor_target_type
from .safetensors_io import read_safetensors, write_safetensors
from .torch_checkpoint import CheckpointError, CheckpointTensor, read_torch_checkpoint

__all__ = ["convert", "to_hf", "load_checkpoint", "infer_hparams", "RWKV6Params", "ConvertProgress",
           "ConvertError", "CheckpointError", "load_world_vocab", "OUTTYPES"]

GGML_QNT_VERSION = 2
LAYER_NORM_EPS = 1e-5  # BlinkDL's RWKV-6 (not stored in a .pth)
DEFAULT_RESCALE_EVERY = 6  # the Hugging Face RWKV-6 configs' value
EOT_TOKEN = 261  # "\n\n" in the World vocabulary, as llama.cpp's converter sets it
OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m",
            "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
_LERPS = ("w", "k", "v", "r", "g")  # order of time_mix_lerp_fused


class ConvertError(ValueError):
    """A checkpoint that is not a consistent RWKV-6 model."""


# ---------------------------------------------------------------------------- inputs --

def _hf_to_blink(name: str) -> str:
    """Hugging Face RWKV-6 key -> BlinkDL key (BlinkDL keys pass through)."""
    if name == "rwkv.embeddings.weight":
        return "emb.weight"
    if name.startswith("rwkv.ln_out."):
        return name[len("rwkv."):]
    m = re.match(r"rwkv\.blocks\.(\d+)\.(.*)$", name)
    if m:
        rest = m.group(2)
        rest = re.sub(r"^attention\.", "att.", rest)
        rest = re.sub(r"^feed_forward\.", "ffn.", rest)
        rest = re.sub(r"^pre_ln\.", "ln0.", rest)
        return f"blocks.{m.group(1)}.{rest}"
    return name


def _blink_to_hf(name: str) -> str:
    """BlinkDL key -> Hugging Face RWKV-6 key (the renaming of the user guide's script)."""
    if name == "emb.weight":
        return "rwkv.embeddings.weight"
    if name.startswith("ln_out."):
        return "rwkv." + name
    m = re.match(r"blocks\.(\d+)\.(.*)$", name)
    if m:
        rest = m.group(2)
        rest = re.sub(r"^att\.", "attention.", rest)
        rest = re.sub(r"^ffn\.", "feed_forward.", rest)
        rest = re.sub(r"^ln0\.", "pre_ln.", rest)
        return f"rwkv.blocks.{m.group(1)}.{rest}"
    return name


def _read_any(path: Path) -> dict[str, CheckpointTensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return read_torch_checkpoint(path)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, CheckpointTensor], dict[str, Any] | None]:
    """(tensors by BlinkDL name, the Hugging Face config or None) of a .pth / .bin / .safetensors
    file or a Hugging Face directory (config.json with model.safetensors, pytorch_model.bin, or
    shards listed in a *.index.json)."""
    path = Path(path)
    config = None
    if path.is_dir():
        cfg = path / "config.json"
        if cfg.is_file():
            try:
                config = json.loads(cfg.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ConvertError(f"{cfg}: not valid JSON: {e}") from None
        files: list[Path] = []
        for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            ip = path / index
            if ip.is_file():
                try:
                    wm = json.loads(ip.read_text(encoding="utf-8"))["weight_map"]
                    names = sorted(set(wm.values()))
                except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                    raise ConvertError(f"{ip}: not a shard index ({e})") from None
                for n in names:
                    if not isinstance(n, str) or Path(n).name != n:
                        raise ConvertError(f"{ip}: shard name {n!r} is not a file in {path}")
                files = [path / n for n in names]
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
            key = _hf_to_blink(name)
            if key in tensors:
                raise ConvertError(f"{f}: tensor {name!r} appears twice in the checkpoint")
            t.name = key
            tensors[key] = t
    return tensors, config


# ------------------------------------------------------------------ hyper-parameters --

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
    s.update({f"att.time_maa_{x}": (1, 1, C) for x in ("x",) + _LERPS})
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
    def shape(k: str) -> tuple[int, ...]:
        t = tensors.get(k)
        if t is None:
            raise ConvertError(f"missing tensor {k!r}: not an RWKV-6 checkpoint"
                               + (" (RWKV-7 checkpoints are not supported)" if any(".att.x_" in n or "w0" in n for n in tensors) else ""))
        return t.shape

    if "blocks.0.att.time_maa_w1" not in tensors and "blocks.0.att.time_mix_k" in tensors:
        raise ConvertError("this is an RWKV-4/5 checkpoint (time_mix_* without time_maa_w1); only RWKV-6 is supported")
    V, C = shape("emb.weight")
    layers = sorted({int(m.group(1)) for k in tensors for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if not layers or layers != list(range(len(layers))):
        raise ConvertError(f"block numbers must run 0..n-1, found {layers[:8]}{'...' if len(layers) > 8 else ''}")
    H, N = shape("blocks.0.att.time_faaaa")
    F = shape("blocks.0.ffn.key.weight")[0]
    w1 = shape("blocks.0.att.time_maa_w1")
    if len(w1) != 2 or w1[1] % 5:
        raise ConvertError(f"blocks.0.att.time_maa_w1 has shape {list(w1)}, expected [C, 5 * D]")
    D, Dd = w1[1] // 5, shape("blocks.0.att.time_decay_w1")[-1]
    if H * N != C:
        raise ConvertError(f"time_faaaa {H}x{N} does not match n_embd {C} (heads x head size)")
    want = {"emb.weight": (V, C), "blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,), "ln_out.weight": (C,),
            "ln_out.bias": (C,), "head.weight": (V, C)}
    for i in layers:
        want.update({f"blocks.{i}.{k}": v for k, v in _layer_shapes(C, F, H, N, D, Dd).items()})
    for k, v in want.items():
        if shape(k) != v:
            raise ConvertError(f"tensor {k!r} has shape {list(shape(k))}, expected {list(v)} "
                               f"(n_embd {C}, ffn {F}, {H} heads of {N}, LoRA dims {D}/{Dd})")
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise ConvertError(f"unexpected tensor(s) for RWKV-6: {', '.join(extra[:5])}"
                           f"{' ...' if len(extra) > 5 else ''}")
    cfg = config or {}
    eps = float(cfg.get("layer_norm_epsilon", LAYER_NORM_EPS))
    r = rescale_every if rescale_every is not None else int(cfg.get("rescale_every", DEFAULT_RESCALE_EVERY))
    if r < 0:
        raise ConvertError(f"rescale_every must be >= 0, got {r}")
    for key, have in (("hidden_size", C), ("num_hidden_layers", len(layers)), ("head_size", N),
                      ("vocab_size", V), ("intermediate_size", F)):
        if cfg.get(key) is not None and int(cfg[key]) != have:
            raise ConvertError(f"config.json says {key} = {cfg[key]}, the tensors say {have}")
    return RWKV6Params(len(layers), C, V, F, N, H, D, Dd, eps, r)


# ---------------------------------------------------------------------- vocabulary --

def load_world_vocab(path: str | os.PathLike | None = None) -> list[bytes]:
    """Token bytes of ids 1.. from an RWKV World vocabulary file (default: the packaged
    rwkv_vocab_v20230424.txt). Lines are `id python-literal byte-length`; the literal is read
    with ast.literal_eval (never eval), and ids and lengths are checked."""
    if path is None:
        text = resources.files("rwkvfast").joinpath("data/rwkv_vocab_v20230424.txt").read_text(encoding="utf-8")
        where = "rwkvfast/data/rwkv_vocab_v20230424.txt"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    out: list[bytes] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            sp, rsp = line.index(" "), line.rindex(" ")
            idx, lit, length = int(line[:sp]), ast.literal_eval(line[sp + 1:rsp]), int(line[rsp + 1:])
        except (ValueError, SyntaxError) as e:
            raise ConvertError(f"{where}:{n}: not a vocabulary line ({e}): {line[:60]!r}") from None
        b = lit.encode("utf-8") if isinstance(lit, str) else lit
        if not isinstance(b, bytes) or idx != len(out) + 1 or len(b) != length:
            raise ConvertError(f"{where}:{n}: expected token {len(out) + 1} with the stated length, got {line[:60]!r}")
        out.append(b)
    return out


def _vocab_path(src: Path, vocab: str | os.PathLike | None) -> Path | None:
    """The vocabulary to use: the given file, else rwkv_vocab_v20230424.txt beside the input
    (as llama.cpp's converter reads it from the model directory), else None (the packaged one)."""
    if vocab is not None:
        return Path(vocab)
    beside = (src if src.is_dir() else src.parent) / "rwkv_vocab_v20230424.txt"
    return beside if beside.is_file() else None


def _token_metadata(vocab: list[bytes], n_vocab: int) -> list[tuple[str, Any]]:
    if len(vocab) + 1 > n_vocab:
        raise ConvertError(f"the vocabulary has {len(vocab) + 1} tokens (with <s>) but the model's embedding "
                           f"has {n_vocab} rows; pass the model's own vocabulary file")
    # llama.cpp stores each token as repr(bytes)[2:-1] and types <s> CONTROL, pads UNUSED
    texts = ["<s>"] + [repr(b)[2:-1] for b in vocab] + [f"[PAD{i}]" for i in range(len(vocab) + 1, n_vocab)]
    types = [3] + [1] * len(vocab) + [5] * (n_vocab - len(vocab) - 1)
    template = resources.files("rwkvfast").joinpath("data/rwkv_world_chat_template.jinja").read_text(encoding="utf-8")
    return [("tokenizer.ggml.model", "rwkv"),
            ("tokenizer.ggml.tokens", Array(GGUFValueType.STRING, texts)),
            ("tokenizer.ggml.token_type", Array(GGUFValueType.INT32, types)),
            ("tokenizer.ggml.bos_token_id", U32(0)), ("tokenizer.ggml.eos_token_id", U32(0)),
            ("tokenizer.ggml.eot_token_id", U32(EOT_TOKEN)), ("tokenizer.chat_template", template)]


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
            outs.append(_Out(blk + g + ".weight", src.shape[::-1], _blink_to_hf(b + k), [b + k], None, src,
                             scale if g in ("time_mix_output", "channel_mix_value") else 1.0))
        for k, g in _VECTORS.items():
            outs.append(_Out(blk + g, (C,), _blink_to_hf(b + k), [b + k],
                             (lambda k=b + k: t[k].f32().reshape(-1)), None))
        lerps = [b + f"att.time_maa_{x}" for x in _LERPS]
        outs += [
            _Out(blk + "time_mix_lerp_fused.weight", (C, 1, 1, 5), max(_blink_to_hf(k) for k in lerps), lerps,
                 (lambda ks=lerps: np.stack([t[k].f32().reshape(1, 1, C) for k in ks])), None),
            _Out(blk + "time_mix_w1.weight", (C, 5 * p.time_mix_extra_dim), _blink_to_hf(b + "att.time_maa_w1"),
                 [b + "att.time_maa_w1"], (lambda k=b + "att.time_maa_w1": t[k].f32().T), None),
            _Out(blk + "time_mix_w2.weight", (p.time_mix_extra_dim, C, 5), _blink_to_hf(b + "att.time_maa_w2"),
                 [b + "att.time_maa_w2"], (lambda k=b + "att.time_maa_w2": t[k].f32().transpose(0, 2, 1)), None),
            _Out(blk + "time_mix_decay_w1.weight", (C, p.time_decay_extra_dim), _blink_to_hf(b + "att.time_decay_w1"),
                 [b + "att.time_decay_w1"], (lambda k=b + "att.time_decay_w1": t[k].f32().T), None),
            _Out(blk + "time_mix_decay_w2.weight", (p.time_decay_extra_dim, C), _blink_to_hf(b + "att.time_decay_w2"),
                 [b + "att.time_decay_w2"], (lambda k=b + "att.time_decay_w2": t[k].f32().T), None),
            _Out(blk + "time_mix_first.weight", (p.head_size, p.n_head), _blink_to_hf(b + "att.time_faaaa"),
                 [b + "att.time_faaaa"], (lambda k=b + "att.time_faaaa": t[k].f32()), None),
        ]
    outs.sort(key=lambda o: o.hf_key)
    return outs


def _encode(dst: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if dst == "F32":
        return x
    if dst == "F16":
        return x.astype("<f2")
    if dst == "BF16":
        return f32_to_bf16(x)
    return _block_quantize(dst, x)


_CHUNK_BYTES = 16 << 20


def _chunks(o: _Out) -> Iterator[np.ndarray]:
    if o.rows is None:
        yield _encode(o.type, o.make())
        return
    src = o.rows
    n_rows = src.shape[0]
    row_elems = math.prod(src.shape[1:])
    step = max(1, _CHUNK_BYTES // (4 * max(row_elems, 1)))
    for r0 in range(0, n_rows, step):
        x = src.f32(r0, min(n_rows, r0 + step))
        if o.scale != 1.0:
            x *= np.float32(o.scale)  # a power of two: exact
        yield _encode(o.type, x)


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
    """Convert an RWKV-6 checkpoint (BlinkDL .pth, a .safetensors file, or a Hugging Face
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
    p = infer_hparams(tensors, config, rescale_every)
    toks = _token_metadata(load_world_vocab(_vocab_path(src, vocab)), p.n_vocab)
    outs = _plan(tensors, p)
    for o in outs:
        o.type = tensor_target_type(o.name, o.ne, ft)[0] or "F32"
    name = model_name or (src.name if src.is_dir() else src.stem)
    meta: list[tuple[str, Any]] = [
        ("general.architecture", "rwkv6"), ("general.type", "model"), ("general.name", name),
        ("general.size_label", size_label(sum(math.prod(o.ne) for o in outs))),
        ("rwkv6.context_length", U32(1048576)), ("rwkv6.embedding_length", U32(p.n_embd)),
        ("rwkv6.block_count", U32(p.n_layer)), ("rwkv6.attention.layer_norm_epsilon", F32(p.layer_norm_eps)),
        ("rwkv6.rescale_every_n_layers", U32(p.rescale_every)), ("rwkv6.wkv.head_size", U32(p.head_size)),
        ("rwkv6.time_mix_extra_dim", U32(p.time_mix_extra_dim)),
        ("rwkv6.time_decay_extra_dim", U32(p.time_decay_extra_dim)),
        ("rwkv6.feed_forward_length", U32(p.n_ffn)), ("general.file_type", U32(ft.id)),
        ("rwkv6.attention.head_count", U32(0)), ("general.quantization_version", U32(GGML_QNT_VERSION)),
    ] + toks

    def stream(i: int, o: _Out) -> Iterator[np.ndarray]:
        yield from _chunks(o)
        for k in o.sources:
            tensors[k].release()
        if progress is not None:
            progress(ConvertProgress(i + 1, len(outs), o.name, o.ne, tensors[o.sources[0]].dtype, o.type))

    specs = [(o.name, o.type, o.ne, (lambda i=i, o=o: stream(i, o))) for i, o in enumerate(outs)]
    for o in outs:  # fail before writing anything on a shape the type cannot hold
        tensor_nbytes(o.type, o.ne)
    return write_gguf(dst, meta, specs)


def to_hf(input: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False,
          rescale_every: int | None = None, vocab: str | os.PathLike | None = None) -> Path:
    """Write the Hugging Face layout of a BlinkDL checkpoint (the user guide's key renaming):
    output_dir/config.json, model.safetensors (tensors as stored) and rwkv_vocab_v20230424.txt
    (the vocabulary convert() would use for this input)."""
    src, out = Path(input), Path(output_dir)
    tensors, config = load_checkpoint(src)
    p = infer_hparams(tensors, config, rescale_every)
    st = out / "model.safetensors"
    if st.exists() and not overwrite:
        raise FileExistsError(f"{st} exists; pass overwrite=True (--force) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"architectures": ["Rwkv6ForCausalLM"], "model_type": "rwkv6", "attention_hidden_size": p.n_embd,
           "bos_token_id": 0, "eos_token_id": 0, "head_size": p.head_size, "head_size_divisor": 8,
           "hidden_size": p.n_embd, "intermediate_size": p.n_ffn, "layer_norm_epsilon": p.layer_norm_eps,
           "num_attention_heads": p.n_head, "num_hidden_layers": p.n_layer, "rescale_every": p.rescale_every,
           "tie_word_embeddings": False, "use_cache": True, "vocab_size": p.n_vocab}
    items = sorted(((_blink_to_hf(k), t) for k, t in tensors.items()), key=lambda kv: kv[0])
    write_safetensors(st, [(k, t.dtype, t.shape, (lambda t=t: iter([t.raw()]))) for k, t in items],
                      metadata={"format": "pt"})
    _atomic_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    vp = _vocab_path(src, vocab)
    text = (vp.read_text(encoding="utf-8") if vp is not None else
            resources.files("rwkvfast").joinpath("data/rwkv_vocab_v20230424.txt").read_text(encoding="utf-8"))
    _token_metadata(load_world_vocab(vp), p.n_vocab)  # refuse a vocabulary that does not fit the model
    _atomic_text(out / "rwkv_vocab_v20230424.txt", text)
    return out


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
