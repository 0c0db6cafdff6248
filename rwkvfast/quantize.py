"""quantize.py — whole-file quantization of RWKV-6 and RWKV-7 GGUF models, as llama.cpp's llama-quantize does it.

    >>> import rwkvfast
    >>> r = rwkvfast.quantize("rwkv6-1b6-F16.gguf", "rwkv6-1b6-Q4_K_M.gguf", "Q4_K_M", progress=print)  # doctest: +SKIP
    >>> print(r.summary())                                                                      # doctest: +SKIP

The per-tensor type choice follows llama.cpp's src/llama-quant.cpp (tensor_allows_quantization,
llama_tensor_get_type_impl, tensor_type_fallback); for RWKV it reduces to:

* only 2-D+ tensors whose name ends in "weight" are converted, never norms nor RWKV's small
  2-D tensors (time_mix_first, time_mix_w1/w2, time_mix_decay_w1/w2, time_mix_lerp_fused, and
  RWKV-7's LoRAs time_mix_{w,a,v,g}{1,2}: an F16 target leaves them F32 too, although the
  converter's own F16 files hold the a/v/g ones in F16);
  everything else (biases, lerps, time_mix_decay, ...) is copied as it is;
* `output.weight` gets Q6_K when the file type is quantized and below Q8_0 (Q8_0 when its row
  length is not a multiple of 256); `token_embd.weight` gets the base type (the output rule
  instead when the model has no output.weight, i.e. tied embeddings);
* every other matrix gets the base type: llama.cpp's _S/_M/_L mixes only raise attn_v,
  attn_output, attn_qkv and ffn_down tensors, names RWKV does not use, so Q4_K_S, Q4_K_M
  are both "Q4_K + Q6_K output" here, and Q3_K_S/M/L are all "Q3_K + Q6_K output";
* a row length that is not a multiple of the type's block falls back as llama.cpp does:
  Q2_K, Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and to F16 when even that
  (or a legacy type Q4_0..Q8_0) does not fit, i.e. the row length is not a multiple of 32.

The output keeps the input's metadata in order, except that general.quantization_version (2)
and general.file_type (llama.h's LLAMA_FTYPE) are moved to the end as llama-quantize moves
them, and split.* keys are dropped; tensors keep the input's order and alignment (llama-quantize
itself re-sorts tensors by layer and name; readers look tensors up by name). Tensors are
streamed one at a time from the input mapping, quantized in row chunks on a thread pool (the C
block quantizers release the GIL), and written to a temporary file that replaces OUTPUT only
when complete, so INPUT is never touched and an interrupted run leaves no broken OUTPUT.
"""
from __future__ import annotations

import errno
import math
import os
import textwrap
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from rwkvfast import _core
from rwkvfast.gguf_writer import (U32, bf16_to_f32, f32_to_bf16, ggml_type, tensor_nbytes,
                                  write_gguf)
# A pure-numpy GGUF reader: typed metadata values (so they are copied with their GGUF types) and
# tensor data as views of a read-only mapping. The C reader validates the file first.
from rwkvfast.gguf_reader import GGUFFile, GGUFTensor, read_gguf

__all__ = ["quantize", "FTYPES", "FType", "parse_ftype", "tensor_target_type", "TensorProgress",
           "QuantizeResult", "ftype_help"]

GGML_QNT_VERSION = 2  # ggml.h; written as general.quantization_version


class FType(NamedTuple):
    """A llama-quantize file type: its name, llama.h LLAMA_FTYPE id and the base ggml type."""
    name: str
    id: int  # general.file_type
    base: str  # ggml type of most quantized tensors

    @property
    def is_quantized(self) -> bool:
        return self.base not in _FLOAT_TYPES

    @property
    def bpw(self) -> float:
        """Bits per weight of the base type (a file's average is higher: output, norms...)."""
        t = ggml_type(self.base)
        return t.type_size * 8 / t.block_size


