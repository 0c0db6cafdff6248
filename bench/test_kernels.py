"""GEMV kernel throughput per ISA level and weight type (one thread), in GB/s of weights.

A 512 MiB matrix is larger than the caches, so this is the single-core memory roofline
that the threaded decode multiplies. Values are normal floats (denormals would
trigger slow microcode assists and measure the wrong thing). `pytest bench/test_kernels.py --benchmark-only`
"""
from __future__ import annotations

import numpy as np
import pytest

from rwkvfast import _core
from rwkvfast.gguf_writer import f32_to_bf16

LEVELS = ["scalar", "avx2", "avx512", "avx512vnni"]
SUPPORTED = LEVELS[: LEVELS.index(_core.cpu_level_supported()) + 1]
ROWS, COLS = 65536, 4096  # 512 MiB of f16


@pytest.mark.parametrize("wtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("level", SUPPORTED)
def test_gemv(benchmark, level, wtype):
    elem = 4 if wtype == "F32" else 2
    rows = ROWS * 2 // elem  # the same 64 MiB for every type
    rng = np.random.default_rng(0)
    block = rng.standard_normal((1024, COLS), dtype=np.float32)
    enc = {"F32": block, "F16": block.astype(np.float16), "BF16": f32_to_bf16(block)}[wtype]
    w = np.tile(enc.view(np.uint8), (rows // 1024, 1))
    x = rng.standard_normal(COLS).astype(np.float32)
    benchmark.pedantic(_core.gemv_at_level, args=(level, wtype, w, x), rounds=3 if level == "scalar" else 10,
                       warmup_rounds=1)
    gbps = w.nbytes / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["GB_per_s"] = gbps
    print(f"\ngemv {wtype} {level}: {gbps:.1f} GB/s")
