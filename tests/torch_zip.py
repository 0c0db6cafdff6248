"""Write torch.save-layout zip checkpoints without torch (test helper).

The pickle is assembled from protocol-2 opcodes: a dict of name -> _rebuild_tensor_v2(persistent
storage, 0, size, stride, False, OrderedDict()), each storage its own `<prefix>/data/<key>` entry,
as torch writes them (stored, uncompressed). `pickle_bytes` replaces data.pkl for hostile cases.

Hostile inputs (tests/test_convert_hostile.py, tests/fuzz/fuzz_pth.py): `tensor_pkl` writes
one tensor with any offset and stride, `build_after_tensor_pkl` rewrites a built tensor with the
BUILD opcode, `rename_storage_pkl` renames the FloatStorage marker, `aliased_torch_zip` makes
every tensor of a model a view of one small storage, and `write_raw_zip` / `deflate_zeros` make
zip entries whose declared sizes and compressed streams are whatever a test needs.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

_STORAGE = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage"}


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v) if -2**31 <= v < 2**31 else b"\x8a\x08" + struct.pack("<q", v)


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for d in reversed(shape):
        stride.insert(0, acc)
        acc *= d
    return tuple(stride)


def storage_pkl(dtype: str, key: str, numel: int) -> bytes:
    """The persistent id of a storage: ('storage', torch.<Type>Storage, key, 'cpu', numel)."""
    return _tuple([_str("storage"), b"ctorch\n" + _STORAGE[dtype].encode() + b"\n", _str(key),
                   _str("cpu"), _int(numel)]) + b"Q"


def tensor_pkl(name: str, dtype: str, shape: tuple[int, ...], key: str, numel: int,
               stride: tuple[int, ...] | None = None, offset: int = 0) -> bytes:
    """Opcodes pushing `name` and _rebuild_tensor_v2(storage, offset, shape, stride, False,
    OrderedDict()) (a dict item); the stride defaults to C order."""
    stride = _contiguous(shape) if stride is None else stride
    args = _tuple([storage_pkl(dtype, key, numel), _int(offset), _tuple([_int(d) for d in shape]),
                   _tuple([_int(s) for s in stride]), b"\x89", b"ccollections\nOrderedDict\n)R"])
    return _str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def data_pkl(entries: list[tuple], state_dict: bool = False) -> bytes:
    """entries: (name, dtype, shape, storage key, storage numel[, stride[, offset]]).

    state_dict=True pickles the dict as model.state_dict() does: an OrderedDict carrying torch's
    `_metadata` attribute, which comes as a BUILD opcode after the items."""
    head = b"\x80\x02ccollections\nOrderedDict\n)R(" if state_dict else b"\x80\x02}("
    out = [head] + [tensor_pkl(*e) for e in entries] + [b"u"]
    if state_dict:
        out.append(b"}" + _str("_metadata") + b"ccollections\nOrderedDict\n)R" + _str("") + b"}" + _str("version")
                   + _int(1) + b"ss" + b"sb")
    out.append(b".")
    return b"".join(out)


def build_after_tensor_pkl(state: dict[str, bytes], name: str = "emb.weight", shape: tuple[int, ...] = (4, 4),
                           numel: int = 16) -> bytes:
    """A one-tensor state dict whose tensor, once built, gets a BUILD with `state` (field ->
    the opcodes of its value), as a crafted file rewrites a checked offset or stride."""
    items = b"".join(_str(k) + v for k, v in state.items())
    return (b"\x80\x02}(" + tensor_pkl(name, "F32", shape, "0", numel) + b"}(" + items + b"ub" + b"u.")


def rename_storage_pkl() -> bytes:
    """A pickle that renames the torch.FloatStorage marker to HalfStorage (BUILD on the marker),
    then names os.system so the file is refused: with a shared marker, the rename outlived it."""
    return (b"\x80\x02ctorch\nFloatStorage\n}" + _str("name") + _str("HalfStorage") + b"sb0"
            + b"cos\nsystem\n" + _str("true") + b"\x85R.")


def rwkv6_shapes(n_layer: int = 2, C: int = 128, F: int = 448, V: int = 300, head: int = 64, D: int = 32,
                 Dd: int = 64) -> dict[str, tuple[int, ...]]:
    """The BlinkDL names and shapes of an RWKV-6 checkpoint (rwkv6_weights' shapes, no data)."""
    s = {"emb.weight": (V, C), "blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,)}
    for i in range(n_layer):
        b = f"blocks.{i}."
        s.update({b + f"{ln}.{w}": (C,) for ln in ("ln1", "ln2") for w in ("weight", "bias")})
        s.update({b + f"att.time_maa_{x}": (1, 1, C) for x in "xwkvrg"})
        s.update({b + "att.time_maa_w1": (C, 5 * D), b + "att.time_maa_w2": (5, D, C), b + "att.time_decay": (1, 1, C),
                  b + "att.time_decay_w1": (C, Dd), b + "att.time_decay_w2": (Dd, C),
                  b + "att.time_faaaa": (C // head, head)})
        s.update({b + f"att.{m}.weight": (C, C) for m in ("receptance", "key", "value", "gate", "output")})
        s.update({b + "att.ln_x.weight": (C,), b + "att.ln_x.bias": (C,), b + "ffn.time_maa_k": (1, 1, C),
                  b + "ffn.time_maa_r": (1, 1, C), b + "ffn.key.weight": (F, C), b + "ffn.receptance.weight": (C, C),
                  b + "ffn.value.weight": (C, F)})
    s.update({"ln_out.weight": (C,), "ln_out.bias": (C,), "head.weight": (V, C)})
    return s


def aliased_torch_zip(path: str | Path, shapes: dict[str, tuple[int, ...]], stride0: bool = True) -> Path:
    """A checkpoint whose every tensor is a view of one small F32 storage: with stride0, each has
    all strides 0 over a 1-element storage; otherwise each is C-contiguous at offset 0 of a
    storage as big as the largest tensor (the same bytes reused by all)."""
    numel = 1 if stride0 else max(int(np.prod(sh)) for sh in shapes.values())
    entries = [(n, "F32", sh, "0", numel, (0,) * len(sh) if stride0 else None) for n, sh in shapes.items()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl(entries))
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", np.full(numel, 0.5, "<f4").tobytes())
    return Path(path)


def deflate_zeros(mib: int) -> bytes:
    """A raw deflate stream of `mib` MiB of zero bytes, about 1 KB per MiB, made in milliseconds:
    after a full flush the compressor starts afresh, so every middle MiB compresses the same."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    z = b"\0" * (1 << 20)
    if mib < 2:
        return c.compress(z * mib) + c.flush()
    first = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)
    middle = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)
    return first + middle * (mib - 2) + c.compress(z) + c.flush(zlib.Z_FINISH)


def write_raw_zip(path: str | Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written by hand: members are (name, the bytes as stored, compression method (0 stored,
    8 deflated), the uncompressed size to declare, the CRC-32 to declare); no zip64."""
    local, central = [], []
    off = 0
    for name, data, method, file_size, crc in members:
        n = name.encode()
        head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), file_size, len(n), 0)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data),
                                   file_size, len(n), 0, 0, 0, 0, 0, off) + n)
        local.append(head + n + data)
        off += len(head) + len(n) + len(data)
    cd = b"".join(central)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), off, 0)
    Path(path).write_bytes(b"".join(local) + cd + end)
    return Path(path)


