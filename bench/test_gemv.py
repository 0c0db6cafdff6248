"""Threaded GEMV throughput per weight type and shape vs the machine's read bandwidth.

Each shape is benchmarked over enough distinct copies (>= 1 GiB) that weights stream
from memory as in a real decode; the roofline is a streaming read in C with the same
threads, probed between the timed rounds (the machine's bandwidth drifts).

    pytest bench/test_gemv.py --benchmark-only -s [--threads 2]
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from rwkvfast import _core

TYPES = ["F16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K"]
SHAPES = [(2048, 2048), (2048, 7168), (7168, 2048), (65536, 2048)]  # W (rows = outputs, cols = inputs)
MIN_BYTES = 1 << 30


def _weights(wtype: str, rows: int, cols: int) -> tuple[np.ndarray, int]:
    """`copies` stacked random matrices of `wtype` totalling >= MIN_BYTES."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((256, cols)).astype(np.float32)
    if wtype == "F16":
        raw = base.astype(np.float16).view(np.uint8)
    else:
        raw = _core.quantize(wtype, base.reshape(-1)).reshape(256, -1)
    one = rows * raw.shape[1]
    copies = max(1, -(-MIN_BYTES // one))
    return np.tile(raw, ((rows // 256) * copies, 1)), copies


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("wtype", TYPES)
def test_gemv(benchmark, roofline, n_threads, wtype, shape):
    rows, cols = shape
    w, copies = _weights(wtype, rows, cols)
    x = np.random.default_rng(1).standard_normal(cols).astype(np.float32)
    # rounds alternate with roofline probes; each round is judged against the probes
    # on either side of it
    bw, times = [roofline.probe()], []
    for _ in range(5):
        t0 = time.perf_counter()
        _core.gemv(wtype, w, x, n_threads, copies)
        times.append(time.perf_counter() - t0)
        bw.append(roofline.probe())
    fractions = [w.nbytes / t / 1e9 / ((bw[i] + bw[i + 1]) / 2) for i, t in enumerate(times)]
    benchmark.pedantic(_core.gemv, args=(wtype, w, x, n_threads, copies), rounds=3, warmup_rounds=0)
    gbps = w.nbytes / float(np.median(times)) / 1e9
    frac, roof = float(np.median(fractions)), float(np.median(bw))
    benchmark.extra_info.update({"GB_per_s": gbps, "roofline_GB_per_s": roof, "fraction": frac})
    print(f"\ngemv {wtype:5s} {rows}x{cols}: {gbps:5.1f} GB/s = {100 * frac:3.0f}% of the roofline beside it "
          f"({roof:.1f} GB/s)")
