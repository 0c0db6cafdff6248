"""GEMV kernel throughput per ISA level and weight type (one thread), in GB/s of weights; and the
prompt/batch GEMMs (test_gemm) in GMAC/s beside the core's arithmetic peak.

A 512 MiB matrix is larger than the caches, so this is the single-core memory roofline
that the threaded decode multiplies. Values are normal floats (denormals would
trigger slow microcode assists and measure the wrong thing). `pytest bench/test_kernels.py --benchmark-only`
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import rwkvfast
from rwkvfast import _core
from rwkvfast.gguf_writer import f32_to_bf16

LEVELS = ["scalar", "avx2", "avx512", "avx512vnni", "amx"]
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


GEMM_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]


@pytest.mark.parametrize("ntok", [8, 64])
@pytest.mark.parametrize("wtype", GEMM_TYPES)
def test_gemm(benchmark, wtype, ntok):
    """The prompt/batch product (one thread, the active level, 2048 x 2048 in cache) in GMAC/s and
    as a fraction of the core's peak measured right beside it: f32 FMA for float weights; for
    quantized ones the int16 pair product (vpdpwssd, half the multiply-adds of the vpdpbusd peak)
    that 15-bit activations need."""
    rows = cols = 2048
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    block = rng.standard_normal((rows, cols)).astype(np.float32)
    if wtype in ("F32", "F16", "BF16"):
        w = {"F32": block, "F16": block.astype(np.float16), "BF16": f32_to_bf16(block)}[wtype].view(np.uint8)
    else:
        w = _core.quantize(wtype, block.reshape(-1)).reshape(rows, -1)
    benchmark.pedantic(_core.gemm_at_level, args=(_core.cpu_level(), wtype, w, x), rounds=5, warmup_rounds=1)
    gmacs = rows * cols * ntok / benchmark.stats.stats.median / 1e9
    ops, secs = _core.peak_ops(int8=wtype not in ("F32", "F16", "BF16"), n_threads=1, steps=5_000_000)
    peak = ops / secs / 2 / 1e9 / (1 if wtype in ("F32", "F16", "BF16") else 2)  # MAC/s
    benchmark.extra_info.update(GMAC_per_s=gmacs, fraction_of_peak=gmacs / peak)
    print(f"\ngemm {wtype} x {ntok} tokens ({_core.cpu_level()}): {gmacs:.1f} GMAC/s, {100 * gmacs / peak:.0f}% of {peak:.0f}")


def test_amx_peak(benchmark):
    """The AMX int8 tile peak (TDPBSSD on full tiles, one thread) beside the vpdpbusd peak, and the
    Q8_0 tile GEMM (2048 x 2048 x 64 tokens) as a fraction of its 15-bit equivalent (two planes:
    half the tile rate)."""
    if _core.cpu_level() != "amx":
        pytest.skip(f"no AMX tiles here: {rwkvfast.system_info().split('| amx: ')[1].split(' |')[0]}")
    ops, secs = benchmark.pedantic(_core.peak_ops, kwargs=dict(n_threads=1, steps=2_000_000, tiles=True), rounds=3)
    vnni, vsecs = _core.peak_ops(int8=True, n_threads=1, steps=5_000_000)
    rng = np.random.default_rng(0)
    w = _core.quantize("Q8_0", rng.standard_normal(2048 * 2048).astype(np.float32)).reshape(2048, -1)
    x = rng.standard_normal((64, 2048)).astype(np.float32)
    _core.gemm_at_level("amx", "Q8_0", w, x)
    t0 = time.perf_counter()
    _core.gemm_at_level("amx", "Q8_0", w, x)
    gmacs = 2048 * 2048 * 64 / (time.perf_counter() - t0) / 1e9
    peak = ops / secs / 2 / 1e9 / 2  # 15-bit MAC/s: two byte planes per product
    benchmark.extra_info.update(tile_Tops=ops / secs / 1e12, vnni_Tops=vnni / vsecs / 1e12, q8_0_GMAC_per_s=gmacs)
    print(f"\namx int8 peak {ops / secs / 1e12:.2f} Top/s (vpdpbusd {vnni / vsecs / 1e12:.2f}); "
          f"Q8_0 tile GEMM {gmacs:.0f} GMAC/s, {100 * gmacs / peak:.0f}% of the two-plane tile peak")

