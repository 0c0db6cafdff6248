"""Every SIMD kernel against its scalar twin, and every ISA level end to end.

`gemv_at_level` calls one level's kernel directly, so all levels this CPU supports
are covered in one process; RWKVFAST_CPU (read at import) is checked in a subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rwkvfast
from rwkvfast import _core
from rwkvfast.gguf_writer import f32_to_bf16_bytes

from conftest import fixture_path, manifest_entry

LEVELS = ["scalar", "avx2", "avx512", "avx512vnni", "amx"]
SUPPORTED = LEVELS[: LEVELS.index(_core.cpu_level_supported()) + 1]


def _encode(w: np.ndarray, wtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw row bytes of w in `wtype`, and the exact f32 values they hold."""
    if wtype == "F32":
        exact = w.astype(np.float32)
        raw = exact.tobytes()
    elif wtype == "F16":
        exact = w.astype(np.float16).astype(np.float32)
        raw = w.astype(np.float16).tobytes()
    else:
        raw = f32_to_bf16_bytes(w.astype(np.float32))
        exact = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(w.shape)
    return np.frombuffer(raw, np.uint8).reshape(w.shape[0], -1), exact


@pytest.mark.parametrize("level", SUPPORTED)
@pytest.mark.parametrize("wtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 7), (4, 8), (5, 15), (9, 16), (13, 17), (7, 31),
                                       (4, 33), (6, 100), (17, 257), (64, 896),
                                       # both sides of the kernels' switch to 4-row blocks above 4096 columns
                                       (3, 4096), (7, 4097), (9, 4111)])
def test_gemv_matches_exact_product(level, wtype, rows, cols):
    rng = np.random.default_rng(rows * 1000 + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    x = rng.standard_normal(cols).astype(np.float32)
    raw, exact = _encode(w, wtype)
    got = _core.gemv_at_level(level, wtype, raw, x)
    want = exact.astype(np.float64) @ x.astype(np.float64)
    # float32 accumulation of `cols` terms: error bounded by cols * eps * sum|w x|
    bound = (cols * np.finfo(np.float32).eps) * (np.abs(exact) @ np.abs(x)) + 1e-30
    assert np.all(np.abs(got - want) <= bound), (level, wtype, np.abs(got - want).max())
    scalar = _core.gemv_at_level("scalar", wtype, raw, x)
    assert np.all(np.abs(got - scalar) <= bound)


@pytest.mark.parametrize("level", SUPPORTED)
@pytest.mark.parametrize("wtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("rows,cols,ntok", [(1, 1, 1), (2, 16, 2), (3, 17, 3), (5, 64, 4), (7, 100, 5),
                                            (17, 257, 2), (4, 4096, 3), (6, 4097, 3), (9, 4111, 4), (3, 33, 1),
                                            (8, 130, 7), (12, 4200, 6), (4, 64, 9), (10, 600, 13), (5, 4500, 8), (19, 1100, 6),
                                            (37, 32, 3), (160, 64, 2), (33, 200, 5), (100, 250, 9), (50, 256, 5)])  # LoRA: 16-row reductions
def test_gemm_is_bit_identical_to_gemv_per_token(level, wtype, rows, cols, ntok):
    rng = np.random.default_rng(rows * 7 + cols + ntok)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    raw, _ = _encode(w, wtype)
    got = _core.gemm_at_level(level, wtype, raw, x)
    want = np.stack([_core.gemv_at_level(level, wtype, raw, x[t]) for t in range(ntok)])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("wtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("rows,cols,ntok", [(1, 1, 1), (3, 17, 3), (5, 64, 4), (7, 100, 5), (17, 257, 2),
                                            (4, 4096, 3), (6, 4097, 3), (9, 4111, 4), (8, 130, 7), (12, 4200, 6),
                                            (37, 32, 3), (33, 200, 5)])
