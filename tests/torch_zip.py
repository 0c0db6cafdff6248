"""Write torch.save-layout zip checkpoints without torch (test helper).

The pickle is assembled from protocol-2 opcodes: a dict of name -> _rebuild_tensor_v2(persistent
storage, 0, size, stride, False, OrderedDict()), each storage its own `<prefix>/data/<key>` entry,
as torch writes them (stored, uncompressed). `pickle_bytes` replaces data.pkl for hostile cases.
"""
from __future__ import annotations

import struct
import zipfile
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


def data_pkl(entries: list[tuple[str, str, tuple[int, ...], str, int]]) -> bytes:
    """entries: (name, dtype, shape, storage key, storage numel)."""
    out = [b"\x80\x02}("]
    for name, dtype, shape, key, numel in entries:
        stride, acc = [], 1
        for d in reversed(shape):
            stride.insert(0, acc)
            acc *= d
        storage = _tuple([_str("storage"), b"ctorch\n" + _STORAGE[dtype].encode() + b"\n", _str(key),
                          _str("cpu"), _int(numel)]) + b"Q"
        args = _tuple([storage, _int(0), _tuple([_int(d) for d in shape]), _tuple([_int(s) for s in stride]),
                       b"\x89", b"ccollections\nOrderedDict\n)R"])
        out.append(_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R")
    out.append(b"u.")
    return b"".join(out)


def write_torch_zip(path: str | Path, tensors: dict[str, np.ndarray], dtype: str = "F32",
                    prefix: str = "archive", pickle_bytes: bytes | None = None,
                    numel_override: dict[str, int] | None = None) -> Path:
    """Save float arrays as `dtype` (F32, F16, BF16: truncated from float32 by rounding to nearest even)."""
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
        z.writestr(f"{prefix}/data.pkl", pickle_bytes if pickle_bytes is not None else data_pkl(entries))
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
