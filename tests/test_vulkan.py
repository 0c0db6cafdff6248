"""The Vulkan backend: devices, and each shader against the CPU on random data with awkward
sizes. Runs on whatever device the machine has (Mesa's lavapipe in CI); skips only when the
build has no backend or the machine no Vulkan, unless $RWKVFAST_REQUIRE_VULKAN is set (CI)."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from rwkvfast import _core


@pytest.fixture(scope="module", params=["subgroups", "shared memory"])
def device(request):
    """Each device twice: with the shaders' subgroup reductions, and with their fallback."""
    why = None
    os.environ.pop("RWKVFAST_VK_SUBGROUP", None)
    if request.param == "shared memory":
        os.environ["RWKVFAST_VK_SUBGROUP"] = "0"
    if not _core.vk_built():
        why = "this build has no Vulkan backend"
    else:
        try:
            dev = _core.VulkanDevice(int(os.environ.get("RWKVFAST_VK_DEVICE", "-1")))
            os.environ.pop("RWKVFAST_VK_SUBGROUP", None)
            if request.param == "subgroups" and not dev.info["subgroup_ops"]:
                pytest.skip("the device has no subgroup arithmetic")
            return dev
        except RuntimeError as e:
            why = str(e)
        finally:
            os.environ.pop("RWKVFAST_VK_SUBGROUP", None)
    if os.environ.get("RWKVFAST_REQUIRE_VULKAN"):
        pytest.fail(f"$RWKVFAST_REQUIRE_VULKAN is set but {why}")
    pytest.skip(why)


def test_the_fallback_is_what_was_asked_for(device, request):
    assert device.info["subgroup_ops"] == (request.node.callspec.params["device"] == "subgroups")


def test_devices_are_listed_with_their_properties(device):
    devs = _core.vk_devices()
    assert devs and all(d["name"] and d["type"] in ("discrete", "integrated", "virtual", "cpu", "other") for d in devs)
    assert device.info["name"] in [d["name"] for d in devs]
    assert all(int(d["api_version"].split(".")[0]) >= 1 and d["subgroup_size"] >= 1 for d in devs)


def test_a_missing_device_is_a_runtime_error_that_says_so(device):
    with pytest.raises(RuntimeError, match="no device 99"):
        _core.VulkanDevice(99)


def _rows(wtype, w):
    if wtype == "F32":
        return w.view(np.uint8).reshape(w.shape[0], -1), w
    if wtype == "F16":
        h = w.astype(np.float16)
        return h.view(np.uint8).reshape(w.shape[0], -1), h.astype(np.float32)
    raw = _core.quantize(wtype, np.ascontiguousarray(w.reshape(-1)))
    return raw.reshape(w.shape[0], -1), _core.dequantize(wtype, raw, w.size).reshape(w.shape)


@pytest.mark.parametrize("wtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"])
@pytest.mark.parametrize("rows,cols,ntok", [(1, 256, 1), (257, 2304, 6), (70, 768, 9), (130, 512, 70)])
def test_matmul_matches_the_dequantized_weights(device, wtype, rows, cols, ntok):
    # up to 7 tokens: matvec.comp; from 8: the tiled matmul.comp, here with partial tiles of
    # rows and tokens on every edge
    _check_matmul(device, wtype, rows, cols, ntok)


@pytest.mark.parametrize("wtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("cols", [4, 36, 100])
def test_the_tiled_matmul_takes_rows_that_end_inside_a_tile(device, wtype, cols):  # K not a multiple of 32
    _check_matmul(device, wtype, 65, cols, 33)


@pytest.mark.parametrize("wtype", ["F16", "Q4_K"])
def test_more_rows_than_one_grid_dimension_holds(device, wtype):  # a vocabulary of 65539: rows go on in z
    _check_matmul(device, wtype, 65539, 256, 1)


def _check_matmul(device, wtype, rows, cols, ntok):
    rng = np.random.default_rng(rows + cols)
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    x = rng.standard_normal((ntok, cols), dtype=np.float32)
    raw, dense = _rows(wtype, w)
    got = device.matmul(wtype, np.ascontiguousarray(raw), x)
    want = (x.astype(np.float64) @ dense.astype(np.float64).T)
    # float32 sums in another order than the CPU's: the bound grows with the row's magnitude
    tol = 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(dense).astype(np.float64).T) + 1e-6
    assert got.shape == (ntok, rows) and np.all(np.abs(got - want) <= tol)


