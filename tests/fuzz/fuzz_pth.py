"""Fuzz the torch zip reader (rwkvfast/convert/pth.py) through its public entry points.

An input that starts with "PK" is written as the .pth itself; any other input is taken as the
data.pkl of an otherwise valid archive (two F32 storages, "0" of 64 elements and "1" of 16),
since a mutation inside a zipped data.pkl mostly breaks its CRC and never reaches the unpickler.
The file is given to read_torch_checkpoint, every tensor it returns is read in full (.f32(),
.raw(): a view outside the file mapping would crash here), and the same file goes to
rwkvfast.State.open on a tiny model (the `rwkvfast-chat --state FILE` path). Only ValueError
and OSError may come out; anything else escapes and is a bug (_harness.py).

    python tests/fuzz/fuzz_pth.py -runs=20000        # atheris; see _harness.py for the rest
"""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _harness
sys.path.insert(0, str(HERE.parent))  # tests/: torch_zip

import numpy as np  # noqa: E402

import rwkvfast  # noqa: E402
from _harness import main, scratch_dir  # noqa: E402
from rwkvfast.convert import read_torch_checkpoint  # noqa: E402
from rwkvfast.testing import make_model  # noqa: E402
from torch_zip import (_int, _tuple, aliased_torch_zip, build_after_tensor_pkl, data_pkl, deflate_zeros,  # noqa: E402
                       rename_storage_pkl, rwkv6_shapes, tensor_pkl, write_raw_zip, write_torch_zip)

_DIR = scratch_dir("fuzz_pth")
_INPUT = _DIR / "input.pth"
_MODEL_PATH = make_model(_DIR / "m.gguf", n_layer=1, n_embd=64, vocab=300, seed=1)  # 1 head of 64
_MODEL = rwkvfast.Model(_MODEL_PATH, n_threads=1)


def _bytes_of(write, name: str) -> bytes:
    p = write(_DIR / name)
    data = Path(p).read_bytes()
    Path(p).unlink()
    return data


def seeds() -> list[bytes]:
    """Small valid checkpoints of each dtype and layout, a state-tuning file for the model, and
    the hostile files of tests/test_convert_hostile.py."""
    rng = np.random.default_rng(0)
    small = {"emb.weight": rng.standard_normal((4, 3)).astype(np.float32), "ln.bias": np.ones(3, np.float32),
             "w": rng.standard_normal((2, 2, 2)).astype(np.float32)}
    out = [_bytes_of(lambda p, dt=dt: write_torch_zip(p, small, dtype=dt), f"s-{dt}.pth")
           for dt in ("F32", "F16", "BF16")]
    out.append(_bytes_of(lambda p: write_torch_zip(p, small, state_dict=True, pkl_compression=8), "sd.pth"))
    out.append(_bytes_of(lambda p: write_torch_zip(p, {"blocks.0.att.time_state": rng.standard_normal(
        (1, 64, 64)).astype(np.float32)}), "tuned.pth"))
    strided = b"\x80\x02}(" + tensor_pkl("t", "F32", (4, 3), "0", 24, (1, 4)) + \
        tensor_pkl("pad", "F32", (2, 3), "0", 24, (8, 1), 1) + b"u."
    hostile = [
        build_after_tensor_pkl({"stride": _tuple([_int(-(1 << 40)), _int(1)])}),
        build_after_tensor_pkl({"offset": _int(1 << 40)}),
        rename_storage_pkl(),
        strided,
        b"\x80\x02}(" + tensor_pkl("x", "F32", (4, 4), "0", 24, (0, 1)) + b"u.",
        b"\x80\x02}r\x00\x00\x00\x04" + data_pkl([("x", "F32", (4, 4), "0", 16)])[3:],
        data_pkl([("x", "F32", (4, 4), "0", 16)])[:-7],
    ]
    for i, pkl in enumerate(hostile):
        out.append(_bytes_of(lambda p, pkl=pkl: write_torch_zip(p, {"x": np.arange(24, dtype=np.float32)},
                                                                pickle_bytes=pkl), f"h{i}.pth"))
    # bare pickles, wrapped by one_input: valid ones over storages "0" (64) and "1" (16), and the hostile ones
    out += [data_pkl([("a", "F32", (8, 8), "0", 64), ("b", "F32", (4, 4), "1", 16)]),
            data_pkl([("a", "F32", (4, 4), "1", 16, (1, 4)), ("b", "F16", (2, 8), "0", 64)], state_dict=True),
            data_pkl([("blocks.0.att.time_state", "F32", (1, 8, 8), "0", 64)])] + hostile
    shapes = rwkv6_shapes(n_layer=1, C=64, F=64, V=64, head=64, D=8, Dd=8)
    out.append(_bytes_of(lambda p: aliased_torch_zip(p, shapes, stride0=True), "alias0.pth"))
    good = data_pkl([("x", "F32", (2, 2), "0", 4)])
    out.append(_bytes_of(lambda p: write_raw_zip(p, [("a/data.pkl", good, 0, len(good), 0),
                                                     ("a/byteorder", deflate_zeros(2), 8, 2 << 20, 0),
                                                     ("a/data/0", bytes(16), 0, 16, 0)]), "bomb.pth"))
    return out


_STORAGES = {"0": np.arange(64, dtype="<f4").tobytes(), "1": np.full(16, -1.5, "<f4").tobytes()}


def _as_archive(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, raw in _STORAGES.items():
            z.writestr(f"archive/data/{key}", raw)
    return buf.getvalue()


def one_input(data: bytes) -> None:
    _INPUT.write_bytes(data if data[:2] == b"PK" else _as_archive(data))
    try:
        tensors = read_torch_checkpoint(_INPUT)
    except (ValueError, OSError):
        tensors = {}
    for t in tensors.values():  # together they hold no more bytes than the file
        t.f32()
        t.raw()
        if t.shape and t.shape[0] > 1:
            t.f32(1, 2)
        t.release()
    try:
        rwkvfast.State.open(_INPUT, _MODEL)
    except (ValueError, OSError):
        pass


if __name__ == "__main__":
    main(seeds, one_input)
