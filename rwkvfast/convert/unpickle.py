"""unpickle.py — the pickle inside a torch checkpoint, read without running anything from it.

Unpickling runs whatever callables the pickle names, so this reader never lets it name a real
one: `find_class` answers only an allow-list of stand-ins (the torch rebuild functions, the
float storage types, OrderedDict) that build inert descriptions, and refuses every other
global with CheckpointError before anything runs. The pickle is hostile until proven
otherwise, so:
* everything it can get hold of is made fresh for each load and is immutable to it: no
  `__dict__`, attribute writes refused, and BUILD (`__setstate__`) refused, except the empty
  dict torch attaches to an OrderedDict (`_metadata`), which is accepted and dropped;
* its opcodes are scanned before it runs (pickletools, which executes nothing) to bound its
  length and memo indices: CPython's unpickler allocates and zeroes a memo array as large as
  the largest index it is given, so 7 bytes could otherwise cost gigabytes; integers beyond 64
  bits and sets, which make dicts quadratic through hash collisions, are refused.
What comes out is a structure of dicts, tuples, ints and strings in which each tensor is a
`TensorRef` (a storage, an offset, a size and a stride), checked again by pth.py where used.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import reprlib
import struct
from typing import Any, Callable

import numpy as np

__all__ = ["CheckpointError", "STORAGES", "NP_DTYPES", "MAX_DIMS", "MAX_DIM", "TensorRef", "StorageRef",
           "unpickle", "short", "is_int"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely: forbidden pickle content, bad archive, bad sizes."""


# torch storage class -> (our dtype name, numpy dtype of the raw elements)
STORAGES = {
    "FloatStorage": ("F32", np.dtype("<f4")),
    "HalfStorage": ("F16", np.dtype("<f2")),
    "BFloat16Storage": ("BF16", np.dtype("<u2")),  # raw bits; converted by the caller
}
NP_DTYPES = {ours: npdt for ours, npdt in STORAGES.values()}

# A state dict's pickle costs ~100-250 bytes and ~25 opcodes per tensor (its name, the storage
# tuple, shape and stride), so 16 MiB and 1M opcodes leave room for ~40k tensors, 10x a large
# training checkpoint, while bounding what unpickling may allocate (each opcode makes at most
# one object, small or no longer than its own bytes, so 1M opcodes stay near 100 MB).
_MAX_OPCODES = 1 << 20
MAX_DIMS = 16  # torch allows more; no weight has more than 4, numpy allows 64
MAX_DIM = 1 << 48  # no dimension, stride or offset of a real tensor reaches 2^48 elements

_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60


def short(v: Any) -> str:
    """A bounded repr of a value from the file (it may be a 16 MB string or a 10^5-digit int)."""
    try:
        return _short_repr.repr(v)
    except (ValueError, RecursionError):  # int too long to print, nesting too deep
        return f"<{type(v).__name__}>"


def _plain(s: Any) -> str:
    """A module or class name from the file, unquoted, cut short."""
    return (s if len(s) <= 80 else s[:77] + "...") if type(s) is str else short(s)


def is_int(v: Any) -> bool:
    return type(v) is int  # not bool, not a subclass


# ------------------------------------------------------------------ what the pickle gets --

class _Inert:
    """Base of everything the unpickler can hand to the pickle: no __dict__ (slots), attribute
    writes refused, and BUILD refused, since BUILD would otherwise rewrite a checked object
    (e.g. a tensor's stride) after its rebuild function validated it."""
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to set {short(name)} on a {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to delete {short(name)} of a {type(self).__name__}")

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


class StorageRef(_Inert):
    __slots__ = ("dtype", "key", "numel")

    def __init__(self, dtype: str, key: str, numel: int) -> None:
        self._init(dtype=dtype, key=key, numel=numel)


class TensorRef(_Inert):
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: StorageRef, offset: int, size: tuple, stride: tuple) -> None:
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
            raise CheckpointError(f"the checkpoint's pickle sets {short(state)} on an OrderedDict")

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to set {short(name)} on an OrderedDict")

    def __delattr__(self, name: str) -> None:
        raise CheckpointError(f"the checkpoint's pickle tries to delete {short(name)} of an OrderedDict")


def _as_ints(v: Any, what: str) -> tuple[int, ...]:
    if type(v) not in (tuple, list) or len(v) > MAX_DIMS:
        raise CheckpointError(f"tensor {what} {short(v)} is not a tuple of at most {MAX_DIMS} integers")
    t = tuple(v)  # a copy: a list could be appended to later through the memo
    if not all(is_int(d) and 0 <= d < MAX_DIM for d in t):
        raise CheckpointError(f"tensor with invalid {what} {short(t)}")
    return t


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> TensorRef:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])."""
    if type(storage) is not StorageRef:
        raise CheckpointError("a tensor refers to something that is not a storage")
    if not is_int(storage_offset) or not 0 <= storage_offset < MAX_DIM:
        raise CheckpointError(f"tensor with invalid storage offset {short(storage_offset)}")
    size, stride = _as_ints(size, "size"), _as_ints(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {list(size)} and stride {list(stride)} differ in length")
    return TensorRef(storage, storage_offset, size, stride)


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
        **{("torch", name): _StorageType(name) for name in STORAGES},
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

    def persistent_load(self, pid: Any) -> StorageRef:
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {short(pid)}")
        _, stype, key, _location, numel = pid
        if type(stype) is not _StorageType or not any(stype is v for v in self._allowed.values()):
            raise CheckpointError(f"storage of unsupported type {short(stype)} (only float32, float16, bfloat16)")
        if type(key) is not str or not is_int(numel) or not 0 <= numel < MAX_DIM:
            raise CheckpointError(f"storage with invalid key/size {short(key)} {short(numel)}")
        return StorageRef(STORAGES[stype.name][0], key, numel)


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
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not (is_int(arg) and 0 <= arg < memo_limit):
                raise CheckpointError(f"data.pkl stores to memo slot {short(arg)}; a pickle of {len(data)} bytes "
                                      f"never has that many objects")
            if is_int(arg) and not -_INT_LIMIT <= arg < _INT_LIMIT:
                raise CheckpointError(f"data.pkl holds an integer beyond 64 bits ({op.name}); not a tensor's size")
            if op.name in _SET_OPCODES:
                raise CheckpointError(f"data.pkl builds a set ({op.name}); a state dict has none")
    except CheckpointError:
        raise
    except (ValueError, EOFError, UnicodeDecodeError, struct.error, OverflowError) as e:
        raise CheckpointError(f"data.pkl is not a valid pickle: {short(str(e))}") from None


def unpickle(data: bytes) -> Any:
    _scan_pickle(data)
    try:
        return _Unpickler(data).load()
    except CheckpointError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # any malformed pickle: never a crash, never code
        raise CheckpointError(f"cannot unpickle data.pkl: {type(e).__name__}: {short(str(e))}") from None
