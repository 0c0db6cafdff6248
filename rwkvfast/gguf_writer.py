"""gguf_writer.py — a minimal GGUF v3 writer (little-endian), numpy only.

File layout: magic "GGUF", u32 version, u64 tensor count, u64 kv count; the kv pairs
(string key, u32 value type, value); the tensor infos (string name, u32 n_dims,
u64 ne[n_dims], u32 ggml type, u64 offset relative to the data section); zero padding to
the alignment; the tensor data, each tensor starting at a multiple of the alignment and
followed by zero padding (as gguf-py writes it). Strings are u64 length + bytes.

Example::

    import numpy as np
    from rwkvfast.gguf_writer import U32, write_gguf
    write_gguf("x.gguf",
               {"general.architecture": "rwkv6", "rwkv6.block_count": U32(2)},
               [("w", "F32", (4, 2), np.zeros((2, 4), np.float32))])

Metadata values are `Value`s (made with U8() ... F64(), Bool(), Str(), Array()) or plain
Python values, typed by these rules: bool -> BOOL; int -> UINT32 if it fits, else INT32
(negative), UINT64, INT64; float -> FLOAT32; str/bytes -> STRING; numpy scalars and arrays
-> their own dtype; list/tuple -> ARRAY of one type (str -> STRING, bool -> BOOL, ints ->
the first of UINT32/INT32/UINT64/INT64 that holds all, any float -> FLOAT32). Nested arrays
are not supported (llama.cpp writes none, and rwkvfast's reader refuses them).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence, Union

import numpy as np

from rwkvfast.atomic_file import create_temp, sweep_stale

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
GGUF_DEFAULT_ALIGNMENT = 32
GGML_MAX_NAME = 64  # ggml's tensor name buffer, NUL included


class GGUFValueType(IntEnum):
    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)


# struct codes of the fixed-size types; numpy dtypes are "<" + code ("?" is numpy's bool)
_STRUCT = dict(zip([t for t in GGUFValueType if t not in (GGUFValueType.STRING, GGUFValueType.ARRAY)],
                   "BbHhIif?Qqd"))
_NP_DTYPE = {t: np.dtype("<" + c) for t, c in _STRUCT.items()}


class GGMLType(NamedTuple):
    name: str
    id: int
    block_size: int  # elements per block
    type_size: int  # bytes per block


# ggml.h's enum ggml_type and the traits table's sizes (ids 4, 5, 31-33, 36-38 were removed).
_ROWS = [
    ("F32", 0, 1, 4), ("F16", 1, 1, 2), ("Q4_0", 2, 32, 18), ("Q4_1", 3, 32, 20),
    ("Q5_0", 6, 32, 22), ("Q5_1", 7, 32, 24), ("Q8_0", 8, 32, 34), ("Q8_1", 9, 32, 36),
    ("Q2_K", 10, 256, 84), ("Q3_K", 11, 256, 110), ("Q4_K", 12, 256, 144),
    ("Q5_K", 13, 256, 176), ("Q6_K", 14, 256, 210), ("Q8_K", 15, 256, 292),
    ("IQ2_XXS", 16, 256, 66), ("IQ2_XS", 17, 256, 74), ("IQ3_XXS", 18, 256, 98),
    ("IQ1_S", 19, 256, 50), ("IQ4_NL", 20, 32, 18), ("IQ3_S", 21, 256, 110),
    ("IQ2_S", 22, 256, 82), ("IQ4_XS", 23, 256, 136), ("I8", 24, 1, 1), ("I16", 25, 1, 2),
    ("I32", 26, 1, 4), ("I64", 27, 1, 8), ("F64", 28, 1, 8), ("IQ1_M", 29, 256, 56),
    ("BF16", 30, 1, 2), ("TQ1_0", 34, 256, 54), ("TQ2_0", 35, 256, 66), ("MXFP4", 39, 32, 17),
    ("NVFP4", 40, 64, 36), ("Q1_0", 41, 128, 18),
]
GGML_TYPES: dict[str, GGMLType] = {r[0]: GGMLType(*r) for r in _ROWS}
GGML_TYPE_BY_ID: dict[int, GGMLType] = {t.id: t for t in GGML_TYPES.values()}


def ggml_type(t: str | int) -> GGMLType:
    """The GGMLType row for a name ("Q8_0") or an id (8); ValueError if unknown."""
    row = GGML_TYPES.get(t) if isinstance(t, str) else GGML_TYPE_BY_ID.get(int(t))
    if row is None:
        raise ValueError(f"unknown ggml type {t!r}")
    return row


def tensor_nbytes(t: str | int, ne: Sequence[int]) -> int:
    """Bytes of a tensor of ggml type t and shape ne (ggml order: ne[0] is contiguous)."""
    row = ggml_type(t)
    if not 1 <= len(ne) <= 4 or any(int(d) < 1 for d in ne):
        raise ValueError(f"shape {tuple(ne)}: expected 1 to 4 positive dimensions")
    if ne[0] % row.block_size:
        raise ValueError(f"row length {ne[0]} is not a multiple of the {row.name} block size {row.block_size}")
    return int(np.prod([int(d) for d in ne], dtype=object)) // row.block_size * row.type_size


@dataclass(frozen=True)
class Value:
    """A metadata value with its GGUF type (`item` is the element type of an ARRAY)."""
    type: GGUFValueType
    value: Any
    item: GGUFValueType | None = None


def U8(v: int) -> Value: return Value(GGUFValueType.UINT8, v)
def I8(v: int) -> Value: return Value(GGUFValueType.INT8, v)
def U16(v: int) -> Value: return Value(GGUFValueType.UINT16, v)
def I16(v: int) -> Value: return Value(GGUFValueType.INT16, v)
def U32(v: int) -> Value: return Value(GGUFValueType.UINT32, v)
def I32(v: int) -> Value: return Value(GGUFValueType.INT32, v)
def U64(v: int) -> Value: return Value(GGUFValueType.UINT64, v)
def I64(v: int) -> Value: return Value(GGUFValueType.INT64, v)
def F32(v: float) -> Value: return Value(GGUFValueType.FLOAT32, v)
def F64(v: float) -> Value: return Value(GGUFValueType.FLOAT64, v)
def Bool(v: bool) -> Value: return Value(GGUFValueType.BOOL, v)
def Str(v: str | bytes) -> Value: return Value(GGUFValueType.STRING, v)
def Array(item: GGUFValueType, values: Sequence[Any] | np.ndarray) -> Value:
    """An ARRAY of `item`-typed elements, e.g. Array(GGUFValueType.INT32, [3, 1, 1])."""
    return Value(GGUFValueType.ARRAY, values, GGUFValueType(item))


def _int_type(lo: int, hi: int) -> GGUFValueType:
    for t, a, b in ((GGUFValueType.UINT32, 0, 2**32), (GGUFValueType.INT32, -2**31, 2**31),
                    (GGUFValueType.UINT64, 0, 2**64), (GGUFValueType.INT64, -2**63, 2**63)):
        if a <= lo and hi < b:
            return t
    raise ValueError(f"integer {lo if lo < 0 else hi} does not fit in 64 bits")


def _np_type(dt: np.dtype) -> GGUFValueType:
    for t, d in _NP_DTYPE.items():
        if dt.newbyteorder("<") == d:
            return t
    raise ValueError(f"numpy dtype {dt} has no GGUF value type")


def as_value(v: Any) -> Value:
    """Type a plain Python/numpy value by the rules in the module docstring."""
    if isinstance(v, Value):
        return v
    if isinstance(v, (bool, np.bool_)):
        return Bool(bool(v))
    if isinstance(v, np.generic):
        return Value(_np_type(v.dtype), v.item())
    if isinstance(v, int):
        return Value(_int_type(v, v), v)
    if isinstance(v, float):
        return F32(v)
    if isinstance(v, (str, bytes)):
        return Str(v)
    if isinstance(v, np.ndarray):
        return Array(_np_type(v.dtype), v)
    if isinstance(v, (list, tuple)) and v:
        if all(isinstance(x, (str, bytes)) for x in v):
            return Array(GGUFValueType.STRING, v)
        if all(isinstance(x, bool) for x in v):
            return Array(GGUFValueType.BOOL, v)
        if all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return Array(_int_type(min(v), max(v)), v)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            return Array(GGUFValueType.FLOAT32, v)
    raise ValueError(f"cannot infer a GGUF type for {type(v).__name__} value {v!r:.60}; wrap it (U32(...), Array(...))")


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _encode(v: Value) -> bytes:
    """The bytes of a value after its u32 type tag; ValueError if it does not fit its type."""
    t = v.type
    if t == GGUFValueType.STRING:
        return _str(v.value)
    if t != GGUFValueType.ARRAY:
        try:
            return struct.pack("<" + _STRUCT[t], v.value)
        except (KeyError, struct.error, OverflowError, TypeError) as e:
            raise ValueError(f"value {v.value!r:.60} does not fit GGUF type {t!r}") from e
    if v.item is None or v.item == GGUFValueType.ARRAY:
        raise ValueError("arrays need an element type, and nested arrays are not supported")
    head = struct.pack("<IQ", v.item, len(v.value))
    if v.item == GGUFValueType.STRING:
        return head + b"".join(_str(s) for s in v.value)
    a, dt = np.asarray(v.value), np.dtype(_NP_DTYPE[v.item])
    if a.ndim != 1:
        raise ValueError(f"array values must be one-dimensional, got shape {a.shape}")
    if dt.kind in "iu" and v.item != GGUFValueType.BOOL and a.size and (
            a.dtype.kind not in "iuO" or int(a.min()) < np.iinfo(dt).min or int(a.max()) > np.iinfo(dt).max):
        raise ValueError(f"array values do not fit GGUF type {v.item!r}")
    return head + a.astype(dt).tobytes()


TensorData = Union[bytes, bytearray, memoryview, np.ndarray, Callable[[], Iterable[Any]], Iterable[Any]]


def _chunks(data: TensorData) -> Iterable[Any]:
    if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        return (data,)
    return data() if callable(data) else data


def write_gguf(path: str | os.PathLike, metadata: Mapping[str, Any] | Sequence[tuple[str, Any]],
               tensors: Sequence[tuple[str, str | int, Sequence[int], TensorData]],
               alignment: int = GGUF_DEFAULT_ALIGNMENT, version: int = GGUF_VERSION, sweep: bool = False) -> Path:
    """Write a GGUF file atomically; returns its Path.

    `tensors` are (name, ggml type name or id, ne in ggml order, data); data is bytes, a numpy
    array (its C-order bytes), or, to stream big tensors, an iterable of such chunks or a
    callable returning one. The byte count must equal what ne and the type imply (ValueError).
    The file is written beside `path` under a temporary name and renamed over it only when
    complete, so a failure leaves an existing file untouched and no partial file behind.
    `sweep=True` first removes what crashed writers left in that directory (atomic_file.py).
    `general.alignment` is written (as U32) only when alignment != 32.
    """
    if alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"alignment {alignment} is not a power of two")
    items = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata)
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate metadata keys: {sorted({k for k in keys if keys.count(k) > 1})}")
    vals = {k: as_value(v) for k, v in items}
    if "general.alignment" in vals:
        if vals["general.alignment"] != U32(alignment):
            raise ValueError(f"general.alignment {vals['general.alignment']} disagrees with alignment={alignment}")
    elif alignment != GGUF_DEFAULT_ALIGNMENT:
        keys.append("general.alignment")
        vals["general.alignment"] = U32(alignment)

    head = [GGUF_MAGIC, struct.pack("<IQQ", version, len(tensors), len(keys))]
    for k in keys:
        try:
            head += [_str(k), struct.pack("<I", vals[k].type), _encode(vals[k])]
        except ValueError as e:
            raise ValueError(f"metadata {k!r}: {e}") from e
    offset, sizes, names = 0, [], set()
    for name, t, ne, _ in tensors:
        if name in names or len(name.encode("utf-8")) >= GGML_MAX_NAME:
            raise ValueError(f"tensor name {name!r} is duplicated or longer than {GGML_MAX_NAME - 1} bytes")
        names.add(name)
        try:
            nbytes = tensor_nbytes(t, ne)
        except ValueError as e:
            raise ValueError(f"tensor {name!r}: {e}") from e
        head += [_str(name), struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, ggml_type(t).id, offset)]
        sizes.append(nbytes)
        offset += -(-nbytes // alignment) * alignment

    path = Path(path)
    if sweep:
        sweep_stale(path.parent)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            header = b"".join(head)
            f.write(header + bytes(-len(header) % alignment))
            for (name, _, ne, data), nbytes in zip(tensors, sizes):
                written = 0
                for chunk in _chunks(data):
                    if isinstance(chunk, np.ndarray):
                        chunk = np.ascontiguousarray(chunk)
                        chunk = chunk.astype(chunk.dtype.newbyteorder("<"), copy=False)
                    mv = memoryview(chunk).cast("B")
                    written += len(mv)
                    if written > nbytes:
                        break
                    f.write(mv)
                if written != nbytes:
                    raise ValueError(f"tensor {name!r}: got {'more than ' if written > nbytes else ''}"
                                     f"{written} bytes of data, shape {tuple(ne)} needs {nbytes}")
                f.write(bytes(-nbytes % alignment))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def f32_to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even; NaN stays a (quiet) NaN.

    Same as ggml_compute_fp32_to_bf16 and gguf-py's quantize(..., BF16).
    >>> f32_to_bf16(np.float32([1.0, 1 + 2**-8, 1 + 3 * 2**-8])).tolist()  # ties to even
    [16256, 16256, 16258]
    """
    u = np.ascontiguousarray(a, dtype="<f4").view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    with np.errstate(over="ignore"):  # only NaNs can wrap, and those are replaced
        r = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
    return np.where(nan, (u >> 16) | 0x40, r).astype(np.uint16)


def f32_to_bf16_bytes(a: np.ndarray) -> bytes:
    """The BF16 bytes of a float32 array (see f32_to_bf16)."""
    return f32_to_bf16(a).tobytes()


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_f16_bytes(a: np.ndarray) -> bytes:
    """The F16 bytes of a float32 array: numpy's round-to-nearest-even cast, as llama.cpp's converter does."""
    return np.asarray(a, dtype=np.float32).astype("<f2").tobytes()
