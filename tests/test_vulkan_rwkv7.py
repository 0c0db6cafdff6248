"""RWKV-7 models with layers on the Vulkan device (-ngl; csrc/vulkan/layers7.c): every fixture
type against the official package on the file's own dequantized weights; sequence, batched
and stepwise modes; states through the device and back; layer 0's values handed to the
layers left on the CPU."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast

from conftest import fixture_path
from test_rwkv7 import TYPES, _ids, _path, assert_same_top_tokens, reference
from test_vulkan_model import memory, modes_agree, needs_a_device  # noqa: F401 (fixtures)


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("ngl", [1, 3, 5])  # tiny7 has 4 layers: 5 takes the head too
def test_offloaded_rwkv7_layers_match_the_official_package(qtype, ngl):
    ref, peer = reference(qtype)
    with rwkvfast.Model(_path(qtype), n_gpu_layers=ngl) as m:
        assert m._m.gpu_layers() == (min(ngl, 4), ngl > 4)
        out = m.forward(_ids(), m.new_state(), all_logits=True)
    max_abs = float(np.abs(out - ref).max())
    assert_same_top_tokens(out, ref, max_abs)
    if ngl > 4:
        # all on the device, in float from the exactly dequantized weights: float32 rounding
        # of the reference for every type (measured 1.2e-5 to 2.5e-5)
        assert max_abs <= 4e-5
    else:
        # layers left on the CPU round their activations to 15 bits, as test_rwkv7.py allows
        assert max_abs <= (2e-5 if qtype == "F32" else 5e-5 if qtype == "F16" else peer["max_abs"] / 10)


# partial offload in F16: the CPU layers of a quantized file round their activations to
# 8-bit blocks, which turns the device modes' float32-rounding differences into 1e-3
@pytest.mark.parametrize("qtype,ngl", [("F16", 5), ("Q4_K_M", 5), ("Q5_1", 5), ("F16", 2)])
def test_rwkv7_stepwise_batched_and_sequence_agree_on_the_device(qtype, ngl):
    with rwkvfast.Model(_path(qtype), n_gpu_layers=ngl) as m:
        modes_agree(m, _ids())


def test_an_rwkv7_state_goes_through_the_device_and_back(tmp_path, memory):
    """Layer 0 on the device and three here: the state's first layer lives there, and the CPU
    layers take layer 0's values from it (copied out through host-visible memory when
    staged)."""
    path = _path("F16")
    ids = _ids()[:12]
    with rwkvfast.Model(path, n_gpu_layers=1) as m:
        s = m.new_state()
        m.forward(ids[:6], s)
        s.save(tmp_path / "s.state")
        direct = m.forward(ids[6:], s, all_logits=True)
        resumed = m.forward(ids[6:], rwkvfast.State.load(tmp_path / "s.state", m), all_logits=True)
    np.testing.assert_array_equal(resumed, direct)
    with rwkvfast.Model(path) as m:  # the CPU alone continues it the same
        whole = m.forward(ids, m.new_state(), all_logits=True)
        cpu = m.forward(ids[6:], rwkvfast.State.load(tmp_path / "s.state", m), all_logits=True)
    np.testing.assert_allclose(cpu, direct, rtol=0, atol=1e-4)
    np.testing.assert_allclose(direct, whole[6:], rtol=0, atol=1e-4)


def test_a_resident_rwkv7_state_reads_back_what_the_cpu_would_have(memory):
    path = _path("F16")
    ids = _ids()[:10]
    with rwkvfast.Model(path) as m:
        s = m.new_state()
        m.forward(ids, s)
        want = [a.copy() for a in (s.att_shift, s.ffn_shift, s.wkv)]
    with rwkvfast.Model(path, n_gpu_layers=5) as m:
        s = m.new_state()
        m.forward(ids, s)
        for got, w in zip((s.att_shift, s.ffn_shift, s.wkv), want):
            np.testing.assert_allclose(got, w, rtol=0, atol=1e-4)


def test_an_rwkv6_state_does_not_go_into_an_offloaded_rwkv7_model():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-Q8_0.gguf")) as m6:
        s6 = m6.new_state()
    with rwkvfast.Model(_path("Q8_0"), n_gpu_layers=5) as m7:
        with pytest.raises(ValueError, match="does not match"):
            m7.forward(_ids()[:3], s6)


def test_rwkvfast_chat_runs_rwkv7_layers_on_the_device():
    import os
    import subprocess
    import sys
    def complete(*extra):
        p = subprocess.run([sys.executable, "-m", "rwkvfast.cli.chat", "-m", str(_path("F16")), "-no-cnv", "-p",
                            "The quick brown fox", "-n", "12", "--temp", "0", "-t", "1", *extra],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "RWKVFAST_VK_DEVICE": "0"})
        assert p.returncode == 0, p.stderr
        return p.stdout, p.stderr
    on_device, log = complete("-ngl", "99")
    assert "4/4 layers and the output on the GPU" in log
    # F16 on the device is within 6e-6 of the CPU (above): the same greedy text
    assert on_device == complete()[0] and len(on_device) > len("The quick brown fox")
