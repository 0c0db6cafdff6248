"""Models with layers on the Vulkan device (-ngl): every fixture type against the official
reference within llama.cpp's own distance to it, like the CPU (tests/test_model_quant.py);
sequence, batched and stepwise modes; states that go through the device and back."""
from __future__ import annotations

import os

import numpy as np
import pytest

import rwkvfast
from rwkvfast import _core

from conftest import fixture_path, manifest_entry, reference_ids

TYPES = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0", "Q3_K_M", "Q2_K"]


@pytest.fixture(scope="module", autouse=True)
def needs_a_device():
    why = None
    if not _core.vk_built():
        why = "this build has no Vulkan backend"
    else:
        try:
            _core.vk_devices()
        except RuntimeError as e:
            why = str(e)
    if why:
        if os.environ.get("RWKVFAST_REQUIRE_VULKAN"):
            pytest.fail(f"$RWKVFAST_REQUIRE_VULKAN is set but {why}")
        pytest.skip(why)


def _reference(qtype):
    if qtype == "F16":
        return np.load(fixture_path("tiny/ref/rwkv_dequant_F16.npy")), manifest_entry("F16")["llama_vs_dequant"]
    return np.load(fixture_path(f"tiny/ref/rwkv_dequant_{qtype}.npy")), manifest_entry(qtype)["llama_vs_dequant"]


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("ngl", [1, 3])  # the fixture has 2 layers: 3 takes the head too
def test_offloaded_layers_match_the_reference_like_the_cpu(qtype, ngl):
    path = fixture_path(f"tiny/gguf/tiny-{qtype}.gguf")
    ref, peer = _reference(qtype)
    ids = reference_ids()
    with rwkvfast.Model(path, n_gpu_layers=ngl) as m:
        assert m._m.gpu_layers() == (min(ngl, 2), ngl > 2)
        out = m.forward(ids, m.new_state(), all_logits=True)
    with rwkvfast.Model(path) as m:
        cpu = m.forward(ids, m.new_state(), all_logits=True)
    assert float(np.abs(out - ref).max()) <= peer["max_abs"]
    assert float((out.argmax(1) == ref.argmax(1)).mean()) >= peer["argmax_agree"]
    # the device computes in float from the weights as stored; the CPU's integer kernels
    # round the activations to 8 bits per block: they differ by that, not more
    assert float(np.abs(out - cpu).max()) <= 0.05 * float(np.abs(cpu).max())


@pytest.mark.parametrize("qtype", ["F32", "Q4_K_M"])
def test_stepwise_batched_and_sequence_agree_on_the_device(qtype):
    path = fixture_path(f"tiny/gguf/tiny-{qtype}.gguf")
    prompts = [reference_ids()[:9], reference_ids()[9:14], reference_ids()[20:32]]
    with rwkvfast.Model(path, n_gpu_layers=99) as m:
        seq = [m.forward(p, m.new_state(), all_logits=True) for p in prompts]
        s = m.new_state()
        np.testing.assert_allclose(np.stack([m.forward(t, s) for t in prompts[0]]), seq[0], rtol=0, atol=1e-5)
        # three sequences advanced together, a token each per step
        states = [m.new_state() for _ in prompts]
        for step in range(max(map(len, prompts))):
            live = [i for i, p in enumerate(prompts) if step < len(p)]
            rows = m.forward_batch([prompts[i][step] for i in live], [states[i] for i in live])
            for row, i in zip(rows, live):
                np.testing.assert_allclose(row, seq[i][step], rtol=0, atol=1e-5)


def test_a_state_goes_through_the_device_and_back(tmp_path):
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    ids = reference_ids()[:12]
    with rwkvfast.Model(path, n_gpu_layers=1) as m:  # layer 0 on the device, layer 1 here
        s = m.new_state()
        m.forward(ids[:6], s)
        s.save(tmp_path / "s.state")
        direct = m.forward(ids[6:], s, all_logits=True)
        resumed = m.forward(ids[6:], rwkvfast.State.load(tmp_path / "s.state", m), all_logits=True)
    np.testing.assert_array_equal(resumed, direct)
    with rwkvfast.Model(path) as m:  # and the CPU continues it the same
        cpu = m.forward(ids[6:], rwkvfast.State.load(tmp_path / "s.state", m), all_logits=True)
    np.testing.assert_allclose(cpu, direct, rtol=0, atol=1e-4)


def test_a_missing_device_is_a_clear_error():
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    with pytest.raises(RuntimeError, match="no device 99"):
        rwkvfast.Model(path, n_gpu_layers=1, device=99)
