"""rwkvfast.Sampler: the official RWKV sampler reproduced exactly, llama.cpp's chain, seeds, checks."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast
from rwkvfast.sampler import LLAMA_DEFAULTS, RWKV_CHAT_DEFAULTS, Sampler, SamplerParams


def official_rwkv(logits, occurrence, temperature, top_p, top_k, presence, frequency, banned=()):
    """The rwkv package's PIPELINE.sample_logits after ChatRWKV's penalties, in numpy (float32
    softmax, descending cumulative top-p with ties kept, top-k by sorted order, p ** (1 / T)),
    returning the final distribution; the draw is numpy.random.choice's cdf search."""
    out = np.array(logits, dtype=np.float32)
    for t in banned:
        out[t] = -np.inf
    for t, c in occurrence.items():
        out[t] -= np.float32(presence + c * frequency)
    if temperature == 0:
        temperature, top_p = 1.0, 0.0
    e = np.exp(out - out.max())
    probs = (e / e.sum()).astype(np.float32)
    sorted_ids = np.argsort(probs, kind="stable")
    sorted_probs = probs[sorted_ids][::-1]
    cum = np.cumsum(sorted_probs)
    cutoff = float(sorted_probs[np.argmax(cum >= top_p)]) if top_p < 1 else 0.0
    probs[probs < cutoff] = 0
    if 0 < top_k < len(probs):
        probs[sorted_ids[:-top_k]] = 0
    if temperature != 1.0:
        probs = probs ** (1.0 / temperature)
    return probs / probs.sum()


def choice(probs, u):
    cdf = np.cumsum(probs.astype(np.float64))
    return int(np.searchsorted(cdf / cdf[-1], u, side="right"))


@pytest.mark.parametrize("temperature,top_p,top_k", [(1.0, 0.3, 0), (1.0, 0.85, 0), (0.7, 0.5, 0), (1.5, 0.9, 0),
                                                      (1.0, 1.0, 7), (1.0, 0.95, 5), (0.0, 0.3, 0)])
def test_rwkv_mode_is_the_official_sampler(temperature, top_p, top_k):
    rng = np.random.default_rng(7)
    V = 1000
    s = Sampler(V, SamplerParams(mode="rwkv", temperature=temperature, top_p=top_p, top_k=top_k,
                                 presence_penalty=0.5, frequency_penalty=0.5, penalty_decay=0.996), banned=[0])
    occ: dict[int, float] = {}
    for step in range(12):
        logits = (rng.standard_normal(V) * 3).astype(np.float32)
        want = official_rwkv(logits, occ, temperature, top_p, top_k, 0.5, 0.5, banned=[0])
        got = s.probabilities(logits)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
        assert set(np.flatnonzero(got)) == set(np.flatnonzero(want))
        for u in rng.uniform(0, 1, 5):
            cdf = np.cumsum(want) / want.sum()
            if np.min(np.abs(cdf - u)) < 1e-5:
                continue  # a draw this close to a boundary may fall either side in float
            assert s.sample(logits, u=u) == choice(want, u)
        tok = s.sample(logits, u=0.5)
        s.accept(tok)
        # ChatRWKV: every count decays, then the new token's count grows by one
        occ = {t: c * 0.996 for t, c in occ.items()}
        occ[tok] = occ.get(tok, 0.0) + 1.0


def test_penalties_touch_exactly_the_generated_tokens():
    V = 50
    logits = np.linspace(-2, 2, V).astype(np.float32)
    s = Sampler(V, SamplerParams(temperature=1.0, presence_penalty=0.7, frequency_penalty=0.2, penalty_decay=0.5))
    base = s.probabilities(logits)
    for t in (3, 3, 9):
        s.accept(t)
    p = s.probabilities(logits)
    # occ: 3 -> (1 * 0.5 + 1) * 0.5 = 0.75, 9 -> 1
    shifted = logits.copy()
    shifted[3] -= 0.7 + 0.75 * 0.2
    shifted[9] -= 0.7 + 1.0 * 0.2
    want = np.exp(shifted - shifted.max())
    np.testing.assert_allclose(p, want / want.sum(), rtol=1e-5)
    others = np.setdiff1d(np.arange(V), [3, 9])
    np.testing.assert_allclose(p[others] / p[others].sum(), base[others] / base[others].sum(), rtol=1e-5)
    s.reset()
    np.testing.assert_allclose(s.probabilities(logits), base, rtol=1e-6)


