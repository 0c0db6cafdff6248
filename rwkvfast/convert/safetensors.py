"""safetensors.py — read and write .safetensors files (numpy only; no code is ever run).

Layout: u64 little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
tensor bytes, offsets relative to the end of the header. Reading maps the file and checks
every offset and size against it; writing goes to a temporary file renamed at the end.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import struct
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from rwkvfast.atomic_file import create_temp

from .pth import CheckpointError, CheckpointTensor
from .strict_json import parse_json

__all__ = ["read_safetensors", "write_safetensors"]

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
_MAX_HEADER = 100 << 20  # a header this big is not a model's
_MAX_DIMS = 16  # no weight has more than 4; numpy allows 64


def _show(v: object) -> str:
    """A header value for a message: short, and never str() of a deep or huge structure."""
    if isinstance(v, str):
        return repr(v[:40])
    if isinstance(v, list) and len(v) <= _MAX_DIMS and all(type(x) in (int, float, bool) for x in v):
        return str(v)[:120]
    return f"a JSON {type(v).__name__}"


def _is_uint(v: object) -> bool:
    return type(v) is int and v >= 0  # JSON true/false are not sizes


def _entries(header: object, data_len: int) -> list[tuple[str, str, tuple[int, ...], int, int]]:
    """(name, dtype, shape, begin, end) of every tensor in a parsed header, checked; CheckpointError
    (without the file name) on the first problem."""
    if not isinstance(header, dict):
        raise CheckpointError("header is not a JSON object")
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise CheckpointError(f"tensor {name[:80]!r}: entry lacks dtype/shape/data_offsets")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dt, str) or dt not in _DTYPES:
            raise CheckpointError(f"tensor {name[:80]!r} is {_show(dt)}; only F32, F16 and BF16 are supported")
        if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(_is_uint(d) for d in shape):
            raise CheckpointError(f"tensor {name[:80]!r}: invalid shape {_show(shape)}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_uint(o) for o in offs)
                or not offs[0] <= offs[1] <= data_len):
            raise CheckpointError(f"tensor {name[:80]!r}: data offsets {_show(offs)} are outside the "
                                  f"{data_len} data bytes")
        nbytes = math.prod(shape) * _DTYPES[dt].itemsize
        if offs[1] - offs[0] != nbytes:
            need = nbytes if nbytes < 1 << 64 else "over 2^64"  # str() of a 10^5-digit int raises
            raise CheckpointError(f"tensor {name[:80]!r}: shape {str(shape)[:120]} needs {need} bytes, "
                                  f"its offsets span {offs[1] - offs[0]}")
        out.append((name, dt, tuple(shape), offs[0], offs[1]))
    # The format lays tensors end to end; two sharing bytes would let a small file describe
    # any number of big tensors (and an output that size).
    last_end, last_name = 0, ""
    for name, _, _, begin, end in sorted(out, key=lambda e: (e[3], e[4])):
        if begin < last_end:
            raise CheckpointError(f"tensors {last_name[:80]!r} and {name[:80]!r} share data bytes")
        if end > begin:
            last_end, last_name = end, name
    return out


def read_safetensors(path: str | os.PathLike) -> dict[str, CheckpointTensor]:
    """The tensors of a .safetensors file by name, in header order, as views of a mapping.

    Raises CheckpointError (a ValueError) naming the file for a malformed header (not UTF-8
    JSON, nested too deep, wrong types), an unsupported dtype (only F32, F16, BF16), offsets
    that do not match the shapes or the file, or tensors sharing bytes; OSError when it cannot
    be read.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: too short for a safetensors file ({size} bytes)")
        n, = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path}: header length {n} does not fit the file of {size} bytes")
        raw = f.read(n)
        if len(raw) != n:
            raise CheckpointError(f"{path}: the file ended inside its {n}-byte header")
        header = parse_json(raw, f"{path}: header", CheckpointError)
        data0, data_len = 8 + n, size - 8 - n
        try:
            entries = _entries(header, data_len)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        except RecursionError:  # str() of a value nested nearly as deep as the parser allows
            raise CheckpointError(f"{path}: header JSON is nested too deeply") from None
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out: dict[str, CheckpointTensor] = {}
    for name, dt, shape, begin, end in entries:
        npdt = _DTYPES[dt]
        view = np.frombuffer(mm, dtype=npdt, count=(end - begin) // npdt.itemsize, offset=data0 + begin).reshape(shape)
        out[name] = CheckpointTensor(name, dt, shape, view, mm, (data0 + begin, data0 + end))
    return out


def write_safetensors(path: str | os.PathLike, tensors: Sequence[tuple[str, str, Sequence[int],
                                                                        Callable[[], Iterable[np.ndarray]]]],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write (name, dtype F32/F16/BF16, shape, callable giving the C-order chunks) atomically."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    off = 0
    for name, dt, shape, _ in tensors:
        nbytes = math.prod(shape) * _DTYPES[dt].itemsize
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = Path(path)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
            for (name, dt, shape, chunks), (_, info) in zip(tensors, [(k, v) for k, v in header.items()
                                                                       if k != "__metadata__"]):
                written = 0
                for c in chunks():
                    b = np.ascontiguousarray(c).tobytes()
                    written += len(b)
                    f.write(b)
                if written != info["data_offsets"][1] - info["data_offsets"][0]:
                    raise ValueError(f"tensor {name!r}: wrote {written} bytes, shape {list(shape)} needs "
                                     f"{info['data_offsets'][1] - info['data_offsets'][0]}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