def test_float_products_are_the_same_bits_on_avx2_and_avx512(wtype, rows, cols, ntok):
    """The AVX2 kernels add in the AVX-512 kernels' order, so a model's float products (and
    its distance to the reference) do not depend on which of the two the CPU has."""
    if "avx512" not in SUPPORTED:
        pytest.skip("this CPU has no AVX-512")
    rng = np.random.default_rng(rows * 11 + cols + ntok)
    raw, _ = _encode(rng.standard_normal((rows, cols)).astype(np.float32), wtype)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    np.testing.assert_array_equal(_core.gemm_at_level("avx2", wtype, raw, x), _core.gemm_at_level("avx512", wtype, raw, x))
    np.testing.assert_array_equal(_core.gemv_at_level("avx2", wtype, raw, x[0]), _core.gemv_at_level("avx512", wtype, raw, x[0]))


@pytest.mark.parametrize("level", SUPPORTED)
@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
@pytest.mark.parametrize("rows,nblocks,ntok", [(1, 1, 2), (3, 2, 3), (5, 8, 4), (17, 3, 5), (4, 28, 1), (2, 7, 2),
                                               (6, 5, 7), (3, 4, 11), (19, 9, 70), (40, 17, 9), (33, 1, 6)])
def test_quantized_gemm_is_bit_identical_to_gemv_per_token(level, qtype, rows, nblocks, ntok):
    """Awkward shapes on purpose: partial row groups, odd block counts, several panels of blocks
    and of tokens, each token count's path (few-token and panel GEMMs)."""
    rng = np.random.default_rng(rows * 13 + nblocks + ntok)
    cols = (256 if qtype[-1] == "K" else 32) * nblocks
    raw = _core.quantize(qtype, rng.standard_normal(rows * cols).astype(np.float32)).reshape(rows, -1)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    got = _core.gemm_at_level(level, qtype, raw, x)
    want = np.stack([_core.gemv_at_level(level, qtype, raw, x[t]) for t in range(ntok)])
    np.testing.assert_array_equal(got, want)


def test_unsupported_level_is_an_error():
    if "amx" in SUPPORTED:
        pytest.skip("this CPU supports every level")
    with pytest.raises(ValueError, match="cannot run"):
        _core.gemv_at_level(LEVELS[len(SUPPORTED)], "F32", np.zeros((1, 4), np.uint8), np.zeros(1, np.float32))


def _amx_status() -> str:
    return rwkvfast.system_info().split("| amx: ")[1].split(" |")[0]


TILE_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


@pytest.mark.parametrize("qtype", TILE_TYPES)
@pytest.mark.parametrize("rows,nblocks,ntok", [(1, 1, 16), (17, 3, 16), (33, 9, 70), (40, 17, 33), (16, 64, 20)])
def test_tile_gemm_twin_matches_the_gemv(qtype, rows, nblocks, ntok):
    """The amx level's block-32 GEMMs with their tile instructions emulated in C (tile
    configuration, loads, TDPBSSD, stores): the same bits as the GEMVs decoding uses, on partial
    row groups, partial token tiles, odd block counts and several staged token passes. Runs
    wherever avx512vnni does, so the tiling logic is tested without an AMX machine."""
    if "avx512vnni" not in SUPPORTED:
        pytest.skip("the twin's f32 steps use AVX512-VNNI's; this CPU has none")
    rng = np.random.default_rng(rows + nblocks + ntok)
    cols = 32 * nblocks
    raw = _core.quantize(qtype, rng.standard_normal(rows * cols).astype(np.float32)).reshape(rows, -1)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    got = _core.gemm_at_level("amx-emulated", qtype, raw, x)
    want = np.stack([_core.gemv_at_level("avx512vnni", qtype, raw, x[t]) for t in range(ntok)])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("qtype", TILE_TYPES)