# llama-quantize's QUANT_OPTIONS order; ids are llama.h's enum llama_ftype.
FTYPES: dict[str, FType] = {f.name: f for f in (
    FType("Q4_0", 2, "Q4_0"), FType("Q4_1", 3, "Q4_1"), FType("Q5_0", 8, "Q5_0"),
    FType("Q5_1", 9, "Q5_1"), FType("Q2_K", 10, "Q2_K"), FType("Q3_K_S", 11, "Q3_K"),
    FType("Q3_K_M", 12, "Q3_K"), FType("Q3_K_L", 13, "Q3_K"), FType("Q4_K_S", 14, "Q4_K"),
    FType("Q4_K_M", 15, "Q4_K"), FType("Q5_K_S", 16, "Q5_K"), FType("Q5_K_M", 17, "Q5_K"),
    FType("Q6_K", 18, "Q6_K"), FType("Q8_0", 7, "Q8_0"), FType("F16", 1, "F16"),
    FType("BF16", 32, "BF16"), FType("F32", 0, "F32"))}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}  # as llama-quantize accepts them
_BY_ID = {f.id: f for f in FTYPES.values()}

_FLOAT_TYPES = ("F32", "F16", "BF16")
# tensor_type_fallback: block-256 types whose row length does not fit -> a block-32 type
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
# RWKV's small yet 2-D weights that llama.cpp never quantizes (v6 and v7 names)
_RWKV_KEEP = tuple(f"time_mix_{n}.weight" for n in (
    "first", "w0", "w1", "w2", "v0", "v1", "v2", "a0", "a1", "a2", "g1", "g2",
    "decay_w1", "decay_w2", "lerp_fused"))
_SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")


def parse_ftype(t: str | int | FType) -> FType:
    """FType for a name ("q4_k_m", case-insensitive; Q3_K/Q4_K/Q5_K mean the _M mix) or a
    llama.h ftype id (15 or "15"); ValueError naming the allowed types otherwise.

    >>> parse_ftype("q4_k_m"), parse_ftype(7).name
    (FType(name='Q4_K_M', id=15, base='Q4_K'), 'Q8_0')
    """
    if isinstance(t, FType):
        return t
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        f = _BY_ID.get(int(t))
    elif isinstance(t, str):
        s = t.strip().upper()
        f = FTYPES.get(ALIASES.get(s, s))
        if f is None and s.isdigit():
            f = _BY_ID.get(int(s))
    else:
        f = None
    if f is None:
        raise ValueError(f"unknown quantization type {t!r}; expected one of "
                         f"{', '.join(FTYPES)} (or a llama.cpp ftype id, see --help)")
    return f


def ggml_type_label(t: str) -> str:
    """ggml_type_name spelling used in llama.cpp logs: q4_0, q4_K, f16, bf16."""
    return t.lower().replace("_k", "_K")


def ftype_help() -> str:
    """The "Allowed quantization types" table of --help, one line per type, like llama-quantize."""
    lines = ["Allowed quantization types (name or llama.cpp ftype id, bits per weight of the base type):"]
    for f in FTYPES.values():
        what = (f"matrices {ggml_type_label(f.base)}" if not f.is_quantized else ggml_type_label(f.base) +
                ("" if f.base in ("Q8_0", "Q6_K") else ", output q6_K"))
        lines.append(f"  {f.id:2d}  or  {f.name:<7} : {f.bpw:5.2f} bpw  {what}")
    note = ("Q3_K, Q4_K and Q5_K are aliases of the _M types. llama.cpp's _S/_M/_L mixes differ only on "
            "attn_v/attn_output/ffn_down tensors, which RWKV-6 does not have, so for RWKV-6 they give the "
            "same tensors (general.file_type aside). Rows whose length is not a multiple of 256 fall back "
            "to a 32-block type (Q6_K->Q8_0, Q5_K->Q5_1, Q4_K->Q5_0, Q3_K/Q2_K->Q4_0), or F16. 1-D "
            "tensors, norms and RWKV's time_mix_first, LoRA (w1/w2, decay_w1/w2) and lerp tensors are "
            "never converted.")
    return "\n".join(lines + [""] + textwrap.wrap(note, 92))


# ------------------------------------------------------------------- type selection --

def _n_dims(ne: Sequence[int]) -> int:
    """ggml_n_dims: dimensions up to the last one that is not 1 (at least 1)."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return n


def _allows_quantization(name: str, ne: Sequence[int]) -> bool:
    """llama.cpp's tensor_allows_quantization, for the names a RWKV-6 (or v7) file can hold."""
    return (_n_dims(ne) >= 2 and name.endswith("weight") and "_norm.weight" not in name
            and not any(k in name for k in _RWKV_KEEP)
            # generic exclusions of llama.cpp that a converted RWKV file never hits; kept so that
            # a stray tensor is treated the same way
            and "ffn_gate_inp.weight" not in name and "ssm_conv1d" not in name
            and "attn_rel_b.weight" not in name and name not in ("position_embd.weight",
                                                                 "token_types.weight"))


