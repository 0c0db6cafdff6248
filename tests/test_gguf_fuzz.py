"""Random corruption of a model's header, metadata and tensor table: every outcome is
either a loaded model or a ValueError/OSError — never a crash or a read outside the file."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast
from rwkvfast.testing import make_model


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = make_model(tmp_path_factory.mktemp("fuzz") / "m.gguf", n_layer=1, n_embd=64, vocab=300, seed=2)
    return path.read_bytes(), rwkvfast.gguf_metadata(path)["data_offset"]


@pytest.mark.parametrize("seed", range(8))
def test_corrupted_headers_never_crash(tmp_path, small, seed):
    good, data_offset = small
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "error": 0}
    for i in range(60):
        buf = bytearray(good)
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.integers(0, data_offset))
            buf[pos] = int(rng.integers(0, 256)) if rng.random() < 0.7 else buf[pos] ^ 0x80
        if rng.random() < 0.2:
            buf = buf[: int(rng.integers(0, len(buf)))]
        path = tmp_path / f"f{i}.gguf"
        path.write_bytes(bytes(buf))
        try:
            rwkvfast.gguf_metadata(path)
            with rwkvfast.Model(path, n_threads=1, use_mmap=bool(i % 2)) as m:
                m.forward([1, 2], m.new_state())
            outcomes["ok"] += 1
        except (ValueError, OSError) as e:
            assert str(path) in str(e) or "token" in str(e) or "state" in str(e), str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 0