def test_amx_tiles_on_this_cpu(qtype):
    """With AMX granted, the real tiles against the same GEMVs (the parametrized tests above run
    the whole amx level too); elsewhere a skip that says why."""
    if "amx" not in SUPPORTED:
        pytest.skip(f"no AMX tile kernels run here: amx: {_amx_status()}")
    rng = np.random.default_rng(5)
    raw = _core.quantize(qtype, rng.standard_normal(40 * 544).astype(np.float32)).reshape(40, -1)
    x = rng.standard_normal((70, 544)).astype(np.float32)
    want = np.stack([_core.gemv_at_level("amx", qtype, raw, x[t]) for t in range(70)])
    np.testing.assert_array_equal(_core.gemm_at_level("amx", qtype, raw, x), want)
    np.testing.assert_array_equal(_core.gemm_at_level("amx-emulated", qtype, raw, x), want)


def test_system_info_names_every_slot():
    info = rwkvfast.system_info()
    assert info.startswith(f"cpu: {_core.cpu_level()}")
    for slot in ("wkv6", "gemv_f32", "gemv_f16", "gemv_bf16", "gemv_q4_k", "gemm_q6_k"):  # the last: not cut off
        assert f"{slot} = " in info
    amx = info.split(" | amx: ")[1].split(" | ")[0]
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    if "amx_tile" not in flags:  # this CPU (or VM) has no tiles: said, never tried
        assert amx == "no (not in this CPU)"
    else:
        assert amx.startswith(("granted", "no (")), amx
    vk = info.split(" | vulkan: ")[1]
    if _core.vk_built() and os.environ.get("RWKVFAST_REQUIRE_VULKAN"):
        assert vk.startswith("0: ")  # CI has lavapipe
    else:
        assert vk == "not built" or vk.startswith(("0: ", "none ("))


_LEVEL_SCRIPT = textwrap.dedent("""
    import json, sys, numpy as np, rwkvfast
    from rwkvfast import _core
    path, ids, ref = sys.argv[1], json.loads(sys.argv[2]), np.load(sys.argv[3])
    with rwkvfast.Model(path) as m:
        out = m.forward(ids, m.new_state(), all_logits=True)
    print(json.dumps({"level": _core.cpu_level(), "info": rwkvfast.system_info(),
                      "max_abs": float(np.abs(out - ref).max()),
                      "argmax": float((out.argmax(1) == ref.argmax(1)).mean())}))
""")


@pytest.mark.parametrize("level", SUPPORTED)
@pytest.mark.parametrize("ftype,ref,peer", [("F32", "rwkv_fp32", "observed"),
                                            ("Q8_0", "rwkv_dequant_Q8_0", "llama_vs_dequant"),
                                            ("Q4_K_M", "rwkv_dequant_Q4_K_M", "llama_vs_dequant")])
def test_each_level_matches_reference_end_to_end(level, ftype, ref, peer):
    """RWKVFAST_CPU caps the level; every level meets the same bar as llama.cpp."""
    ids = json.loads(fixture_path("tiny/tokens.json").read_text())["ids"]
    env = dict(os.environ, RWKVFAST_CPU=level)
    res = subprocess.run([sys.executable, "-c", _LEVEL_SCRIPT, str(fixture_path(f"tiny/gguf/tiny-{ftype}.gguf")),
                          json.dumps(ids), str(fixture_path(f"tiny/ref/{ref}.npy"))],
                         env=env, capture_output=True, text=True, check=True)
    r = json.loads(res.stdout)
    assert r["level"] == level
    assert r["info"].startswith(f"cpu: {level} ")
    assert r["argmax"] == 1.0
    assert r["max_abs"] <= manifest_entry(ftype)[peer]["max_abs"]


