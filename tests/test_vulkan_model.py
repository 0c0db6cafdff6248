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


@pytest.fixture(params=["mapped", "staged"])
def memory(request, monkeypatch):
    """Where the host maps device-local memory (lavapipe, integrated GPUs), states are copied
    in and out through the mapping; on a discrete GPU through host-visible buffers and
    copies on the device, which RWKVFAST_VK_STAGING=1 forces here."""
    if request.param == "staged":
        monkeypatch.setenv("RWKVFAST_VK_STAGING", "1")
    else:
        monkeypatch.delenv("RWKVFAST_VK_STAGING", raising=False)
    return request.param


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


def _agree(got, want):
    """The device sums a step or a short chunk (matvec.comp) and 8 tokens or more (the tiled
    matmul.comp) in different orders, each within float32 rounding of the exact sum
    (tests/test_vulkan.py holds both to float64): modes agree to some float32 steps of each
    row's largest logit, not to the bit as on the CPU. Seen: at most 12 steps (Q4_K_M);
    wrong slots or shifts would differ by whole units."""
    got, want = np.atleast_2d(got), np.atleast_2d(want)
    step = np.spacing(np.abs(want).max(axis=1).astype(np.float32))
    assert np.all(np.abs(got - want).max(axis=1) <= 32 * step)


def modes_agree(m, ids):
    """Three prompts cut from ids: each as a sequence, the first token by token, and all three
    advanced together a token each per step (forward_batch) agree within _agree."""
    prompts = [ids[:9], ids[9:14], ids[20:32]]
    seq = [m.forward(p, m.new_state(), all_logits=True) for p in prompts]
    s = m.new_state()
    _agree(np.stack([m.forward(t, s) for t in prompts[0]]), seq[0])
    states = [m.new_state() for _ in prompts]
    for step in range(max(map(len, prompts))):
        live = [i for i, p in enumerate(prompts) if step < len(p)]
        rows = m.forward_batch([prompts[i][step] for i in live], [states[i] for i in live])
        for row, i in zip(rows, live):
            _agree(row, seq[i][step])


@pytest.mark.parametrize("qtype", ["F32", "Q4_K_M", "Q5_1"])
def test_stepwise_batched_and_sequence_agree_on_the_device(qtype):
    with rwkvfast.Model(fixture_path(f"tiny/gguf/tiny-{qtype}.gguf"), n_gpu_layers=99) as m:
        modes_agree(m, reference_ids())


def test_a_state_goes_through_the_device_and_back(tmp_path, memory):
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


def _cpu_state(path, ids):
    with rwkvfast.Model(path) as m:
        s = m.new_state()
        m.forward(ids, s)
        return [a.copy() for a in (s.att_shift, s.ffn_shift, s.wkv)]


def test_a_resident_state_reads_back_what_the_cpu_would_have_and_takes_writes(memory):
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    ids = reference_ids()[:10]
    want = _cpu_state(path, ids)
    with rwkvfast.Model(path, n_gpu_layers=3) as m:
        s = m.new_state()
        m.forward(ids, s)  # the state now lives on the device
        for got, w in zip((s.att_shift, s.ffn_shift, s.wkv), want):
            np.testing.assert_allclose(got, w, rtol=0, atol=1e-4)
        again = m.forward(ids[:3], m.new_state())
        s.reset()  # a write on the CPU side: the device must take it, not keep its copy
        np.testing.assert_array_equal(m.forward(ids[:3], s), again)
        other = m.new_state()
        m.forward(ids, other)
        s2 = other.copy()  # a copy of a resident state has its value
        np.testing.assert_allclose(s2.wkv, want[2], rtol=0, atol=1e-4)


