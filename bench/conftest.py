"""Benchmark fixtures: a 1.6B-shaped RWKV-6 and a 1.5B-shaped RWKV-7 model made by our synthetic writer.

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
from rwkvfast.testing import make_model, make_model7

SHAPE_1B6 = dict(n_layer=24, n_embd=2048, vocab=65536)
SHAPE_1B5_V7 = dict(n_layer=24, n_embd=2048, vocab=65536, lora=(96, 96, 64, 256))


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


def model_1b5_v7(dtype: str) -> Path:
    """The RWKV-7 G1 1.5B shape (24 layers x 2048, LoRA ranks 96/96/64/256, vocab 65536), made
    like model_1b6."""
    path = bench_dir() / f"rwkv7-1b5-shape-{dtype}.gguf"
    if not path.exists():
        if dtype in ("F32", "F16", "BF16"):
            make_model7(path, dtype=dtype, seed=0, **SHAPE_1B5_V7)
        else:
            quantize(model_1b5_v7("F16"), path, dtype)
    return path


def model_for(arch: str, dtype: str) -> Path:
    """The 1.6B-shaped RWKV-6 or the 1.5B-shaped RWKV-7 benchmark model."""
    return model_1b6(dtype) if arch == "rwkv6" else model_1b5_v7(dtype)


def pytest_addoption(parser):
    parser.addoption("--threads", type=int, default=os.cpu_count(), help="threads for both engines")


@pytest.fixture(scope="session")
def n_threads(request) -> int:
    return request.config.getoption("--threads")


class Roofline:
    """The machine's read bandwidth (GB/s): a streaming read in C with the benchmark's
    threads over a buffer far larger than the caches. These shared machines drift by
    tens of percent within minutes, so `probe()` is called right beside each
    measurement and results are reported against the bandwidth of that moment."""

    def __init__(self, n_threads: int, nbytes: int = 1 << 29):
        self.n_threads = n_threads
        self.buf = np.ones(nbytes, dtype=np.uint8)
        _core.stream_read(self.buf, n_threads)  # fault the pages in

    def probe(self, repeats: int = 3) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            _core.stream_read(self.buf, self.n_threads)
            best = min(best, time.perf_counter() - t0)
        return self.buf.nbytes / best / 1e9


@pytest.fixture(scope="session")
def roofline(n_threads) -> Roofline:
    r = Roofline(n_threads)
    print(f"\nstreaming read roofline, {n_threads} threads: {r.probe(5):.1f} GB/s (probed again beside each test)")
    return r
