"""Block formats (csrc/quants.c) against independent oracles.

- dequantize: bit-exact against `gguf.quants` (the llama.cpp authors' numpy code) on random
  blocks of every type;
- quantize Q4_0..Q8_0: bit-exact against `gguf.quants.quantize`;
- quantize K types (gguf.quants has no K quantizer): bytes equal to what llama-quantize wrote
  into the shared fixtures, and the round-trip error within each format's bound;
- F16/BF16 rows: round to nearest even, as numpy / ggml do.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from gguf import GGMLQuantizationType as G
from gguf import quants as gq

from rwkvfast import _core

from conftest import fixture_path

SIMPLE = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
K_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
BLOCK_TYPES = SIMPLE + K_TYPES
# byte offsets of the f16 scale fields in one block (ggml-common.h)
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
              "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
SIZES = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
         "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176),
         "Q6_K": (256, 210), "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2)}


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def random_blocks(rng: np.random.Generator, qtype: str, n_blocks: int) -> np.ndarray:
    """Random bytes with finite f16 scales (normal, subnormal, zero, up to 65504)."""
    _, nbytes = SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        h = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint16)
        h[(h & 0x7C00) == 0x7C00] &= np.uint16(0xBFFF)  # inf/NaN exponent -> finite
        h[::5] = rng.choice(np.array([0x0000, 0x8000, 0x0001, 0x3C00, 0x7BFF, 0x2E66], np.uint16))
        raw[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def test_block_sizes_match_ggml():
    for name, size in SIZES.items():
        assert _core.quant_block(name) == size
        if name in BLOCK_TYPES:
            assert gq.GGML_QUANT_SIZES[G[name]] == size


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
@pytest.mark.parametrize("n_blocks", [1, 3, 7, 16])
def test_dequantize_bit_exact_vs_gguf(qtype, n_blocks):
    rng = np.random.default_rng(n_blocks * 100 + BLOCK_TYPES.index(qtype))
    raw = random_blocks(rng, qtype, n_blocks)
    n = n_blocks * SIZES[qtype][0]
    got = _core.dequantize(qtype, raw, n)
    want = gq.dequantize(raw, G[qtype]).reshape(-1)
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_array_equal(bits(got), bits(want))


def test_dequantize_unaligned_and_readonly_input():
    rng = np.random.default_rng(1)
    for qtype in BLOCK_TYPES:
        raw = random_blocks(rng, qtype, 3)
        buf = np.zeros(raw.size + 1, np.uint8)
        buf[1:] = raw
        view = buf[1:]
        view.flags.writeable = False
        n = 3 * SIZES[qtype][0]
        np.testing.assert_array_equal(bits(_core.dequantize(qtype, view, n)),
                                      bits(_core.dequantize(qtype, bytes(raw), n)))


def _quant_inputs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    normal = rng.standard_normal(n).astype(np.float32)
    outliers = normal.copy()
    outliers[rng.integers(0, n, n // 20)] *= 50
    mixed = normal.copy().reshape(-1, 32)
    mixed[0] = 0.0                 # all-zero block
    mixed[1] = 0.75                # constant block
    mixed[2, ::2] = -mixed[2, 1::2]  # +-a pairs: ties for the largest |x|
    halves = (rng.integers(-254, 255, n) / 2).astype(np.float32)  # x*id on .5 ties (Q8_0)
    halves[::32] = 127.0
    return {
        "normal": normal,
        "outliers": outliers,
        "zeros": np.zeros(n, np.float32),
        "tiny": (normal * 1e-6).astype(np.float32),
        "very_tiny": (normal * 1e-30).astype(np.float32),
        "large": (normal * 1e4).astype(np.float32),
        "f16_overflow": (normal * 1e6).astype(np.float32),  # d = +-inf in f16
        "positive": np.abs(normal) + 1,
        "mixed": mixed.reshape(-1),
        "halves": halves,
    }


@pytest.mark.parametrize("qtype", SIMPLE)
def test_quantize_bit_exact_vs_gguf(qtype):
    rng = np.random.default_rng(SIMPLE.index(qtype))
    for case, x in _quant_inputs(rng, 32 * 37).items():
        got = _core.quantize(qtype, x)
        with np.errstate(all="ignore"):
            want = gq.quantize(x.reshape(1, -1), G[qtype]).reshape(-1)
        assert got.dtype == np.uint8 and got.size == want.size
        assert np.array_equal(got, want), (qtype, case, np.flatnonzero(got != want)[:10])


def _k_inputs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    normal = rng.standard_normal(n).astype(np.float32)
    outliers = normal.copy()
    outliers[rng.integers(0, n, n // 50)] *= 30
    return {
        "normal": normal,
        "outliers": outliers,
        "uniform": rng.uniform(-1, 1, n).astype(np.float32),
        "shifted": (normal + 3).astype(np.float32),
        "negative": (-np.abs(normal) - 0.5).astype(np.float32),
        "small": (normal * 0.02).astype(np.float32),
        "large": (normal * 100).astype(np.float32),
    }


# Max |error| in a 256-block relative to the block's max |x|, and rms error relative to rms x.
# About 1.5x what these inputs reach; the step is ~2*amax/levels, halved by rounding.
# Not for much smaller weights: the f16 super-block scale d (~amax/4096 for Q6_K) turns
# subnormal and coarse below amax ~0.25, and at std 1e-4 Q6_K's error reaches ~30% of amax
# (ggml's format, same bytes as llama-quantize).
K_BOUNDS = {"Q2_K": (0.5, 0.4), "Q3_K": (0.35, 0.22), "Q4_K": (0.13, 0.14), "Q5_K": (0.065, 0.075),
            "Q6_K": (0.025, 0.05)}


@pytest.mark.parametrize("qtype", K_TYPES)
def test_k_round_trip_error_within_bound(qtype):
    rng = np.random.default_rng(10 + K_TYPES.index(qtype))
    max_rel, rms_rel = K_BOUNDS[qtype]
    for case, x in _k_inputs(rng, 256 * 24).items():
        q = _core.quantize(qtype, x)
        assert q.size == 24 * SIZES[qtype][1]
        y = _core.dequantize(qtype, q, x.size)
        xb, yb = x.reshape(-1, 256).astype(np.float64), y.reshape(-1, 256)
        rel = (np.abs(xb - yb).max(1) / np.abs(xb).max(1)).max()
        rms = np.sqrt(((xb - yb) ** 2).mean() / (xb ** 2).mean())
        assert rel <= max_rel, (qtype, case, rel)
        assert rms <= rms_rel, (qtype, case, rms)


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_zero_and_constant_blocks(qtype):
    bs = SIZES[qtype][0]
    zeros = np.zeros(bs * 2, np.float32)
    assert not _core.dequantize(qtype, _core.quantize(qtype, zeros), zeros.size).any()
    const = np.full(bs, 0.5, np.float32)
    y = _core.dequantize(qtype, _core.quantize(qtype, const), bs)
    assert np.abs(y - 0.5).max() <= 0.5 * 0.2


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_extreme_finite_inputs_are_safe(qtype):
    """Subnormals, FLT_MAX and f16 overflow: no crash, exact output size, zeros stay zeros."""
    bs = SIZES[qtype][0]
    fmax = np.finfo(np.float32).max
    for scale in (1e-45, 1e-40, 1e-38, 1e-20, 7e4, 1e20, fmax):
        x = np.zeros(bs * 2, np.float32)
        x[3] = scale
        x[bs + 7] = -scale
        x[bs + 9] = scale
        q = _core.quantize(qtype, x)
        assert q.size == 2 * SIZES[qtype][1]
        y = _core.dequantize(qtype, q, x.size)
        assert y.shape == x.shape
        small = [i for i in range(x.size) if x[i] == 0]
        with np.errstate(invalid="ignore"):
            assert np.all((y[small] == 0) | ~np.isfinite(y[small]) | (np.abs(y[small]) <= scale))


def test_f16_rounds_to_nearest_even_like_numpy():
    rng = np.random.default_rng(7)
    u = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    # every f16 value, and the f32 values at and beside each midpoint between two f16 values
    v = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)
    mid = ((v[:-1] + v[1:]) / 2).view(np.uint32).astype(np.int64)  # exact: 12 significant bits
    edges = np.concatenate([v.view(np.uint32)] + [mid + d for d in (-1, 0, 1)]
                           + [np.array([0x477FF000, 0x477FEFFF, 0x477FF001, 0x33000000, 0x33000001,
                                        0x7F7FFFFF])]).astype(np.uint32)
    u = np.concatenate([u, edges, edges | 0x80000000]).astype(np.uint32)
    x = u.view(np.float32)
    x = x[np.isfinite(x)]
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    got = _core.quantize("F16", x).view(np.uint16)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(bits(_core.dequantize("F16", got.view(np.uint8), got.size)),
                                  bits(got.view(np.float16).astype(np.float32)))


def test_bf16_and_f32_rows():
    rng = np.random.default_rng(8)
    x = rng.integers(0, 1 << 32, 10_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.ascontiguousarray(x[np.isfinite(x)])
    got = _core.quantize("BF16", x)
    np.testing.assert_array_equal(got, gq.quantize(x, G.BF16).view(np.uint8).reshape(-1))
    np.testing.assert_array_equal(bits(_core.dequantize("BF16", got, x.size)),
                                  bits(gq.dequantize(got, G.BF16)))
    raw = _core.quantize("F32", x)
    np.testing.assert_array_equal(raw, x.view(np.uint8))
    np.testing.assert_array_equal(bits(_core.dequantize("F32", raw, x.size)), bits(x))


def test_bad_arguments():
    x = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match="unknown"):
        _core.quantize("Q4_X", x)
    with pytest.raises(ValueError, match="unknown"):
        _core.dequantize("q4_0", np.zeros(18, np.uint8), 32)
    with pytest.raises(ValueError, match="IQ2_XXS"):
        _core.quantize("IQ2_XXS", np.zeros(256, np.float32))
    with pytest.raises(ValueError, match="Q4_K.*256"):
        _core.quantize("Q4_K", x)
    with pytest.raises(ValueError, match="Q8_0.*32"):
        _core.quantize("Q8_0", np.zeros(33, np.float32))
    with pytest.raises(ValueError, match="bytes"):
        _core.dequantize("Q4_0", np.zeros(17, np.uint8), 32)
    with pytest.raises(ValueError, match="bytes"):
        _core.dequantize("Q4_0", np.zeros(36, np.uint8), 32)
    with pytest.raises(ValueError, match="block size"):
        _core.dequantize("Q4_0", np.zeros(18, np.uint8), 31)
    with pytest.raises(ValueError):
        _core.dequantize("Q4_0", np.zeros(18, np.uint8), -32)
    assert _core.quantize("Q6_K", np.zeros(0, np.float32)).size == 0
    assert _core.dequantize("Q6_K", b"", 0).size == 0


# ---------------------------------------------------------------- llama-quantize fixtures --

FIXTURE_FILES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"]


@pytest.mark.parametrize("file_type", FIXTURE_FILES)
def test_quantize_matches_llama_quantize(file_type):
    """Every quantized tensor of the fixture, re-quantized from tiny-F32.gguf, byte for byte.

    llama-quantize ran without an imatrix, so it used ggml's quantize_row_*_ref: the type mix
    (e.g. Q6_K for output.weight, Q5_0 fallback when ncols % 256 != 0) comes from the file.
    """
    from rwkvfast.testing import read_gguf

    types = json.loads(fixture_path("tiny/gguf/tensor_types.json").read_text())[file_type]
    src = read_gguf(fixture_path("tiny/gguf/tiny-F32.gguf"))
    dst = read_gguf(fixture_path(f"tiny/gguf/tiny-{file_type}.gguf"))
    checked = set()
    for name, qtype in types.items():
        if qtype not in BLOCK_TYPES:
            continue
        x = np.ascontiguousarray(src.tensor(name).array(), dtype=np.float32).reshape(-1)
        want = np.asarray(dst.tensor(name).data).reshape(-1)
        got = _core.quantize(qtype, x)
        assert got.size == want.size, name
        if not np.array_equal(got, want):
            nb = SIZES[qtype][1]
            bad = np.flatnonzero((got.reshape(-1, nb) != want.reshape(-1, nb)).any(1))
            pytest.fail(f"{name} ({qtype}): {bad.size} of {got.size // nb} blocks differ, first {bad[:5]}")
        np.testing.assert_array_equal(bits(_core.dequantize(qtype, want, x.size)),
                                      bits(gq.dequantize(want, G[qtype]).reshape(-1)))
        checked.add(qtype)
    assert checked, "no quantized tensor in the fixture"