def test_a_state_moves_between_models_and_outlives_its_model(memory):
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    ids = reference_ids()[:16]
    with rwkvfast.Model(path) as cpu:
        want = cpu.forward(ids[8:], _fresh_after(cpu, ids[:8]), all_logits=True)
    gpu = rwkvfast.Model(path, n_gpu_layers=1)
    s = gpu.new_state()
    gpu.forward(ids[:8], s)
    with rwkvfast.Model(path) as cpu:  # continued by a model without a GPU
        got = cpu.forward(ids[8:], s.copy(), all_logits=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    before = s.wkv.copy()
    gpu.forward(ids[8:], s)
    after = s.wkv.copy()
    assert not np.array_equal(before, after)
    gpu.close()  # the state keeps its value without its model
    np.testing.assert_array_equal(s.wkv, after)


def _fresh_after(m, ids):
    s = m.new_state()
    m.forward(ids, s)
    return s


def test_more_sequences_than_the_first_slots_hold(memory):
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    ids = reference_ids()[:7]
    with rwkvfast.Model(path) as cpu:
        want = [cpu.forward(ids[i:], cpu.new_state()) for i in range(7)]
    with rwkvfast.Model(path, n_gpu_layers=3) as m:  # 7 resident states: the pool grows twice
        states, last = [m.new_state() for _ in range(7)], {}
        for step in range(7):
            live = [i for i in range(7) if i + step < 7]
            rows = m.forward_batch([ids[i + step] for i in live], [states[i] for i in live])
            last.update({i: row for i, row in zip(live, rows) if i + step == 6})  # sequence i's final token
        del states[3]  # a freed state gives its slot back
        states.append(m.new_state())
        final = m.forward(ids, states[-1])
    assert sorted(last) == list(range(7))
    for i in range(7):
        np.testing.assert_allclose(last[i], want[i], rtol=0, atol=1e-4)
    np.testing.assert_allclose(final, want[0], rtol=0, atol=1e-4)


def test_forwards_of_many_shapes_take_turns_in_the_recorded_programs():
    """A forward's commands are recorded once per shape (tokens, batch, logits) and kept for
    the next forward of that shape, a few shapes at a time: shapes that come back after
    others pushed them out, and longer chunks that grow the activations, still compute the
    same."""
    path = fixture_path("tiny/gguf/tiny-Q8_0.gguf")
    ids = reference_ids()
    lengths = [1, 9, 2, 1, 33, 3, 1, 9, 4, 5, 1, 2, 70, 1]
    with rwkvfast.Model(path, n_gpu_layers=3) as m:
        fresh = {n: m.forward(ids[:n], m.new_state(), all_logits=True) for n in sorted(set(lengths))}
    with rwkvfast.Model(path, n_gpu_layers=3) as m:
        for n in lengths:
            np.testing.assert_array_equal(m.forward(ids[:n], m.new_state(), all_logits=True), fresh[n])
            _agree(m.forward(ids[:n], m.new_state()), fresh[n][-1])  # the head: one token, not n


def test_two_threads_share_one_offloaded_model():
    import threading
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    prompts = [reference_ids()[:20], reference_ids()[20:40]]
    with rwkvfast.Model(path, n_gpu_layers=1) as m:
        alone = [m.forward(p, m.new_state(), all_logits=True) for p in prompts]
        got = [None, None]

        def run(i):
            s = m.new_state()
            got[i] = np.stack([m.forward(t, s) for t in prompts[i]])  # token by token: many turns at the lock

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for g, a in zip(got, alone):
        np.testing.assert_allclose(g, a, rtol=0, atol=1e-4)


def test_the_staging_copies_of_a_discrete_gpu(monkeypatch):
    """Device-local memory that the host cannot map (discrete GPUs): weights, x and logits go
    through copies. Lavapipe maps everything, so this is forced."""
    monkeypatch.setenv("RWKVFAST_VK_STAGING", "1")
    path = fixture_path("tiny/gguf/tiny-Q4_K_M.gguf")
    ids = reference_ids()[:12]
    with rwkvfast.Model(path, n_gpu_layers=3) as m:
        staged = m.forward(ids, m.new_state(), all_logits=True)
    monkeypatch.delenv("RWKVFAST_VK_STAGING")
    with rwkvfast.Model(path, n_gpu_layers=3) as m:
        mapped = m.forward(ids, m.new_state(), all_logits=True)
    np.testing.assert_array_equal(staged, mapped)


def test_a_cpu_vulkan_device_is_never_the_default(monkeypatch, capsys):
    """llvmpipe/lavapipe runs 60-600x slower than the CPU path: -ngl without naming a device
    warns and uses the CPU there; naming it (as these tests do) still runs on it."""
    devices = _core.vk_devices()
    if any(d["type"] in ("discrete", "integrated", "virtual") for d in devices):
        pytest.skip("this machine has a GPU: the default takes it")
    monkeypatch.delenv("RWKVFAST_VK_DEVICE", raising=False)
    path = fixture_path("tiny/gguf/tiny-Q8_0.gguf")
    with pytest.raises(RuntimeError, match="no GPU, only 1 CPU device|no GPU, only"):
        rwkvfast.Model(path, n_gpu_layers=99)
    from rwkvfast.cli.load import open_model
    with open_model(str(path), 1, 512, 99) as m:
        assert m.gpu is None
    assert "running on the CPU" in capsys.readouterr().err
    with rwkvfast.Model(path, n_gpu_layers=99, device=0) as m:
        assert m.gpu["device"] == devices[0]["name"]
