"""pth.py — read PyTorch zip checkpoints (.pth, pytorch_model.bin) without torch.

A torch.save file is a zip archive: `<prefix>/data.pkl` is a pickle of the state dict whose
tensors refer, by key, to raw little-endian storages stored (uncompressed) as
`<prefix>/data/<key>`. Unpickling runs whatever callables the pickle names, so this reader
never lets the pickle name a real one: `find_class` answers only an allow-list of stand-ins
(the torch rebuild functions, the float storage types, OrderedDict) that build inert
descriptions, and refuses every other global with CheckpointError before anything runs.

The pickle is hostile until proven otherwise, so:
* everything it can get hold of is made fresh for each load and is immutable to it: no
  `__dict__`, attribute writes refused, and BUILD (`__setstate__`) refused, except the empty
  dict torch attaches to an OrderedDict (`_metadata`), which is accepted and dropped;
* its opcodes are scanned before it runs (pickletools, which executes nothing) to bound its
  length and memo indices: CPython's unpickler allocates and zeroes a memo array as large as
  the largest index it is given, so 7 bytes could otherwise cost gigabytes;
* every size read from the archive is bounded by the archive's own sizes and a cap before
  anything is decompressed;
* each tensor is checked again where its numpy view is built (exact ints, non-negative, inside
  its storage, no two indices sharing an element), and all tensors together may not claim more
  bytes than the file holds.
Storages are then mapped, not read: each tensor is a numpy view of the file mapping.

    >>> ck = read_torch_checkpoint("RWKV-x060-World-1B6.pth")     # doctest: +SKIP
    >>> ck["emb.weight"].shape, ck["emb.weight"].dtype              # doctest: +SKIP
    ((65536, 2048), 'BF16')
"""
from __future__ import annotations

