"""pth.py — read PyTorch zip checkpoints (.pth, pytorch_model.bin) without torch.

A torch.save file is a zip archive: `<prefix>/data.pkl` is a pickle of the state dict whose
tensors refer, by key, to raw little-endian storages stored (uncompressed) as
`<prefix>/data/<key>`. The pickle is read by unpickle.py, which runs nothing from the file and
hands out only inert, immutable descriptions. The archive is as hostile as its pickle, so:
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

import math
import mmap
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .unpickle import (MAX_DIM, MAX_DIMS, NP_DTYPES, CheckpointError, StorageRef, TensorRef, is_int, short,
                       unpickle)

__all__ = ["CheckpointError", "CheckpointTensor", "read_torch_checkpoint"]

# A state dict's pickle costs ~100-250 bytes per tensor (unpickle.py), so 16 MiB is room for
# ~40k tensors, 10x a large training checkpoint.
_MAX_PICKLE = 16 << 20
_MAX_BYTEORDER = 16  # "little" or "big"
_DEFLATE_MAX_RATIO = 1032  # deflate's limit: 258 bytes from a 2-bit match at best


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


def _checked_ref(name: str, ref: Any) -> tuple[StorageRef, int, tuple[int, ...], tuple[int, ...]]:
    """Everything about a tensor again, where it is used: nothing the pickle built is trusted."""
    if type(ref) is not TensorRef or type(ref.storage) is not StorageRef:
        raise CheckpointError(f"tensor {short(name)} is not a tensor")
    st, off, size, stride = ref.storage, ref.offset, ref.size, ref.stride
    if (st.dtype not in NP_DTYPES or type(st.key) is not str or not is_int(st.numel) or st.numel < 0
            or not is_int(off) or off < 0 or type(size) is not tuple or type(stride) is not tuple
            or len(size) != len(stride) or len(size) > MAX_DIMS
            or not all(is_int(v) and 0 <= v < MAX_DIM for v in size + stride)):
        raise CheckpointError(f"tensor {short(name)} has an invalid offset/size/stride")
    if _self_overlapping(size, stride):
        raise CheckpointError(f"tensor {short(name)} of shape {list(size)} has strides {list(stride)} that "
                              f"reuse its elements (a stride 0 or overlapping dimensions); torch never saves that")
    if math.prod(size) and off + sum((d - 1) * s for d, s in zip(size, stride)) >= st.numel:
        raise CheckpointError(f"tensor {short(name)} of shape {list(size)} at offset {off} runs past its "
                              f"storage of {st.numel} elements")
    return st, off, size, stride


def _entry_data_offset(mm: mmap.mmap, info: zipfile.ZipInfo, size: int) -> int:
    """Where the bytes of a stored (uncompressed) zip entry start, checked against the file."""
    off = info.header_offset
    if off < 0 or off + 30 > size:
        raise CheckpointError(f"zip entry {short(info.filename)}: header offset {off} is past the end of the file")
    sig, = struct.unpack_from("<I", mm, off)
    if sig != 0x04034B50:
        raise CheckpointError(f"zip entry {short(info.filename)}: no local header at offset {off}")
    n_name, n_extra = struct.unpack_from("<HH", mm, off + 26)
    start = off + 30 + n_name + n_extra
    if info.compress_size != info.file_size or start + info.file_size > size:
        raise CheckpointError(f"zip entry {short(info.filename)}: its {info.file_size} bytes run past the end "
                              f"of the file")
    return start


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, size: int, what: str) -> bytes:
    """A small member, read only when its declared sizes are plausible, and never past `cap`."""
    name = short(info.filename)
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
    return prefix, infos, unpickle(pkl)


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
            raise CheckpointError(f"{path}: not a torch zip checkpoint ({type(e).__name__}: {short(str(e))}); "
                                  f"old non-zip torch files are not supported, re-save with torch >= 1.6") from None
        with zf:
            try:
                prefix, infos, obj = _read_pickle(zf, size)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e}") from None
            except _ARCHIVE_ERRORS as e:
                raise CheckpointError(f"{path}: broken archive: {type(e).__name__}: {short(str(e))}") from None
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
    refs = {k: v for k, v in obj.items() if type(v) is TensorRef}
    if not refs:
        raise CheckpointError("no tensors in the checkpoint")
    bad = [k for k in refs if type(k) is not str]
    if bad:
        raise CheckpointError(f"tensor keys must be strings, got {short(bad[0])}")
    checked = {name: _checked_ref(name, ref) for name, ref in refs.items()}
    # Tensors may share storage, but together they cannot hold more than the file: the bound that
    # keeps a few KB of checkpoint from claiming gigabytes of output through reused bytes.
    total = sum(math.prod(sz) * NP_DTYPES[st.dtype].itemsize for st, _, sz, _ in checked.values())
    if total > size:
        raise CheckpointError(f"its tensors claim {total} bytes, more than the {size} bytes of the file "
                              f"(the same bytes reused by many tensors)")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out: dict[str, CheckpointTensor] = {}
    storages: dict[str, tuple[np.ndarray, int]] = {}
    for name, (st, off, shape, stride) in checked.items():
        npdt = NP_DTYPES[st.dtype]
        if st.key not in storages:
            info = infos.get(f"{prefix}data/{st.key}")
            if info is None:
                raise CheckpointError(f"tensor {short(name)}: storage {short(st.key)} is missing from the archive")
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(f"storage {short(st.key)} is compressed; torch never writes that")
            if info.file_size < st.numel * npdt.itemsize:
                raise CheckpointError(f"storage {short(st.key)} holds {info.file_size} bytes, "
                                      f"{st.numel} {st.dtype} elements need {st.numel * npdt.itemsize}")
            start = _entry_data_offset(mm, info, size)
            storages[st.key] = (np.frombuffer(mm, dtype=npdt, count=st.numel, offset=start), start)
        buf, start = storages[st.key]
        if buf.dtype != npdt or buf.size != st.numel:
            raise CheckpointError(f"storage {short(st.key)} is used with two element types or sizes")
        n = math.prod(shape)
        if n:
            last = off + sum((d - 1) * s for d, s in zip(shape, stride))
            if last >= buf.size:  # _checked_ref saw the same numel; this keeps it so under -O too
                raise CheckpointError(f"tensor {short(name)} runs past its storage")
            view = np.lib.stride_tricks.as_strided(buf[off:], shape=shape, strides=[s * npdt.itemsize for s in stride],
                                                   writeable=False)
            first = start + off * npdt.itemsize
            span = (first, first + (last + 1 - off) * npdt.itemsize)
        else:
            view = np.zeros(shape, npdt)
            span = (start, start)
        out[name] = CheckpointTensor(name, st.dtype, shape, view, mm, span)
    return out