def tensor_target_type(name: str, ne: Sequence[int], ftype: FType | str | int,
                       tied_embeddings: bool = False) -> tuple[str, str | None]:
    """(ggml type for tensor `name` of shape `ne` in a file of type `ftype`, the type it fell
    back from or None). A tensor that is not to be converted gets "" (keep its own type).

    `tied_embeddings`: the model has no output.weight, so token_embd is also the output.

    >>> tensor_target_type("blk.0.channel_mix_value.weight", (896, 256), "Q4_K_M")
    ('Q5_0', 'Q4_K')
    >>> tensor_target_type("output.weight", (2048, 65536), "Q4_0")
    ('Q6_K', None)
    """
    f = parse_ftype(ftype)
    if not _allows_quantization(name, ne):
        return "", None
    new = f.base
    if not f.is_quantized:  # F16/BF16/F32: no mixes, no fallbacks (block size 1)
        return new, None
    if name == "output.weight" or (tied_embeddings and name == "token_embd.weight"):
        if ne[0] % 256:
            new = "Q8_0"
        elif new != "Q8_0":
            new = "Q6_K"
    # every other RWKV tensor is in llama.cpp's "other" category: the base type
    block = ggml_type(new).block_size
    if ne[0] % block == 0:
        return new, None
    fb = _FALLBACK.get(new, new)
    if ne[0] % ggml_type(fb).block_size:
        fb = "F16"  # llama.cpp: "must use F16 due to unusual shape"
    return fb, new


# ------------------------------------------------------------------ block conversion --
# The one place that touches block formats: switching quantizer is one line here.

def _block_quantize(type_name: str, x: np.ndarray) -> np.ndarray:
    """float32 1-D (a whole number of blocks) -> the ggml `type_name` blocks as uint8 (C, GIL released)."""
    return _core.quantize(type_name, x)


def _block_dequantize(type_name: str, data: np.ndarray, n: int) -> np.ndarray:
    """ggml `type_name` blocks (uint8) -> n float32 values (C, GIL released)."""
    return _core.dequantize(type_name, data, n)


def _to_f32(src: str, data: np.ndarray, n: int) -> np.ndarray:
    """Raw bytes of n values of ggml type `src` -> float32 (a fresh, writable array)."""
    if src == "F32":
        return data.view("<f4").astype(np.float32)  # a copy: the mapping is read-only
    if src == "F16":
        return data.view("<f2").astype(np.float32)
    if src == "BF16":
        return bf16_to_f32(data.view("<u2"))
    return _block_dequantize(src, np.ascontiguousarray(data), n)


def _from_f32(dst: str, x: np.ndarray) -> np.ndarray:
    """float32 -> the bytes of ggml type `dst` (F16/BF16 round to nearest even, as ggml does)."""
    if dst == "F32":
        return x
    if dst == "F16":
        return x.astype("<f2")
    if dst == "BF16":
        return f32_to_bf16(x)
    return _block_quantize(dst, x)


def _row_bytes(t: str, n: int) -> int:
    return tensor_nbytes(t, (n,))


# ----------------------------------------------------------------------- reporting --

@dataclass(frozen=True)
class TensorProgress:
    """One tensor done (or planned, in a dry run); str() is a llama-quantize style log line."""
    index: int  # 1-based
    count: int
    name: str
    ne: tuple[int, ...]
    old_type: str
    new_type: str
    old_nbytes: int
    new_nbytes: int
    fallback_from: str | None = None  # the type llama.cpp's rules wanted, when the row did not fit

    @property
    def converted(self) -> bool:
        return self.old_type != self.new_type

    def __str__(self) -> str:
        ne = ", ".join(f"{d:6d}" for d in (tuple(self.ne) + (1, 1, 1))[:max(4, len(self.ne))])
        head = (f"[{self.index:4d}/{self.count:4d}] {self.name:<36s} - [{ne}], "
                f"type = {ggml_type_label(self.old_type):>6s}, ")
        mib = 1024.0 * 1024.0
        if not self.converted:
            return head + f"size = {self.old_nbytes / mib:8.3f} MiB"
        line = (head + f"converting to {ggml_type_label(self.new_type)} .. "
                f"size = {self.old_nbytes / mib:8.2f} MiB -> {self.new_nbytes / mib:8.2f} MiB")
        if self.fallback_from:
            line += (f" (fallback: {self.ne[0]} columns not divisible by "
                     f"{ggml_type(self.fallback_from).block_size} for {ggml_type_label(self.fallback_from)})")
        return line