QTYPES = {"Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32,
          "Q2_K": 256, "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}


def _random_blocks(qtype: str, rows: int, cols: int, rng) -> np.ndarray:
    """Raw rows of random blocks whose f16 scale fields are small finite numbers."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    # quantize real data where gguf-py can, else random bytes with sane f16 fields
    try:
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        return np.ascontiguousarray(quantize(x, GGMLQuantizationType[qtype]))
    except NotImplementedError:
        pass
    from gguf.constants import GGML_QUANT_SIZES
    blk, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    raw = rng.integers(0, 256, size=(rows, cols // blk, nbytes), dtype=np.uint8)
    f16_fields = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[qtype]
    for off in f16_fields:
        raw[..., off:off + 2] = (rng.uniform(0.001, 0.05, size=raw.shape[:2]).astype(np.float16)
                                 .view(np.uint8).reshape(raw.shape[0], raw.shape[1], 2))
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("level", SUPPORTED)
@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize("rows,nblocks", [(1, 1), (3, 2), (4, 3), (7, 5), (9, 8)])
def test_quantized_gemv_matches_dequantized_product(level, qtype, rows, nblocks):
    """Every level equals dequantize(W) @ x up to the (bounded) error of 15-bit activations."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    cols = QTYPES[qtype] * nblocks
    rng = np.random.default_rng(rows * 100 + nblocks)
    raw = _random_blocks(qtype, rows, cols, rng)
    x = rng.standard_normal(cols).astype(np.float32)
    x[::7] *= 20  # uneven magnitudes inside blocks
    deq = dequantize(raw, GGMLQuantizationType[qtype]).reshape(rows, cols).astype(np.float64)
    got = _core.gemv_at_level(level, qtype, raw, x)
    want = deq @ x.astype(np.float64)
    # activation error: |x_i - dx*q_i| <= dx/2 with dx = max|x| / 16383 per activation block
    ab = 256 if QTYPES[qtype] == 256 else 32
    dx = np.abs(x.reshape(-1, ab)).max(1) / 16383
    act = (np.abs(deq).reshape(rows, -1, ab).sum(2) * dx / 2).sum(1)
    bound = act + 1e-5 * (np.abs(deq) @ np.abs(x)) + 1e-6
    assert np.all(np.abs(got - want) <= bound), (level, qtype, np.abs(got - want).max(), bound.min())
    scalar = _core.gemv_at_level("scalar", qtype, raw, x)
    assert np.all(np.abs(got - scalar) <= 1e-5 * (np.abs(deq) @ np.abs(x)) + 1e-6)


@pytest.mark.parametrize("level", SUPPORTED)
@pytest.mark.parametrize("N", [64, 8, 16, 32, 5, 128])
def test_wkv6_matches_scalar_twin_and_float64(level, N):
    rng = np.random.default_rng(N)
    r, k, v, u = (rng.standard_normal(N).astype(np.float32) for _ in range(4))
    w = rng.uniform(0.05, 0.999, N).astype(np.float32)
    S0 = rng.standard_normal((N, N)).astype(np.float32)
    S = S0.copy()
    y = _core.wkv6_at_level(level, r, k, v, w, u, S)
    # the recurrence in float64
    S64 = S0.astype(np.float64)
    y64 = r.astype(np.float64) @ (np.outer(u * k, v).astype(np.float64) + S64)
    S64 = w[:, None].astype(np.float64) * S64 + np.outer(k, v).astype(np.float64)
    scale = np.abs(r) @ (np.abs(np.outer(u * k, v)) + np.abs(S0))
    assert np.all(np.abs(y - y64) <= 1e-5 * scale + 1e-6)
    assert np.allclose(S, S64, rtol=1e-5, atol=1e-5)
    S2 = S0.copy()
    np.testing.assert_allclose(y, _core.wkv6_at_level("scalar", r, k, v, w, u, S2), rtol=1e-4, atol=1e-4)


# byte ranges of each format's f16 fields and its signed int8 scales (Q6_K)
_F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
               "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def _extreme_blocks(qtype: str, rows: int, nblocks: int) -> np.ndarray:
    """Blocks at the edges of every format's integer ranges: all quant bits set, the
    largest sub-block scales (Q6_K: int8 -128, Q3_K: six-bit 0, i.e. -32), so the integer
    sums of the byte kernels reach their documented bounds."""
    from gguf import GGMLQuantizationType
    from gguf.constants import GGML_QUANT_SIZES
    _, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    raw = np.full((rows, nblocks, nbytes), 0xFF, dtype=np.uint8)
    if qtype == "Q6_K":
        raw[..., 192:208] = 0x80
    if qtype == "Q3_K":
        raw[..., 96:108] = 0x00
    for off in _F16_FIELDS[qtype]:
        raw[..., off:off + 2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("level", SUPPORTED)
@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize("signs", ["positive", "alternating"])
@pytest.mark.parametrize("ntok", [1, 2, 5])
def test_quantized_products_at_integer_extremes(level, qtype, signs, ntok):
    """Every activation at the 15-bit maximum against the largest weights: no lane of any
    kernel's integer sums may overflow (the GEMV, the few-token and the panel GEMMs)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    rows, nblocks = 5, 9 if QTYPES[qtype] == 32 else 3
    cols = QTYPES[qtype] * nblocks
    raw = _extreme_blocks(qtype, rows, nblocks)
    x = np.full(cols, 3.0, np.float32)
    if signs == "alternating":
        x[1::2] = -3.0
    deq = dequantize(raw, GGMLQuantizationType[qtype]).reshape(rows, cols).astype(np.float64)
    want = deq @ x.astype(np.float64)
    got = _core.gemm_at_level(level, qtype, raw, np.stack([x] * ntok))
    scale = np.abs(deq) @ np.abs(x)
    assert np.all(np.abs(got - want) <= 1e-4 * scale + 1e-6), (level, qtype, got, want)


def test_peak_loops_count_their_operations():
    ops, s = _core.peak_ops(False, 1, 10_000)
    i8, _ = _core.peak_ops(True, 1, 10_000)
    if _core.cpu_level() == "scalar":
        assert ops == 0 and i8 == 0
    else:  # 12 chains of 8 or 16 lanes, 2 flops per FMA lane / 8 per int8 dot lane
        assert ops in (12 * 2 * 8 * 10_000, 12 * 2 * 16 * 10_000) and i8 > 0 and s > 0


def _exp_inputs():
    rng = np.random.default_rng(7)
    wide = rng.uniform(-110.0, 95.0, 4000)
    small = rng.standard_normal(2000) * 1e-3
    edges = [0.0, -0.0, 1.0, -1.0, 88.72, 88.73, 89.0, 200.0, -87.33, -87.34, -103.0, -104.0, -1e30, np.inf,
             -np.inf, np.nan, 0.34657359, -0.34657359]
    return np.concatenate([wide, small, edges]).astype(np.float32)


@pytest.mark.parametrize("level", SUPPORTED)
def test_exp_is_the_scalar_twins_bits_at_every_level(level):
    """Fused activations (SiLU, sigmoid, the decays) go through this kernel, so every level must
    give the scalar twin's bits: sequence, batch and decode then agree on any CPU."""
    x = _exp_inputs()
    for n in (len(x), 1, 15, 17):  # the tails of a vector
        np.testing.assert_array_equal(_core.exp_at_level(level, x[:n]), _core.exp_at_level("scalar", x[:n]))


def test_exp_is_within_two_ulp_of_the_true_value():
    x = _exp_inputs()
    got = _core.exp_at_level("scalar", x).astype(np.float64)
    with np.errstate(over="ignore"):
        want = np.exp(np.clip(x.astype(np.float64), -104.0, 89.0))
    finite = np.isfinite(want) & (want >= np.finfo(np.float32).tiny) & (want < np.finfo(np.float32).max)
    ulp = np.spacing(want[finite].astype(np.float32)).astype(np.float64)
    assert (np.abs(got[finite] - want[finite]) <= 2 * ulp).all()
    # beyond the range: 0 below (subnormals correctly rounded), inf above, NaN kept
    sub = (want < np.finfo(np.float32).tiny)
    np.testing.assert_allclose(got[sub], want[sub], rtol=0, atol=np.float64(2.0 ** -149))
    assert np.isposinf(got[np.isinf(want) | (want >= np.finfo(np.float32).max)]).all()
    assert np.isnan(got[np.isnan(x)]).all()
