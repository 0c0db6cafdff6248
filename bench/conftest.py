"""Benchmark fixtures: a 1.6B-shaped RWKV-6 model made by our synthetic writer.

The model (24 layers, n_embd 2048, vocab 65536, about 3.2 GB in F16) is written once to
$RWKVFAST_BENCH_DIR (default ~/.cache/rwkvfast-bench) and reused.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from rwkvfast import _core, quantize
from rwkvfast.testing import make_model

SHAPE_1B6 = dict(n_layer=24, n_embd=2048, vocab=65536)


def bench_dir() -> Path:
    d = Path(os.environ.get("RWKVFAST_BENCH_DIR", Path.home() / ".cache" / "rwkvfast-bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def model_1b6(dtype: str) -> Path:
    """F32/F16/BF16 are written directly; other types are quantized from the F16 model by
    our own quantizer (as a user would with rwkvfast-quantize)."""
    path = bench_dir() / f"rwkv6-1b6-shape-{dtype}.gguf"
    if not path.exists():
        if dtype in ("F32", "F16", "BF16"):
            make_model(path, dtype=dtype, seed=0, **SHAPE_1B6)
        else:
            quantize(model_1b6("F16"), path, dtype)
    return path


def pytest_addoption(parser):
    parser.addoption("--threads", type=int, default=os.cpu_count(), help="threads for both engines")


@pytest.fixture(scope="session")
def n_threads(request) -> int:
    return request.config.getoption("--threads")


@pytest.fixture(scope="session")
def roofline(n_threads) -> float:
    """The machine's read bandwidth (GB/s): a 2 GiB streaming read in C with the benchmark's
    threads, median of 5, measured once per session."""
    buf = np.ones(2 << 30, dtype=np.uint8)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        _core.stream_read(buf, n_threads)
        times.append(time.perf_counter() - t0)
    gbps = buf.nbytes / float(np.median(times)) / 1e9
    print(f"\nstreaming read roofline, {n_threads} threads: {gbps:.1f} GB/s")
    return gbps
