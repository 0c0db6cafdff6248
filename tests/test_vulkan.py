"""The Vulkan backend: devices, and each shader against the CPU on random data with awkward
sizes. Runs on whatever device the machine has (Mesa's lavapipe in CI); skips only when the
build has no backend or the machine no Vulkan, unless $RWKVFAST_REQUIRE_VULKAN is set (CI)."""
from __future__ import annotations

import os

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
@pytest.mark.parametrize("rows,cols,ntok", [(1, 256, 1), (70, 768, 3), (257, 2304, 2)])
def test_matmul_matches_the_dequantized_weights(device, wtype, rows, cols, ntok):
    _check_matmul(device, wtype, rows, cols, ntok)


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
