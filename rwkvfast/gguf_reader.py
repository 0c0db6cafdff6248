"""gguf_reader.py — a small pure-numpy GGUF reader with typed metadata and mmap views.

The C reader (rwkvfast.gguf_metadata) is what validates files; this one keeps each
metadata value's GGUF type and gives zero-copy views of tensor data, which rewriting a
file needs (quantization, retyping). Callers validate with the C reader first.

    >>> g = read_gguf("model.gguf")                              # doctest: +SKIP
    >>> g.metadata["rwkv6.block_count"].value, g.tensor("output.weight").ne   # doctest: +SKIP
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .gguf_writer import (GGUF_DEFAULT_ALIGNMENT, Array, GGUFValueType, Str, Value, _NP_DTYPE, _STRUCT,
                          bf16_to_f32, ggml_type, tensor_nbytes)

__all__ = ["GGUFTensor", "GGUFFile", "read_gguf"]


@dataclass
class GGUFTensor:
    name: str
    type: int  # ggml type id
    ne: tuple[int, ...]  # ggml order, ne[0] contiguous
    offset: int  # relative to the data section
    nbytes: int
    data: np.ndarray  # uint8 view of the file mapping

    def array(self) -> np.ndarray:
        """F32/F16 data as float32, BF16 as float32, numpy shape = reversed ne."""
        name = ggml_type(self.type).name
        if name == "BF16":
            return bf16_to_f32(self.data.view("<u2")).reshape(self.ne[::-1])
        if name not in ("F32", "F16"):
            raise ValueError(f"tensor {self.name!r}: cannot view {name} data as float")
        return self.data.view("<f4" if name == "F32" else "<f2").astype(np.float32).reshape(self.ne[::-1])


@dataclass
class GGUFFile:
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, Value]  # in file order
    tensors: list[GGUFTensor]  # in file order

    def tensor(self, name: str) -> GGUFTensor:
        return next(t for t in self.tensors if t.name == name)


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse a GGUF v2/v3 file (pure Python + numpy; tensor data are views of an mmap).

    A test helper, not a validator: it raises ValueError on what it cannot parse, but the
    engine's C reader is the one that must refuse every hostile file.
    """
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def string() -> str | bytes:
        nonlocal pos
        (n,) = take("Q")
        if n > len(buf) - pos:
            raise ValueError(f"{path}: string runs past the end of the file")
        b = buf[pos:pos + n]
        pos += n
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return b

    def value(t: int) -> Value:
        nonlocal pos
        t = GGUFValueType(t)
        if t == GGUFValueType.STRING:
            return Str(string())
        if t != GGUFValueType.ARRAY:
            return Value(t, take(_STRUCT[t])[0])
        item, n = take("IQ")
        item = GGUFValueType(item)
        if item == GGUFValueType.STRING:
            return Array(item, [string() for _ in range(n)])
        a = np.frombuffer(buf, _NP_DTYPE[item], n, pos)
        pos += a.nbytes
        return Array(item, a.tolist())

    try:
        magic, version, n_tensors, n_kv = take("4sIQQ")
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"{path}: not a GGUF v2/v3 file")
        meta = {}
        for _ in range(n_kv):
            key = string()
            meta[key] = value(take("I")[0])
        infos = []
        for _ in range(n_tensors):
            name = string()
            (nd,) = take("I")
            ne = take(f"{nd}Q")
            infos.append((name, *take("IQ"), ne))
    except (struct.error, ValueError) as e:  # ValueError also covers unknown enum values
        raise ValueError(f"{path}: cannot parse GGUF: {e}") from e
    align = meta["general.alignment"].value if "general.alignment" in meta else GGUF_DEFAULT_ALIGNMENT
    data_offset = -(-pos // align) * align
    tensors = []
    for name, t, off, ne in infos:
        nbytes = tensor_nbytes(t, ne)
        if data_offset + off + nbytes > len(buf):
            raise ValueError(f"{path}: tensor {name!r} runs past the end of the file")
        tensors.append(GGUFTensor(name, t, tuple(ne), off,  nbytes,
                                  np.frombuffer(buf, np.uint8, nbytes, data_offset + off)))
    return GGUFFile(version, align, data_offset, meta, tensors)


# ---------------------------------------------------------------------- retyping --
