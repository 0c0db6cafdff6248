"""Sequence mode: a prompt fed at once gives the token-by-token logits and state (to round-off)."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast

from conftest import fixture_path


def _same(a, b):
    # the tightest statement: each kernel's GEMM sums every (row, token) exactly as its GEMV
    # does, so sequence, batch and one-token results agree to the bit
    return np.array_equal(a, b)


ALL_TYPES = ["F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"]


@pytest.mark.parametrize("gguf", [f"tiny/gguf/tiny-{t}.gguf" for t in ALL_TYPES])
@pytest.mark.parametrize("T", [1, 2, 31, 32, 33, 63, 64, 65, 1000])
def test_sequence_equals_token_serial(gguf, T):
    rng = np.random.default_rng(T)
    with rwkvfast.Model(fixture_path(gguf), n_threads=2) as m:
        ids = rng.integers(1, m.n_vocab, T).tolist()
        seq_state = m.new_state()
        seq = m.forward(ids, seq_state, all_logits=True)
        one_state = m.new_state()
        one = np.stack([m.forward(t, one_state) for t in ids])
        assert _same(seq, one)
        for a, b in ((seq_state.wkv, one_state.wkv), (seq_state.att_shift, one_state.att_shift),
                     (seq_state.ffn_shift, one_state.ffn_shift)):
            assert _same(a, b)
        # last-token logits of the sequence call equal the all-logits row
        again = m.forward(ids, m.new_state())
        assert _same(again, seq[-1])


def test_sequence_continues_a_state():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf"), n_threads=2) as m:
        ids = list(range(1, 100))
        whole = m.forward(ids, m.new_state(), all_logits=True)
        st = m.new_state()
        a = m.forward(ids[:37], st, all_logits=True)
        b = m.forward(ids[37:], st, all_logits=True)
        assert _same(np.concatenate([a, b]), whole)


@pytest.mark.parametrize("gguf", [f"tiny/gguf/tiny-{t}.gguf" for t in ALL_TYPES])
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
            assert got.shape == (B, m.n_vocab) and _same(got, want)
        for a, b in zip(batch, single):
            assert _same(a.wkv, b.wkv) and _same(a.att_shift, b.att_shift)


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


@pytest.mark.parametrize("gguf", ["tiny/gguf/tiny-F32.gguf", "tiny/gguf/tiny-Q4_K_M.gguf", "tiny/gguf/tiny-Q5_1.gguf"])
@pytest.mark.parametrize("n_batch", [1, 5, 33, 64, 127])
def test_n_batch_boundaries_do_not_change_results(gguf, n_batch):
    """Chunk boundaries at odd places (n_batch 5 splits 300 tokens as 5 x 60, 127 as 127 + 127 + 46)
    give the logits and state of one 512-token chunk, bit for bit: every kernel sums each token
    the same way whatever tokens share its chunk."""
    ids = np.random.default_rng(n_batch).integers(1, 1000, 300).tolist()
    with rwkvfast.Model(fixture_path(gguf), n_threads=2) as whole, \
            rwkvfast.Model(fixture_path(gguf), n_threads=2, n_batch=n_batch) as chunked:
        assert chunked.info["n_batch"] == n_batch and whole.info["n_batch"] == 512
        a, b = whole.new_state(), chunked.new_state()
        want, got = whole.forward(ids, a, all_logits=True), chunked.forward(ids, b, all_logits=True)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(b.wkv, a.wkv)
        np.testing.assert_array_equal(b.ffn_shift, a.ffn_shift)
        toks = ids[:n_batch + 2] if n_batch + 2 <= len(ids) else ids
        states = [whole.new_state() for _ in toks]
        np.testing.assert_array_equal(chunked.forward_batch(toks, [s.copy() for s in states]),
                                      whole.forward_batch(toks, states))


@pytest.mark.parametrize("bad", [0, -3, 1 << 21, 2.5, True])
def test_n_batch_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="n_batch"):
        rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf"), n_batch=bad)
