"""Sequence mode: a prompt fed at once gives the token-by-token logits and state (to round-off)."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast

from conftest import fixture_path


def _round_off(a, b):
    # f32 accumulation order may differ between the chunked and the one-token products
    return float(np.abs(a - b).max()) <= 1e-5 * max(float(np.abs(b).max()), 1.0)


@pytest.mark.parametrize("gguf", ["tiny/gguf/tiny-F32.gguf", "tiny/gguf/tiny-Q4_K_M.gguf", "tiny/gguf/tiny-Q8_0.gguf"])
@pytest.mark.parametrize("T", [1, 2, 31, 32, 33, 63, 64, 65, 1000])
def test_sequence_equals_token_serial(gguf, T):
    rng = np.random.default_rng(T)
    with rwkvfast.Model(fixture_path(gguf), n_threads=2) as m:
        ids = rng.integers(1, m.n_vocab, T).tolist()
        seq_state = m.new_state()
        seq = m.forward(ids, seq_state, all_logits=True)
        one_state = m.new_state()
        one = np.stack([m.forward(t, one_state) for t in ids])
        assert _round_off(seq, one)
        for a, b in ((seq_state.wkv, one_state.wkv), (seq_state.att_shift, one_state.att_shift),
                     (seq_state.ffn_shift, one_state.ffn_shift)):
            assert _round_off(a, b)
        # last-token logits of the sequence call equal the all-logits row
        again = m.forward(ids, m.new_state())
        assert _round_off(again, seq[-1])


def test_sequence_continues_a_state():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf"), n_threads=2) as m:
        ids = list(range(1, 100))
        whole = m.forward(ids, m.new_state(), all_logits=True)
        st = m.new_state()
        a = m.forward(ids[:37], st, all_logits=True)
        b = m.forward(ids[37:], st, all_logits=True)
        assert _round_off(np.concatenate([a, b]), whole)


@pytest.mark.parametrize("gguf", ["tiny/gguf/tiny-F32.gguf", "tiny/gguf/tiny-Q4_K_M.gguf"])
@pytest.mark.parametrize("B", [1, 3, 33])
def test_batch_equals_one_sequence_at_a_time(gguf, B):
    rng = np.random.default_rng(B)
    with rwkvfast.Model(fixture_path(gguf), n_threads=2) as m:
        # sequences of different lengths: different starting states
        prompts = [rng.integers(1, m.n_vocab, int(rng.integers(1, 20))).tolist() for _ in range(B)]
        batch, single = [m.new_state() for _ in range(B)], [m.new_state() for _ in range(B)]
        for p, a, b in zip(prompts, batch, single):
            m.forward(p, a)
            m.forward(p, b)
        for step in range(3):
            toks = rng.integers(1, m.n_vocab, B).tolist()
            got = m.forward_batch(toks, batch)
            want = np.stack([m.forward(t, s) for t, s in zip(toks, single)])
            assert got.shape == (B, m.n_vocab) and _round_off(got, want)
        for a, b in zip(batch, single):
            assert _round_off(a.wkv, b.wkv) and _round_off(a.att_shift, b.att_shift)


def test_batch_refuses_bad_input():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf"), n_threads=1) as m:
        s = m.new_state()
        with pytest.raises(ValueError, match="share one state"):  # checked in Python and again in C
            m.forward_batch([1, 2], [s, s])
        with pytest.raises(ValueError, match="one state per token"):
            m.forward_batch([1, 2], [s])
        with pytest.raises(ValueError, match="outside the vocabulary"):
            m.forward_batch([m.n_vocab], [s])
        with pytest.raises(TypeError):
            m.forward_batch([1], [object()])