def test_a_type_without_a_shader_is_a_value_error(device):
    raw = _core.quantize("Q2_K", np.zeros(256, np.float32)).reshape(1, -1)
    with pytest.raises(ValueError, match="no matmul shader for Q2_K"):
        device.matmul("Q2_K", raw, np.zeros((1, 256), np.float32))


# -- the other shaders, each against a numpy or CPU-kernel reference -----------------------

def _f32(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("post", [1, 2, 3, 4, 5, 6, 7])
def test_matmul_post_ops(device, post):
    rng = np.random.default_rng(post)
    w = rng.standard_normal((33, 64), dtype=np.float32) * 0.3
    x = rng.standard_normal((2, 64), dtype=np.float32)
    bias = rng.standard_normal(33).astype(np.float32) * 0.2 - 1.0
    z = (x.astype(np.float64) @ w.astype(np.float64).T)
    want = {1: np.tanh(z), 2: z / (1 + np.exp(-z)), 3: 1 / (1 + np.exp(-z)), 4: np.maximum(z, 0) ** 2,
            5: np.exp(-np.exp(bias + z)), 6: np.exp(-np.exp(-0.5) / (1 + np.exp(-(bias + z)))),
            7: 1 / (1 + np.exp(-(bias + z)))}[post]
    got = device.matmul("F32", w.view(np.uint8).reshape(33, -1), x, post=post, bias=bias if post >= 5 else None)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("n,T", [(64, 1), (2048, 3), (2560, 2), (100, 1)])
def test_layer_norm(device, n, T):
    x, w, b = _f32(T, n, seed=1, scale=3.0) + 1.5, _f32(n, seed=2), _f32(n, seed=3)
    y = np.zeros((T, n), np.float32)
    device.run("layer_norm", [x, w, b, y], struct.pack("<3If", n, n, n, 1e-5), (T, 1, 1), local_x=256)
    xd = x.astype(np.float64)
    want = (xd - xd.mean(1, keepdims=True)) / np.sqrt(xd.var(1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("H,N,T", [(1, 64, 1), (32, 64, 3), (5, 32, 2)])
def test_group_norm_and_gate(device, H, N, T):
    C = H * N
    y0, w, b, g = _f32(T, C, seed=4, scale=2.0), _f32(C, seed=5), _f32(C, seed=6), _f32(T, C, seed=7)
    y = y0.copy()
    device.run("group_norm_gate", [y, w, b, g], struct.pack("<2If", N, C, 64e-5), (H, T, 1))
    yd = y0.astype(np.float64).reshape(T, H, N)
    norm = (yd - yd.mean(2, keepdims=True)) / np.sqrt(yd.var(2, keepdims=True) + 64e-5)
    np.testing.assert_allclose(y, (norm.reshape(T, C) * w + b) * g, rtol=1e-5, atol=1e-5)


def _wkv_inputs(T, H, N, seed):
    r, k, v = _f32(T, H * N, seed=seed), _f32(T, H * N, seed=seed + 1), _f32(T, H * N, seed=seed + 2)
    w = np.exp(-np.exp(_f32(T, H * N, seed=seed + 3))).astype(np.float32)
    u = _f32(H * N, seed=seed + 4)
    return r, k, v, w, u


@pytest.mark.parametrize("H,N,T", [(1, 64, 1), (4, 64, 5), (3, 32, 2)])
def test_wkv6_a_sequence_matches_the_cpu_kernel(device, H, N, T):
    r, k, v, w, u = _wkv_inputs(T, H, N, seed=10)
    # the state sits in slot 1 of 2, after another layer's: offsets are honoured
    S0 = _f32(2, 2, H, N, N, seed=20)
    S, y = S0.copy(), np.zeros((T, H * N), np.float32)
    slots = np.array([1], np.uint32)
    floats_per_slot = 2 * H * N * N
    device.run("wkv6", [r, k, v, w, u, S, y, slots], struct.pack("<5I", T, H * N, 0, floats_per_slot, H * N * N),
               (H, 1, 1), local_x=N)
    want_S = S0[1, 1].copy()
    for t in range(T):
        for h in range(H):
            sl = slice(h * N, (h + 1) * N)
            want_y = _core.wkv6_at_level("scalar", r[t, sl], k[t, sl], v[t, sl], w[t, sl], u[sl], want_S[h])
            np.testing.assert_allclose(y[t, sl], want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(S[1, 1], want_S, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(S[0], S0[0])  # other slots and layers untouched
    np.testing.assert_array_equal(S[1, 0], S0[1, 0])


def test_wkv6_a_batch_keeps_each_sequence_in_its_own_slot(device):
    H, N, T = 2, 64, 3
    r, k, v, w, u = _wkv_inputs(T, H, N, seed=30)
    S0 = _f32(4, H, N, N, seed=40)
    S, y = S0.copy(), np.zeros((T, H * N), np.float32)
    slots = np.array([3, 0, 2], np.uint32)
    device.run("wkv6", [r, k, v, w, u, S, y, slots], struct.pack("<5I", T, H * N, 1, H * N * N, 0), (H, T, 1),
               local_x=N)
    for t, slot in enumerate(slots):
        want_S = S0[slot].copy()
        for h in range(H):
            sl = slice(h * N, (h + 1) * N)
            want_y = _core.wkv6_at_level("scalar", r[t, sl], k[t, sl], v[t, sl], w[t, sl], u[sl], want_S[h])
            np.testing.assert_allclose(y[t, sl], want_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(S[slot], want_S, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(S[1], S0[1])


@pytest.mark.parametrize("batch", [0, 1])
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_token_shift_and_its_state(device, batch, mode):
    C, T = 100, 3
    xa, l0, l1 = _f32(T, C, seed=50), _f32(C, seed=51), _f32(C, seed=52)
    state0 = _f32(4, 2, C, seed=53)  # 4 slots of 2 layers' shift vectors; this layer's is the second
    slots = np.array([2, 0, 3] if batch else [1], np.uint32)
    o0, o1, state = np.zeros((T, C), np.float32), np.zeros((T, C), np.float32), state0.copy()
    push = struct.pack("<8I", C, T, C, C, batch, 2 * C, C, mode)
    device.run("token_shift", [xa, state, l0, l1, o0, o1, slots], push, ((C + 63) // 64, T, 1))
    prev = np.stack([state0[s, 1] for s in slots]) if batch else np.vstack([state0[slots[0], 1], xa[:-1]])
    sx = prev - xa
    want0, want1 = {0: (sx, xa + sx * l0), 1: (xa + sx * l0, xa + sx * l1), 2: (sx, np.zeros_like(xa))}[mode]
    np.testing.assert_allclose(o0, want0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(o1, want1, rtol=1e-6, atol=1e-6)
    device.run("shift_store", [xa, state, slots], struct.pack("<6I", C, T, C, batch, 2 * C, C),
               ((C + 63) // 64, T if batch else 1, 1))
    want = state0.copy()
    for i, s in enumerate(slots):
        want[s, 1] = xa[i] if batch else xa[-1]
    np.testing.assert_array_equal(state, want)


@pytest.mark.parametrize("n,has_mix", [(5, 1), (6, 0)])  # RWKV-6's data-dependent mixes, RWKV-7's static ones
def test_lerp(device, n, has_mix):
    C, T = 96, 2
    xa, sx, lerp, mix = _f32(T, C, seed=60), _f32(T, C, seed=61), _f32(n * C, seed=62), _f32(T, n * C, seed=63)
    xm = np.zeros((T, n * C), np.float32)
    device.run("lerp", [xa, sx, lerp, mix, xm], struct.pack("<6I", C, T, C, n * C, n, has_mix),
               ((n * C + 63) // 64, T, 1))
    want = np.tile(xa, n) + np.tile(sx, n) * (lerp + (mix if has_mix else 0))
    np.testing.assert_allclose(xm, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_residual(device, mode):
    C, T = 70, 3
    x0, a, b = _f32(T, C, seed=70), _f32(T, C, seed=71), _f32(T, C, seed=72)
    x = x0.copy()
    device.run("residual", [x, a, b], struct.pack("<4If", C, T, C, mode, 0.5), ((C + 63) // 64, T, 1))
    want = {0: x0 + a, 1: x0 + a * b, 2: x0 * 0.5}[mode]
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)


# -- RWKV-7's ---------------------------------------------------------------------------------

def _wkv7_inputs(T, H, N, seed):
    """As the layer feeds the WKV7: a = -kk, b = kk * iclr with kk unit-norm per head."""
    r, k, v = _f32(T, H * N, seed=seed), _f32(T, H * N, seed=seed + 1), _f32(T, H * N, seed=seed + 2)
    w = np.exp(-0.606531 / (1 + np.exp(-_f32(T, H * N, seed=seed + 3)))).astype(np.float32)
    kk = _f32(T, H, N, seed=seed + 4)
    kk = (kk / np.linalg.norm(kk, axis=2, keepdims=True)).reshape(T, H * N)
    iclr = 1 / (1 + np.exp(-_f32(T, H * N, seed=seed + 5)))
    return r, w, k, v, (-kk).astype(np.float32), (kk * iclr).astype(np.float32)


def _wkv7_want(r, w, k, v, a, b, S, H, N, t):
    """Token t through the CPU's scalar WKV7 (double sums), S[h] updated in place: y."""
    y = np.zeros(H * N, np.float32)
    for h in range(H):
        sl = slice(h * N, (h + 1) * N)
        y[sl] = _core.wkv7_at_level("scalar", r[t, sl], w[t, sl], k[t, sl], v[t, sl], a[t, sl], b[t, sl], S[h])
    return y


@pytest.mark.parametrize("H,N,T", [(1, 64, 1), (4, 64, 5), (3, 32, 2)])
def test_wkv7_a_sequence_matches_the_cpu_kernel(device, H, N, T):
    r, w, k, v, a, b = _wkv7_inputs(T, H, N, seed=100)
    S0 = _f32(2, 2, H, N, N, seed=110, scale=0.3)  # slot 1 of 2, the second layer's matrices
    S, y = S0.copy(), np.zeros((T, H * N), np.float32)
    device.run("wkv7", [r, w, k, v, a, b, S, y, np.array([1], np.uint32)],
               struct.pack("<5I", T, H * N, 0, 2 * H * N * N, H * N * N), (H, 1, 1), local_x=N)
    want_S = S0[1, 1].copy()
    for t in range(T):
        np.testing.assert_allclose(y[t], _wkv7_want(r, w, k, v, a, b, want_S, H, N, t), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(S[1, 1], want_S, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(S[0], S0[0])
    np.testing.assert_array_equal(S[1, 0], S0[1, 0])


def test_wkv7_a_batch_keeps_each_sequence_in_its_own_slot(device):
    H, N, T = 2, 64, 3
    r, w, k, v, a, b = _wkv7_inputs(T, H, N, seed=120)
    S0 = _f32(4, H, N, N, seed=130, scale=0.3)
    S, y = S0.copy(), np.zeros((T, H * N), np.float32)
    slots = np.array([3, 0, 2], np.uint32)
    device.run("wkv7", [r, w, k, v, a, b, S, y, slots], struct.pack("<5I", T, H * N, 1, H * N * N, 0), (H, T, 1),
               local_x=N)
    for t, slot in enumerate(slots):
        want_S = S0[slot].copy()
        np.testing.assert_allclose(y[t], _wkv7_want(r, w, k, v, a, b, want_S, H, N, t), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(S[slot], want_S, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(S[1], S0[1])


@pytest.mark.parametrize("first", [1, 0])  # layer 0 keeps its v; later layers mix v_first in
def test_rwkv7_keys_and_value_residual(device, first):
    H, N, T = 3, 64, 2
    C = H * N
    k0, a = _f32(T, C, seed=140), (1 / (1 + np.exp(-_f32(T, C, seed=141)))).astype(np.float32)
    k_k, k_a = _f32(C, seed=142, scale=0.3) + 0.8, _f32(C, seed=143, scale=0.1) + 1.0
    v0, vf0 = _f32(T, C, seed=144), _f32(T, C, seed=145)
    vg = (1 / (1 + np.exp(-_f32(T, C, seed=146)))).astype(np.float32)
    k0[1, :N] = 0  # a head whose k * k_k is all zero: normalised by 1e-12, not divided by zero
    k, kk, b, v, vf = k0.copy(), np.zeros((T, C), np.float32), np.zeros((T, C), np.float32), v0.copy(), vf0.copy()
    device.run("rwkv7_keys", [k, a, kk, b, k_k, k_a, v, vf, vg], struct.pack("<3I", N, C, first), (H, T, 1))
    x = (k0 * k_k).astype(np.float64).reshape(T, H, N)
    n = (x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)).reshape(T, C)
    np.testing.assert_allclose(kk, -n, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, n * a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(k, k0 * (1 + (a - 1) * k_a), rtol=1e-6, atol=1e-6)
    if first:
        np.testing.assert_array_equal(vf, v0)
        np.testing.assert_array_equal(v, v0)
    else:
        np.testing.assert_array_equal(vf, vf0)
        np.testing.assert_allclose(v, v0 + (vf0 - v0) * vg, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("H,N,T", [(1, 64, 1), (4, 64, 3), (5, 32, 2)])
def test_group_norm_bonus_and_gate(device, H, N, T):
    C = H * N
    y0, w, b, g = _f32(T, C, seed=150, scale=2.0), _f32(C, seed=151), _f32(C, seed=152), _f32(T, C, seed=153)
    r, k, v, r_k = _f32(T, C, seed=154), _f32(T, C, seed=155), _f32(T, C, seed=156), _f32(C, seed=157)
    y = y0.copy()
    device.run("group_norm_bonus", [y, w, b, g, r, k, v, r_k], struct.pack("<2If", N, C, 64e-5), (H, T, 1))
    yd = y0.astype(np.float64).reshape(T, H, N)
    norm = ((yd - yd.mean(2, keepdims=True)) / np.sqrt(yd.var(2, keepdims=True) + 64e-5)).reshape(T, C)
    bonus = (r.astype(np.float64) * k * r_k).reshape(T, H, N).sum(2, keepdims=True)
    want = (norm * w + b + (bonus * v.reshape(T, H, N)).reshape(T, C)) * g
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_run_checks_its_arguments(device):
    x = np.zeros(4, np.float32)
    with pytest.raises(RuntimeError, match="no shader nope"):
        device.run("nope", [x], b"", (1, 1, 1))
    with pytest.raises(ValueError, match="exceed"):
        device.run("residual", [x, x, x], struct.pack("<4If", 4, 1, 4, 0, 1.0), (1, 1, 1), local_x=1 << 20)
