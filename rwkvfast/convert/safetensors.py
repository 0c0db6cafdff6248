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
import secrets
import struct
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .pth import CheckpointError, CheckpointTensor

__all__ = ["read_safetensors", "write_safetensors"]

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
_MAX_HEADER = 100 << 20  # a header this big is not a model's


def read_safetensors(path: str | os.PathLike) -> dict[str, CheckpointTensor]:
    """The tensors of a .safetensors file by name, in header order, as views of a mapping.

    Raises CheckpointError for a malformed header, an unsupported dtype (only F32, F16, BF16) or
    offsets that do not match the shapes or the file; OSError when it cannot be read.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: too short for a safetensors file ({size} bytes)")
        n, = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path}: header length {n} does not fit the file of {size} bytes")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: header is not JSON: {e}") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: header is not a JSON object")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data0, data_len = 8 + n, size - 8 - n
    out: dict[str, CheckpointTensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise CheckpointError(f"{path}: tensor {name!r}: entry lacks dtype/shape/data_offsets")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} is {dt}; only F32, F16 and BF16 are supported")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape)):
            raise CheckpointError(f"{path}: tensor {name!r}: invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise CheckpointError(f"{path}: tensor {name!r}: data offsets {offs!r} are outside the "
                                  f"{data_len} data bytes")
        npdt = _DTYPES[dt]
        count = math.prod(shape)
        if offs[1] - offs[0] != count * npdt.itemsize:
            raise CheckpointError(f"{path}: tensor {name!r}: shape {shape} needs {count * npdt.itemsize} bytes, "
                                  f"its offsets span {offs[1] - offs[0]}")
        view = np.frombuffer(mm, dtype=npdt, count=count, offset=data0 + offs[0]).reshape(shape)
        out[name] = CheckpointTensor(name, dt, tuple(shape), view, mm, (data0 + offs[0], data0 + offs[1]))
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
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