@dataclass(frozen=True)
class QuantizeResult:
    """What quantize() did. `output` is None for a dry run."""
    output: Path | None
    ftype: FType
    tensor_types: dict[str, str]  # tensor name -> ggml type name, in file order
    n_elements: int
    size_before: int  # bytes of tensor data
    size_after: int
    n_fallback: int
    tensors: list[TensorProgress] = field(repr=False, default_factory=list)

    def summary(self) -> str:
        """The two size lines llama-quantize prints at the end."""
        mib, n = 1024.0 * 1024.0, max(self.n_elements, 1)
        s = (f"model size  = {self.size_before / mib:8.2f} MiB ({self.size_before * 8.0 / n:.2f} BPW)\n"
             f"quant size  = {self.size_after / mib:8.2f} MiB ({self.size_after * 8.0 / n:.2f} BPW)")
        if self.n_fallback:
            s += f"\nWARNING: {self.n_fallback} of {len(self.tensor_types)} tensor(s) required fallback quantization"
        return s


# ------------------------------------------------------------------------- driver --

@dataclass
class _Plan:
    tensor: GGUFTensor
    src: str
    dst: str
    fallback_from: str | None
    new_nbytes: int


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # b does not exist (yet): compare where the paths lead
        return os.path.realpath(a) == os.path.realpath(b)


def _open_input(path: Path) -> GGUFFile:
    _core.gguf_read(os.fspath(path))  # validates every offset and size: ValueError/OSError naming the file
    try:
        return read_gguf(path)
    except (ValueError, KeyError, IndexError, OverflowError) as e:  # what the C reader let through
        raise ValueError(f"{path}: cannot read GGUF: {e}") from e


def _plan(g: GGUFFile, f: FType, allow_requantize: bool) -> list[_Plan]:
    names = {t.name for t in g.tensors}
    tied = "output.weight" not in names
    plans = []
    for t in g.tensors:
        src = ggml_type(t.type).name
        dst, fb = tensor_target_type(t.name, t.ne, f, tied)
        dst = dst or src
        if dst != src:
            if src not in _FLOAT_TYPES and ggml_type(src).block_size == 1:
                raise ValueError(f"tensor {t.name!r}: cannot convert a {src} tensor to {dst}")
            if src not in _FLOAT_TYPES and not allow_requantize:
                raise ValueError(f"input is already quantized (tensor {t.name!r} is {src}); requantizing "
                                 f"loses quality: start from an F32/F16/BF16 file, or allow it with "
                                 f"--allow-requantize (allow_requantize=True)")
        plans.append(_Plan(t, src, dst, fb, tensor_nbytes(dst, t.ne)))
    return plans


def _metadata(g: GGUFFile, f: FType) -> list[tuple[str, Any]]:
    drop = ("general.quantization_version", "general.file_type") + _SPLIT_KEYS
    meta: list[tuple[str, Any]] = [(k, v) for k, v in g.metadata.items() if k not in drop]
    # llama-quantize: gguf_set_kv(all) then set these two, which removes and re-appends them
    return meta + [("general.quantization_version", U32(GGML_QNT_VERSION)),
                   ("general.file_type", U32(f.id))]


_CHUNK_ELEMENTS = 1 << 20  # values per work item: 4 MiB of float32