import io
import math
import mmap
import os
import pickle
import pickletools
import reprlib
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["CheckpointError", "CheckpointTensor", "read_torch_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely: forbidden pickle content, bad archive, bad sizes."""


# torch storage class -> (our dtype name, numpy dtype of the raw elements)
_STORAGES = {
    "FloatStorage": ("F32", np.dtype("<f4")),
    "HalfStorage": ("F16", np.dtype("<f2")),
    "BFloat16Storage": ("BF16", np.dtype("<u2")),  # raw bits; converted by the caller
}
_NP_DTYPES = {ours: npdt for ours, npdt in _STORAGES.values()}

# A state dict's pickle costs ~100-250 bytes and ~25 opcodes per tensor (its name, the storage
# tuple, shape and stride), so 16 MiB and 1M opcodes leave room for ~40k tensors, 10x a large
# training checkpoint, while bounding what unpickling may allocate (each opcode makes at most
# one object, small or no longer than its own bytes, so 1M opcodes stay near 100 MB).
_MAX_PICKLE = 16 << 20
_MAX_OPCODES = 1 << 20
_MAX_BYTEORDER = 16  # "little" or "big"
_DEFLATE_MAX_RATIO = 1032  # deflate's limit: 258 bytes from a 2-bit match at best
_MAX_DIMS = 16  # torch allows more; no weight has more than 4, numpy allows 64
_MAX_DIM = 1 << 48  # no dimension, stride or offset of a real tensor reaches 2^48 elements

_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60


def _short(v: Any) -> str:
    """A bounded repr of a value from the file (it may be a 16 MB string or a 10^5-digit int)."""
    try:
        return _short_repr.repr(v)
    except (ValueError, RecursionError):  # int too long to print, nesting too deep
        return f"<{type(v).__name__}>"


def _plain(s: Any) -> str:
    """A module or class name from the file, unquoted, cut short."""
    return (s if len(s) <= 80 else s[:77] + "...") if type(s) is str else _short(s)


def _is_int(v: Any) -> bool:
    return type(v) is int  # not bool, not a subclass


# ------------------------------------------------------------------ what the pickle gets --

class _Inert:
    """Base of everything the unpickler can hand to the pickle: no __dict__ (slots), attribute
    writes refused, and BUILD refused, since BUILD would otherwise rewrite a checked object
    (e.g. a tensor's stride) after its rebuild function validated it."""
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to set {_short(name)} on a {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to delete {_short(name)} of a {type(self).__name__}")

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to modify a {type(self).__name__} (BUILD); "
                              f"torch never writes that")

    def _init(self, **fields: Any) -> None:
        for k, v in fields.items():
            object.__setattr__(self, k, v)


class _StorageType(_Inert):
    """torch.FloatStorage etc.: a marker naming the element type (made fresh per load)."""
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self._init(name=name)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage(_Inert):
    __slots__ = ("dtype", "key", "numel")

    def __init__(self, dtype: str, key: str, numel: int) -> None:
        self._init(dtype=dtype, key=key, numel=numel)


class _TensorRef(_Inert):
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self._init(storage=storage, offset=offset, size=size, stride=stride)


class _Callable(_Inert):
    """A stand-in for a global the pickle may call (REDUCE): the function, behind an object the
    pickle cannot modify (a plain function has a writable __dict__ and is shared)."""
    __slots__ = ("_fn", "_what")

    def __init__(self, fn: Callable[..., Any], what: str) -> None:
        self._init(_fn=fn, _what=what)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __repr__(self) -> str:
        return self._what


class _OrderedDict(dict):
    """collections.OrderedDict as the pickle sees it: a plain (ordered) dict. torch's
    state_dict() attaches `_metadata` to it, which pickles as a BUILD with {'_metadata': ...}:
    accepted and dropped; any other state, and any attribute write, is refused."""
    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        if state is not None and type(state) is not dict:
            raise CheckpointError(f"the checkpoint's pickle sets {_short(state)} on an OrderedDict")

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to set {_short(name)} on an OrderedDict")

    def __delattr__(self, name: str) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to delete {_short(name)} of an OrderedDict")


def _as_ints(v: Any, what: str) -> tuple[int, ...]:
    if type(v) not in (tuple, list) or len(v) > _MAX_DIMS:
        raise CheckpointError(f"tensor {what} {_short(v)} is not a tuple of at most {_MAX_DIMS} integers")
    t = tuple(v)  # a copy: a list could be appended to later through the memo
    if not all(_is_int(d) and 0 <= d < _MAX_DIM for d in t):
        raise CheckpointError(f"tensor with invalid {what} {_short(t)}")
    return t


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> _TensorRef:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])."""
    if type(storage) is not _Storage:
        raise CheckpointError("a tensor refers to something that is not a storage")
    if not _is_int(storage_offset) or not 0 <= storage_offset < _MAX_DIM:
        raise CheckpointError(f"tensor with invalid storage offset {_short(storage_offset)}")
    size, stride = _as_ints(size, "size"), _as_ints(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {list(size)} and stride {list(stride)} differ in length")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    """torch._utils._rebuild_parameter(data, requires_grad, hooks): a Parameter is its data."""
    return data


def _allowed() -> dict[tuple[str, str], Any]:
    """The globals a checkpoint may name, as fresh stand-ins: one load cannot change what
    another sees (a shared storage marker, once renamed, would decode every later file wrongly)."""
    return {
        ("torch._utils", "_rebuild_tensor_v2"): _Callable(_rebuild_tensor_v2, "torch._utils._rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"): _Callable(_rebuild_parameter, "torch._utils._rebuild_parameter"),
        ("collections", "OrderedDict"): _Callable(_OrderedDict, "collections.OrderedDict"),
        **{("torch", name): _StorageType(name) for name in _STORAGES},
    }


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise CheckpointError(
                f"the checkpoint's pickle asks for {_plain(module)}.{_plain(name)}, which is not a tensor or "
                f"container type: refusing to run it (only "
                f"{', '.join(sorted(f'{m}.{n}' for m, n in self._allowed))} are allowed)") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {_short(pid)}")
        _, stype, key, _location, numel = pid
        if type(stype) is not _StorageType or not any(stype is v for v in self._allowed.values()):
            raise CheckpointError(f"storage of unsupported type {_short(stype)} (only float32, float16, bfloat16)")
        if type(key) is not str or not _is_int(numel) or not 0 <= numel < _MAX_DIM:
            raise CheckpointError(f"storage with invalid key/size {_short(key)} {_short(numel)}")
        return _Storage(_STORAGES[stype.name][0], key, numel)


# Hashing: ints equal modulo 2^61 - 1 share a hash, so a dict (or set) of many such big ints
# takes quadratic time to build (8000 of them take 1.4 s; 16 MiB of them, hours). No size,
# stride or offset needs more than 64 bits, and a state dict has no sets (whose hash of small
# ints is also easy to collide), so both are refused before the pickle runs.
_INT_LIMIT = 1 << 63
_SET_OPCODES = ("EMPTY_SET", "ADDITEMS", "FROZENSET")


def _scan_pickle(data: bytes) -> None:
    """Walk the opcodes without running them: a bounded count, memo indices below it, integers
    of at most 64 bits, no sets."""
    n_ops = 0
    memo_limit = min(len(data), _MAX_OPCODES)  # each memoized object costs at least one opcode byte
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            n_ops += 1
            if n_ops > _MAX_OPCODES:
                raise CheckpointError(f"data.pkl has more than {_MAX_OPCODES} opcodes; not a state dict")
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not (_is_int(arg) and 0 <= arg < memo_limit):
                raise CheckpointError(f"data.pkl stores to memo slot {_short(arg)}; a pickle of {len(data)} bytes "
                                      f"never has that many objects")
            if _is_int(arg) and not -_INT_LIMIT <= arg < _INT_LIMIT:
                raise CheckpointError(f"data.pkl holds an integer beyond 64 bits ({op.name}); not a tensor's size")
            if op.name in _SET_OPCODES:
                raise CheckpointError(f"data.pkl builds a set ({op.name}); a state dict has none")
    except CheckpointError:
        raise
    except (ValueError, EOFError, UnicodeDecodeError, struct.error, OverflowError) as e:
        raise CheckpointError(f"data.pkl is not a valid pickle: {_short(str(e))}") from None


def _unpickle(data: bytes) -> Any:
    _scan_pickle(data)
    try:
        return _Unpickler(data).load()
    except CheckpointError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # any malformed pickle: never a crash, never code
        raise CheckpointError(f"cannot unpickle data.pkl: {type(e).__name__}: {_short(str(e))}") from None


# ------------------------------------------------------------------------- the tensors --

@dataclass
class CheckpointTensor:
    """One tensor of a checkpoint: its dtype (F32, F16, BF16), numpy shape, and a view of the data."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    _view: np.ndarray  # elements as stored (BF16 as uint16 bits), possibly strided
    _map: mmap.mmap | None = None  # the file mapping and the byte range the view lies in
    _span: tuple[int, int] = (0, 0)

    def release(self) -> None:
        """Drop the mapped pages of this tensor from the process (the data stays readable: the
        kernel reads it back from the file if it is used again), so converting a checkpoint
        never keeps more than about one tensor of it resident."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        lo, hi = -(-self._span[0] // page) * page, self._span[1] // page * page
        if hi > lo:
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def raw(self) -> np.ndarray:
        """The stored elements in C order (BF16 as uint16 bits): a view when contiguous."""
        return np.ascontiguousarray(self._view)

    def f32(self, r0: int | None = None, r1: int | None = None) -> np.ndarray:
        """The values (of rows r0:r1 of the first dimension) as a fresh float32 array, exactly."""
        v = self._view if r0 is None else self._view[r0:r1]
        if self.dtype == "BF16":
            return (np.ascontiguousarray(v).astype(np.uint32) << 16).view(np.float32)
        return np.array(v, dtype=np.float32, order="C")

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self._view.itemsize


def _self_overlapping(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """True when two indices reach the same element (a stride 0 on a dimension > 1, or strides
    that interleave). Sorted by stride, each dimension must step past everything the smaller
    ones reach; contiguous and transposed tensors do."""
    reach = 0  # the largest offset the dimensions so far can reach
    for s, d in sorted((s, d) for d, s in zip(size, stride) if d > 1):
        if s <= reach:
            return True
        reach += (d - 1) * s
    return False


def _checked_ref(name: str, ref: Any) -> tuple[_Storage, int, tuple[int, ...], tuple[int, ...]]:
    """Everything about a tensor again, where it is used: nothing the pickle built is trusted."""
    if type(ref) is not _TensorRef or type(ref.storage) is not _Storage:
        raise CheckpointError(f"tensor {_short(name)} is not a tensor")
    st, off, size, stride = ref.storage, ref.offset, ref.size, ref.stride
    if (st.dtype not in _NP_DTYPES or type(st.key) is not str or not _is_int(st.numel) or st.numel < 0
            or not _is_int(off) or off < 0 or type(size) is not tuple or type(stride) is not tuple
            or len(size) != len(stride) or len(size) > _MAX_DIMS
            or not all(_is_int(v) and 0 <= v < _MAX_DIM for v in size + stride)):
        raise CheckpointError(f"tensor {_short(name)} has an invalid offset/size/stride")
    if _self_overlapping(size, stride):
        raise CheckpointError(f"tensor {_short(name)} of shape {list(size)} has strides {list(stride)} that "
                              f"reuse its elements (a stride 0 or overlapping dimensions); torch never saves that")
    if math.prod(size) and off + sum((d - 1) * s for d, s in zip(size, stride)) >= st.numel:
        raise CheckpointError(f"tensor {_short(name)} of shape {list(size)} at offset {off} runs past its "
                              f"storage of {st.numel} elements")
    return st, off, size, stride


def _entry_data_offset(mm: mmap.mmap, info: zipfile.ZipInfo, size: int) -> int:
    """Where the bytes of a stored (uncompressed) zip entry start, checked against the file."""
    off = info.header_offset
    if off < 0 or off + 30 > size:
        raise CheckpointError(f"zip entry {_short(info.filename)}: header offset {off} is past the end of the file")
    sig, = struct.unpack_from("<I", mm, off)
    if sig != 0x04034B50:
        raise CheckpointError(f"zip entry {_short(info.filename)}: no local header at offset {off}")
    n_name, n_extra = struct.unpack_from("<HH", mm, off + 26)
    start = off + 30 + n_name + n_extra
    if info.compress_size != info.file_size or start + info.file_size > size:
        raise CheckpointError(f"zip entry {_short(info.filename)}: its {info.file_size} bytes run past the end "
                              f"of the file")
    return start


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, size: int, what: str) -> bytes:
    """A small member, read only when its declared sizes are plausible, and never past `cap`."""
    name = _short(info.filename)
    if info.file_size > cap:
        raise CheckpointError(f"{name} declares {info.file_size} bytes; {what} never needs more than {cap}")
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{name} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise CheckpointError(f"{name} is stored with {info.compress_size} bytes but declares {info.file_size}")
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > _DEFLATE_MAX_RATIO * max(info.compress_size, 1):
            raise CheckpointError(f"{name} declares {info.file_size} bytes from {info.compress_size} compressed: "
                                  f"more than deflate can produce")
    else:
        raise CheckpointError(f"{name} uses zip compression method {info.compress_type}; torch writes stored entries")
    if not 0 <= info.header_offset <= size or info.header_offset + info.compress_size > size:
        raise CheckpointError(f"{name}: its {info.compress_size} bytes at offset {info.header_offset} run past the "
                              f"end of the file")
    with zf.open(info) as member:
        data = member.read(cap + 1)  # zipfile also stops at the declared size
    if len(data) != info.file_size:
        raise CheckpointError(f"{name} holds {len(data)} bytes, its header says {info.file_size}")
    return data


# Everything zipfile and the size checks can raise on a broken archive (NotImplementedError:
# an unsupported compression or flag; RuntimeError: encryption; zlib.error: a bad deflate stream).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
                   UnicodeDecodeError, struct.error, OverflowError, zlib.error, ValueError, OSError, KeyError)


def _read_pickle(zf: zipfile.ZipFile, size: int) -> tuple[str, dict[str, zipfile.ZipInfo], Any]:
    """(the archive's prefix, its entries by name, the unpickled object)."""
    infos = {i.filename: i for i in zf.infolist()}
    pkls = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise CheckpointError(f"expected one <name>/data.pkl in the archive, found {len(pkls)}")
    prefix = pkls[0][: -len("data.pkl")]
    bo = infos.get(prefix + "byteorder")
    if bo is not None and _read_entry(zf, bo, _MAX_BYTEORDER, size, "a byteorder entry").strip() \
            not in (b"little", b""):
        raise CheckpointError("big-endian checkpoints are not supported")
    pkl = _read_entry(zf, infos[pkls[0]], _MAX_PICKLE, size, "a state dict's pickle")
    return prefix, infos, _unpickle(pkl)


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, CheckpointTensor]:
    """The tensors of a torch zip checkpoint, by name, in the file's order (values stay mapped).

    Raises CheckpointError (a ValueError) naming the file for a pickle that names anything but
    tensors and plain containers, a non-float storage, a truncated or malformed archive, sizes
    out of proportion to the file, or a tensor that does not fit its storage or reuses its
    elements; OSError when the file cannot be opened.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            zf = zipfile.ZipFile(f)
        except _ARCHIVE_ERRORS as e:
            raise CheckpointError(f"{path}: not a torch zip checkpoint ({type(e).__name__}: {_short(str(e))}); "
                                  f"old non-zip torch files are not supported, re-save with torch >= 1.6") from None
        with zf:
            try:
                prefix, infos, obj = _read_pickle(zf, size)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e}") from None
            except _ARCHIVE_ERRORS as e:
                raise CheckpointError(f"{path}: broken archive: {type(e).__name__}: {_short(str(e))}") from None
        try:
            return _tensors(obj, prefix, infos, f, size)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None


def _tensors(obj: Any, prefix: str, infos: dict[str, zipfile.ZipInfo], f: Any,
             size: int) -> dict[str, CheckpointTensor]:
    """The checked tensor views of an unpickled state dict (CheckpointError without the file name)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"the checkpoint is a {type(obj).__name__}, not a dict of tensors")
    if isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # training checkpoints wrap the weights
    refs = {k: v for k, v in obj.items() if type(v) is _TensorRef}
    if not refs:
        raise CheckpointError("no tensors in the checkpoint")
    bad = [k for k in refs if type(k) is not str]
    if bad:
        raise CheckpointError(f"tensor keys must be strings, got {_short(bad[0])}")
    checked = {name: _checked_ref(name, ref) for name, ref in refs.items()}
    # Tensors may share storage, but together they cannot hold more than the file: the bound that
    # keeps a few KB of checkpoint from claiming gigabytes of output through reused bytes.
    total = sum(math.prod(sz) * _NP_DTYPES[st.dtype].itemsize for st, _, sz, _ in checked.values())
    if total > size:
        raise CheckpointError(f"its tensors claim {total} bytes, more than the {size} bytes of the file "
                              f"(the same bytes reused by many tensors)")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out: dict[str, CheckpointTensor] = {}
    storages: dict[str, tuple[np.ndarray, int]] = {}
    for name, (st, off, shape, stride) in checked.items():
        npdt = _NP_DTYPES[st.dtype]
        if st.key not in storages:
            info = infos.get(f"{prefix}data/{st.key}")
            if info is None:
                raise CheckpointError(f"tensor {_short(name)}: storage {_short(st.key)} is missing from the archive")
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(f"storage {_short(st.key)} is compressed; torch never writes that")
            if info.file_size < st.numel * npdt.itemsize:
                raise CheckpointError(f"storage {_short(st.key)} holds {info.file_size} bytes, "
                                      f"{st.numel} {st.dtype} elements need {st.numel * npdt.itemsize}")
            start = _entry_data_offset(mm, info, size)
            storages[st.key] = (np.frombuffer(mm, dtype=npdt, count=st.numel, offset=start), start)
        buf, start = storages[st.key]
        if buf.dtype != npdt or buf.size != st.numel:
            raise CheckpointError(f"storage {_short(st.key)} is used with two element types or sizes")
        n = math.prod(shape)
        if n:
            last = off + sum((d - 1) * s for d, s in zip(shape, stride))
            if last >= buf.size:  # _checked_ref saw the same numel; this keeps it so under -O too
                raise CheckpointError(f"tensor {_short(name)} runs past its storage")
            view = np.lib.stride_tricks.as_strided(buf[off:], shape=shape, strides=[s * npdt.itemsize for s in stride],
                                                   writeable=False)
            first = start + off * npdt.itemsize
            span = (first, first + (last + 1 - off) * npdt.itemsize)
        else:
            view = np.zeros(shape, npdt)
            span = (start, start)
        out[name] = CheckpointTensor(name, st.dtype, shape, view, mm, span)
    return out
