"""Quantized GGUFs written by llama-quantize vs the official rwkv package run on the
dequantized weights of the same file (rwkv_dequant_<TYPE>.npy).

We must be no further from that reference than llama.cpp is (manifest `llama_vs_dequant`).
We compute with exactly dequantized weights and 15-bit activations, so we are expected
to be ~100x closer; our distance to llama.cpp's logits is reported, not asserted.
"""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast

from conftest import fixture_path, manifest_entry, reference_ids

TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0", "Q3_K_M", "Q2_K"]


@pytest.mark.parametrize("qtype", TYPES)
def test_quantized_fixture_matches_rwkv_on_dequantized_weights(qtype, record_property):
    path = fixture_path(f"tiny/gguf/tiny-{qtype}.gguf")
    ref = np.load(fixture_path(f"tiny/ref/rwkv_dequant_{qtype}.npy"))
    peer = manifest_entry(qtype)["llama_vs_dequant"]
    with rwkvfast.Model(path) as m:
        out = m.forward(reference_ids(), m.new_state(), all_logits=True)
    max_abs = float(np.abs(out - ref).max())
    argmax = float((out.argmax(1) == ref.argmax(1)).mean())
    record_property("max_abs_vs_dequant", max_abs)
    try:
        llama = np.load(fixture_path(f"tiny/ref/llama_{qtype}.npy"))
        record_property("max_abs_vs_llama", float(np.abs(out - llama).max()))
    except pytest.skip.Exception:
        pass
    assert argmax >= peer["argmax_agree"]
    assert max_abs <= peer["max_abs"], f"{qtype}: {max_abs} > llama.cpp's {peer['max_abs']}"


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K_M"])
def test_stepwise_equals_sequence_quantized(qtype):
    path = fixture_path(f"tiny/gguf/tiny-{qtype}.gguf")
    ids = reference_ids()[:24]
    with rwkvfast.Model(path) as m:
        seq = m.forward(ids, m.new_state(), all_logits=True)
        s = m.new_state()
        one = np.stack([m.forward(t, s) for t in ids])
    np.testing.assert_array_equal(one, seq)


def _kl(ref: np.ndarray, out: np.ndarray) -> float:
    def logsoftmax(a):
        a = a.astype(np.float64)
        a = a - a.max(1, keepdims=True)
        return a - np.log(np.exp(a).sum(1, keepdims=True))
    lp, lq = logsoftmax(ref), logsoftmax(out)
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


@pytest.mark.parametrize("qtype", TYPES)
def test_our_quantizer_is_as_good_as_llama_quantize(qtype, tmp_path):
    """Quantize the F32 fixture ourselves and run it: the logits are as close to the fp32
    reference as llama.cpp's own run of its own file (within 5%)."""
    src = fixture_path("tiny/gguf/tiny-F32.gguf")
    ref = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    peer = manifest_entry(qtype)["observed"]
    out_path = rwkvfast.quantize(src, tmp_path / f"{qtype}.gguf", qtype, n_threads=2).output
    with rwkvfast.Model(out_path) as m:
        out = m.forward(reference_ids(), m.new_state(), all_logits=True)
    assert float(np.abs(out - ref).max()) <= 1.05 * peer["max_abs"]
    assert _kl(ref, out) <= 1.05 * peer["kl_mean"] + 1e-6
