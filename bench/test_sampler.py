"""Sampling one token from a 65536-entry logit vector: ms per step for each sampler.

The logits are a trained-model-like spread (normal, std 4, as the fixtures' logits) and a
flat one (std 0.5, where top-p needs many candidates); penalties carry 200 accepted tokens.

    pytest bench/test_sampler.py --benchmark-only -s
"""
from __future__ import annotations

import numpy as np
import pytest

from rwkvfast.sampler import LLAMA_DEFAULTS, RWKV_CHAT_DEFAULTS, Sampler, SamplerParams

V = 65536
CASES = {"rwkv-chat": RWKV_CHAT_DEFAULTS, "rwkv-top_p0.95": SamplerParams(top_p=0.95, presence_penalty=0.5,
                                                                             frequency_penalty=0.5, penalty_decay=0.996),
         "llama-default": LLAMA_DEFAULTS}


@pytest.mark.parametrize("spread", [4.0, 0.5], ids=["peaked", "flat"])
@pytest.mark.parametrize("name", list(CASES))
def test_sample_65536(benchmark, name, spread):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(V) * spread).astype(np.float32)
    s = Sampler(V, CASES[name], seed=1)
    for t in rng.integers(0, V, 200):
        s.accept(int(t))
    benchmark(s.sample, logits)
    ms = benchmark.stats.stats.median * 1e3
    benchmark.extra_info["ms_per_token"] = ms
    print(f"\nsample {name:15s} {('peaked' if spread > 1 else 'flat'):6s} V={V}: {ms:.3f} ms per token")