def _chunks(p: _Plan, pool: ThreadPoolExecutor, window: int, n_threads: int,
            done: Callable[[], None]) -> Iterator[np.ndarray]:
    """The new bytes of one tensor, in row order, converted `window` chunks ahead on `pool`."""
    t = p.tensor
    if p.src == p.dst:
        yield t.data
        done()
        return
    n = t.ne[0]
    rows = math.prod(t.ne[1:])
    rb = _row_bytes(p.src, n)
    step = max(1, min(-(-rows // n_threads), _CHUNK_ELEMENTS // n))

    def work(r0: int, r1: int) -> np.ndarray:
        return _from_f32(p.dst, _to_f32(p.src, t.data[r0 * rb:r1 * rb], (r1 - r0) * n))

    pending: deque[Future] = deque()
    starts = iter(range(0, rows, step))
    try:
        for r0 in starts:
            pending.append(pool.submit(work, r0, min(rows, r0 + step)))
            if len(pending) >= window:
                break
        while pending:
            out = pending.popleft().result()
            r0 = next(starts, None)
            if r0 is not None:
                pending.append(pool.submit(work, r0, min(rows, r0 + step)))
            yield out
    finally:
        for fut in pending:
            fut.cancel()
    done()


def quantize(input: str | os.PathLike, output: str | os.PathLike, type: str | int | FType,
             n_threads: int | None = None, allow_requantize: bool = False,
             progress: Callable[[TensorProgress], Any] | None = None,
             dry_run: bool = False) -> QuantizeResult:
    """Quantize the RWKV-6 or RWKV-7 GGUF `input` to `output` as llama.cpp's llama-quantize would.

    type: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, F16, BF16 or
    F32 (case-insensitive), or its llama.cpp ftype id (e.g. 15 for Q4_K_M); see ftype_help().
    n_threads: worker threads for the block quantizers (default: os.cpu_count()).
    allow_requantize: accept an already quantized input (dequantized first; loses quality).
    progress: called with a TensorProgress after each tensor is written (str() of it is a log
    line), e.g. progress=print.
    dry_run: plan only (types and sizes, progress calls included); nothing is written.

    Raises ValueError for a bad type, a malformed, non-RWKV or (without allow_requantize)
    quantized input, or output == input; OSError when input cannot be read or output written.
    On any failure output is left as it was and no temporary file remains.

    >>> r = quantize("model-F16.gguf", "model-Q4_K_M.gguf", "Q4_K_M", progress=print)  # doctest: +SKIP
    >>> print(r.summary())                                                            # doctest: +SKIP
    """
    f = parse_ftype(type)
    if n_threads is None:
        n_threads = os.cpu_count() or 1
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
    n_threads = int(n_threads)
    src_path, dst_path = Path(input), Path(output)
    if _same_file(src_path, dst_path):
        raise ValueError(f"output {str(dst_path)!r} is the input file {str(src_path)!r}; choose another name")
    # fail before any work on what would only show when the temporary file is opened
    if dst_path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "output is a directory", str(dst_path))
    out_dir = dst_path.parent
    if not out_dir.exists():
        raise FileNotFoundError(errno.ENOENT, "output directory does not exist", str(out_dir))
    if not out_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "output directory is not a directory", str(out_dir))
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "output directory is not writable", str(out_dir))

    g = _open_input(src_path)
    arch = g.metadata.get("general.architecture")
    if arch is None or arch.value not in ("rwkv6", "rwkv7"):
        raise ValueError(f"{src_path}: general.architecture is {arch.value if arch else None!r}; "
                         f"only RWKV-6 ('rwkv6') and RWKV-7 ('rwkv7') models are supported")
    split = g.metadata.get("split.count")
    if split is not None and split.value > 1:
        raise ValueError(f"{src_path}: is one of {split.value} split files; merge them first "
                         f"(llama-gguf-split --merge)")
    plans = _plan(g, f, allow_requantize)

    count = len(plans)
    reports: list[TensorProgress] = []

    def report(i: int) -> None:
        p = plans[i]
        r = TensorProgress(i + 1, count, p.tensor.name, tuple(p.tensor.ne), p.src, p.dst,
                           p.tensor.nbytes, p.new_nbytes, p.fallback_from)
        reports.append(r)
        if progress is not None:
            progress(r)

    written: Path | None = None
    if dry_run:
        for i in range(count):
            report(i)
    else:
        pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="rwkvfast-quantize")
        try:
            window = 2 * n_threads
            tensors = [(p.tensor.name, p.dst, p.tensor.ne,
                        (lambda p=p, i=i: _chunks(p, pool, window, n_threads, lambda: report(i))))
                       for i, p in enumerate(plans)]
            # GGUF v3 whatever the input's version, as llama-quantize writes it
            written = write_gguf(dst_path, _metadata(g, f), tensors, alignment=g.alignment, sweep=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return QuantizeResult(
        output=written, ftype=f, tensor_types={p.tensor.name: p.dst for p in plans},
        n_elements=sum(math.prod(p.tensor.ne) for p in plans),
        size_before=sum(p.tensor.nbytes for p in plans), size_after=sum(p.new_nbytes for p in plans),
        n_fallback=sum(p.fallback_from is not None for p in plans), tensors=reports)