def test_llama_chain_cut_sets():
    V = 100
    logits = np.log(np.r_[np.array([0.30, 0.25, 0.15, 0.10, 0.08, 0.05]), np.full(94, 0.07 / 94)]).astype(np.float32)
    kept = lambda **kw: set(np.flatnonzero(Sampler(V, SamplerParams(mode="llama", **kw)).probabilities(logits)))
    assert kept(top_k=3) == {0, 1, 2}
    assert kept(top_p=0.65) == {0, 1, 2}  # 0.30 + 0.25 + 0.15 reaches 0.65
    assert kept(top_p=0.70) == {0, 1, 2}
    assert kept(top_p=0.71) == {0, 1, 2, 3}
    assert kept(min_p=0.3) == {0, 1, 2, 3}  # p >= 0.3 * 0.30
    assert kept(top_k=5, min_p=0.5) == {0, 1, 2}
    assert len(kept()) == V
    # temperature divides the logits of what is kept
    p = Sampler(V, SamplerParams(mode="llama", top_k=2, temperature=0.5)).probabilities(logits)
    r = (0.30 / 0.25) ** 2
    np.testing.assert_allclose(p[:2], [r / (1 + r), 1 / (1 + r)], rtol=1e-5)


def test_llama_repeat_penalty_is_llama_cpps():
    V = 6
    logits = np.array([2.0, -1.0, 0.5, 1.0, -2.0, 0.0], np.float32)
    s = Sampler(V, SamplerParams(mode="llama", repeat_penalty=2.0, presence_penalty=0.1, frequency_penalty=0.05,
                                 repeat_last_n=2))
    for t in (0, 1, 1):  # the window of 2 holds 1, 1
        s.accept(t)
    got = s.probabilities(logits)
    want = logits.astype(np.float64).copy()
    want[1] = -1.0 * 2.0 - 2 * 0.05 - 0.1
    e = np.exp(want - want.max())
    np.testing.assert_allclose(got, e / e.sum(), rtol=1e-5)


@pytest.mark.parametrize("mode", ["rwkv", "llama"])
def test_temperature_zero_is_argmax(mode):
    rng = np.random.default_rng(1)
    s = Sampler(500, SamplerParams(mode=mode, temperature=0.0, top_k=5), seed=3)
    for _ in range(20):
        logits = rng.standard_normal(500).astype(np.float32)
        assert s.sample(logits) == int(np.argmax(logits))


@pytest.mark.parametrize("params", [RWKV_CHAT_DEFAULTS, LLAMA_DEFAULTS])
def test_same_seed_same_tokens(params):
    rng = np.random.default_rng(0)
    logits = [(rng.standard_normal(300) * 2).astype(np.float32) for _ in range(40)]

    def run(seed):
        s = Sampler(300, params, seed=seed)
        out = []
        for l in logits:
            out.append(s.sample(l))
            s.accept(out[-1])
        return out
    assert run(5) == run(5)
    assert run(5) != run(6)


def test_draws_follow_the_distribution():
    V = 8
    logits = np.log(np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])).astype(np.float32)
    s = Sampler(V, SamplerParams(temperature=1.0), seed=11)
    p = s.probabilities(logits).astype(np.float64)
    n = 40000
    counts = np.bincount([s.sample(logits) for _ in range(n)], minlength=V)
    sigma = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(counts - n * p) < 5 * sigma), (counts, n * p)


def test_bans_bias_and_bad_arguments():
    V = 10
    logits = np.zeros(V, np.float32)
    logits[4] = 10
    s = Sampler(V, SamplerParams(temperature=1.0), banned=[4], bias={2: 5.0}, seed=1)
    draws = {s.sample(logits) for _ in range(200)}
    assert 4 not in draws and 2 in draws
    with pytest.raises(ValueError, match="no token can be sampled"):
        Sampler(2, banned=[0, 1]).sample(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        s.accept(10)
    with pytest.raises(ValueError, match="logits have 3 entries"):
        s.sample(np.zeros(3, np.float32))
    for bad in (dict(temperature=-1), dict(top_p=1.5), dict(top_k=-1), dict(min_p=2), dict(penalty_decay=1.5),
                dict(repeat_penalty=0), dict(mode="greedy"), dict(typical_p=0)):
        with pytest.raises(ValueError):
            Sampler(V, SamplerParams(**{**SamplerParams().__dict__, **bad}))
    assert rwkvfast.Sampler is Sampler


def test_chat_defaults_are_the_published_ones():
    assert (RWKV_CHAT_DEFAULTS.temperature, RWKV_CHAT_DEFAULTS.top_p, RWKV_CHAT_DEFAULTS.presence_penalty,
            RWKV_CHAT_DEFAULTS.frequency_penalty, RWKV_CHAT_DEFAULTS.penalty_decay) == (1.0, 0.3, 0.5, 0.5, 0.996)
    s = Sampler.rwkv_chat(4)
    assert s.probabilities(np.array([50, 0, 0, 0], np.float32))[0] == 0  # token 0 banned in chat
