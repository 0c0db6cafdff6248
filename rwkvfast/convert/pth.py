"""pth.py — read PyTorch zip checkpoints (.pth, pytorch_model.bin) without torch.

A torch.save file is a zip archive: `<prefix>/data.pkl` is a pickle of the state dict whose
tensors refer, by key, to raw little-endian storages stored (uncompressed) as
`<prefix>/data/<key>`. Unpickling runs whatever callables the pickle names, so this reader
never lets the pickle name a real one: `find_class` answers only an allow-list of stand-ins
(the torch rebuild functions, the float storage types, OrderedDict) that build inert
descriptions, and refuses every other global with CheckpointError before anything runs.
Storages are then mapped, not read: each tensor is a numpy view of the file mapping, checked
against the archive's bounds first.

    >>> ck = read_torch_checkpoint("RWKV-x060-World-1B6.pth")     # doctest: +SKIP
    >>> ck["emb.weight"].shape, ck["emb.weight"].dtype              # doctest: +SKIP
    ((65536, 2048), 'BF16')
"""
from __future__ import annotations

import collections
import io
import math
import mmap
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _Storage:
    dtype: str
    key: str
    numel: int


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


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> _TensorRef:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor refers to something that is not a storage")
    ints = (storage_offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) or len(size) != len(stride):
        raise CheckpointError(f"tensor with invalid offset/size/stride {storage_offset!r} {size!r} {stride!r}")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    """torch._utils._rebuild_parameter(data, requires_grad, hooks): a Parameter is its data."""
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(name) for name in _STORAGES},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"the checkpoint's pickle asks for {module}.{name}, which is not a tensor or container type: "
                f"refusing to run it (only {', '.join(sorted(f'{m}.{n}' for m, n in _ALLOWED))} are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {str(pid)[:80]!r}")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"storage of unsupported type {stype!r} (only float32, float16, bfloat16)")
        if not isinstance(key, str) or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise CheckpointError(f"storage with invalid key/size {key!r} {numel!r}")
        return _Storage(_STORAGES[stype.name][0], key, numel)


def _entry_data_offset(mm: mmap.mmap, info: zipfile.ZipInfo, size: int) -> int:
    """Where the bytes of a stored (uncompressed) zip entry start, checked against the file."""
    off = info.header_offset
    if off < 0 or off + 30 > size:
        raise CheckpointError(f"zip entry {info.filename!r}: header offset {off} is past the end of the file")
    sig, = struct.unpack_from("<I", mm, off)
    if sig != 0x04034B50:
        raise CheckpointError(f"zip entry {info.filename!r}: no local header at offset {off}")
    n_name, n_extra = struct.unpack_from("<HH", mm, off + 26)
    start = off + 30 + n_name + n_extra
    if start + info.file_size > size:
        raise CheckpointError(f"zip entry {info.filename!r}: its {info.file_size} bytes run past the end of the file")
    return start


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, CheckpointTensor]:
    """The tensors of a torch zip checkpoint, by name, in the file's order (values stay mapped).

    Raises CheckpointError (a ValueError) for a pickle that names anything but tensors and plain
    containers, a non-float storage, a truncated or malformed archive, or a tensor that does not
    fit its storage; OSError when the file cannot be read.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        try:
            zf = zipfile.ZipFile(f)
        except zipfile.BadZipFile as e:
            raise CheckpointError(f"{path}: not a torch zip checkpoint ({e}); old non-zip torch files "
                                  f"are not supported, re-save with torch >= 1.6") from None
        with zf:
            infos = {i.filename: i for i in zf.infolist()}
            pkls = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkls) != 1:
                raise CheckpointError(f"{path}: expected one <name>/data.pkl in the archive, found {len(pkls)}")
            prefix = pkls[0][: -len("data.pkl")]
            bo = infos.get(prefix + "byteorder")
            if bo is not None and zf.read(bo).strip() not in (b"little", b""):
                raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
            try:
                pkl = zf.read(pkls[0])
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise CheckpointError(f"{path}: cannot read {pkls[0]}: {e}") from None
            try:
                obj = _Unpickler(io.BytesIO(pkl)).load()
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e}") from None
            except Exception as e:  # any malformed pickle: never a crash, never code
                raise CheckpointError(f"{path}: cannot unpickle data.pkl: {type(e).__name__}: {e}") from None
            if not isinstance(obj, dict):
                raise CheckpointError(f"{path}: the checkpoint is a {type(obj).__name__}, not a dict of tensors")
            if "state_dict" in obj and isinstance(obj["state_dict"], dict):
                obj = obj["state_dict"]  # training checkpoints wrap the weights
            refs = {k: v for k, v in obj.items() if isinstance(v, _TensorRef)}
            if not refs:
                raise CheckpointError(f"{path}: no tensors in the checkpoint")
            bad = [k for k in refs if not isinstance(k, str)]
            if bad:
                raise CheckpointError(f"{path}: tensor keys must be strings, got {bad[0]!r}")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
            if mm is None:
                raise CheckpointError(f"{path}: empty file")
            out: dict[str, CheckpointTensor] = {}
            storages: dict[str, np.ndarray] = {}
            start_of: dict[str, int] = {}
            for name, ref in refs.items():
                st = ref.storage
                npdt = _NP_DTYPES[st.dtype]
                buf = storages.get(st.key)
                if buf is None:
                    info = infos.get(f"{prefix}data/{st.key}")
                    if info is None:
                        raise CheckpointError(f"{path}: tensor {name!r}: storage {st.key!r} is missing from the archive")
                    if info.compress_type != zipfile.ZIP_STORED:
                        raise CheckpointError(f"{path}: storage {st.key!r} is compressed; torch never writes that")
                    if info.file_size < st.numel * npdt.itemsize:
                        raise CheckpointError(f"{path}: storage {st.key!r} holds {info.file_size} bytes, "
                                              f"{st.numel} {st.dtype} elements need {st.numel * npdt.itemsize}")
                    start = _entry_data_offset(mm, info, size)
                    buf = np.frombuffer(mm, dtype=npdt, count=st.numel, offset=start)
                    storages[st.key], start_of[st.key] = buf, start
                elif buf.dtype != npdt:
                    raise CheckpointError(f"{path}: storage {st.key!r} is used with two element types")
                n = math.prod(ref.size)
                last = ref.offset + sum((d - 1) * s for d, s in zip(ref.size, ref.stride)) if n else ref.offset
                if n and last >= st.numel:
                    raise CheckpointError(f"{path}: tensor {name!r} of shape {list(ref.size)} at offset "
                                          f"{ref.offset} runs past its storage of {st.numel} elements")
                view = np.lib.stride_tricks.as_strided(
                    buf[ref.offset:], shape=ref.size, strides=[s * npdt.itemsize for s in ref.stride],
                    writeable=False) if n else np.zeros(ref.size, npdt)
                first = start_of[st.key] + ref.offset * npdt.itemsize
                span = (first, first + (last + 1 - ref.offset) * npdt.itemsize) if n else (first, first)
                out[name] = CheckpointTensor(name, st.dtype, ref.size, view, mm, span)
            return out
