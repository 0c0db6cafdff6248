"""matmul.c: the threaded product over token tiles gives each token exactly its one-token product."""
from __future__ import annotations

import numpy as np
import pytest

from rwkvfast import _core

from test_kernels import _encode


def _weights(wtype: str, rows: int, cols: int, rng) -> np.ndarray:
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    if wtype in ("F32", "F16", "BF16"):
        return _encode(w, wtype)[0]
    return _core.quantize(wtype, w.reshape(-1)).reshape(rows, -1)


@pytest.mark.parametrize("wtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_1", "Q2_K", "Q4_K", "Q6_K"])
@pytest.mark.parametrize("rows,cols,ntok", [
    (37, 8192, 70),   # 32 tokens per 1 MiB tile: two full tiles and 6; rows not a multiple of the 16-row unit
    (20, 16384, 21),  # 16 tokens per tile and a 5-token remainder
    (50, 1024, 70),   # one tile
    (16, 256, 3),
    (200, 512, 1),
])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_tiled_product_is_bit_identical_to_one_token_products(wtype, rows, cols, ntok, n_threads):
    rng = np.random.default_rng(rows + cols + ntok)
    w = _weights(wtype, rows, cols, rng)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    got = _core.gemv(wtype, w, x, n_threads)
    assert got.shape == (ntok, rows)
    want = np.stack([_core.gemv(wtype, w, x[t], 1) for t in range(ntok)])
    np.testing.assert_array_equal(got, want)


def test_product_refuses_bad_shapes():
    w = np.zeros((4, 34), np.uint8)  # one Q8_0 block per row
    with pytest.raises(ValueError, match="bytes per"):
        _core.gemv("Q8_0", w, np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match="bytes per"):
        _core.gemv("Q8_0", w, np.zeros((0, 32), np.float32))