def write_torch_zip(path: str | Path, tensors: dict[str, np.ndarray], dtype: str = "F32",
                    prefix: str = "archive", pickle_bytes: bytes | None = None,
                    numel_override: dict[str, int] | None = None, state_dict: bool = False,
                    pkl_compression: int = zipfile.ZIP_STORED) -> Path:
    """Save float arrays as `dtype` (F32, F16, BF16: truncated from float32 by rounding to nearest even).

    state_dict=True pickles an OrderedDict with torch's `_metadata` (as model.state_dict());
    pkl_compression=zipfile.ZIP_DEFLATED deflates data.pkl (as a re-zipped archive may)."""
    entries, blobs = [], []
    for i, (name, a) in enumerate(tensors.items()):
        a = np.asarray(a, dtype=np.float32)
        if dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = a.astype("<f2").tobytes()
        else:
            u = a.view(np.uint32)
            raw = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()
        numel = (numel_override or {}).get(name, a.size)
        entries.append((name, dtype, a.shape, str(i), numel))
        blobs.append((str(i), raw))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pickle_bytes if pickle_bytes is not None else data_pkl(entries, state_dict),
                   compress_type=pkl_compression)
        z.writestr(f"{prefix}/byteorder", "little")
        for key, raw in blobs:
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")
    return Path(path)


def rwkv6_weights(n_layer: int = 2, C: int = 128, F: int = 448, V: int = 300, head: int = 64, D: int = 32,
                  Dd: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Random BlinkDL-named RWKV-6 weights of the given shape (scaled so the model stays finite)."""
    rng = np.random.default_rng(seed)
    H = C // head

    def n(*shape, s=1.0):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    w = {"emb.weight": n(V, C), "blocks.0.ln0.weight": 1 + n(C, s=0.1), "blocks.0.ln0.bias": n(C, s=0.05)}
    for i in range(n_layer):
        b = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            w[b + ln + ".weight"], w[b + ln + ".bias"] = 1 + n(C, s=0.1), n(C, s=0.05)
        for x in "xwkvrg":
            w[b + f"att.time_maa_{x}"] = rng.uniform(0, 1, (1, 1, C)).astype(np.float32)
        w[b + "att.time_maa_w1"] = n(C, 5 * D, s=C ** -0.5)
        w[b + "att.time_maa_w2"] = n(5, D, C, s=0.15 * D ** -0.5)
        w[b + "att.time_decay"] = rng.uniform(-6, 1, (1, 1, C)).astype(np.float32)
        w[b + "att.time_decay_w1"] = n(C, Dd, s=C ** -0.5)
        w[b + "att.time_decay_w2"] = n(Dd, C, s=0.5 * Dd ** -0.5)
        w[b + "att.time_faaaa"] = n(H, head, s=0.3)
        for m in ("receptance", "key", "value", "gate", "output"):
            w[b + f"att.{m}.weight"] = n(C, C, s=C ** -0.5)
        w[b + "att.ln_x.weight"], w[b + "att.ln_x.bias"] = 1 + n(C, s=0.1), n(C, s=0.05)
        w[b + "ffn.time_maa_k"] = rng.uniform(0, 1, (1, 1, C)).astype(np.float32)
        w[b + "ffn.time_maa_r"] = rng.uniform(0, 1, (1, 1, C)).astype(np.float32)
        w[b + "ffn.key.weight"] = n(F, C, s=C ** -0.5)
        w[b + "ffn.receptance.weight"] = n(C, C, s=C ** -0.5)
        w[b + "ffn.value.weight"] = n(C, F, s=F ** -0.5)
    w["ln_out.weight"], w["ln_out.bias"] = 1 + n(C, s=0.1), n(C, s=0.05)
    w["head.weight"] = n(V, C, s=4 * C ** -0.5)
    return w
