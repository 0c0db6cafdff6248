"""Prompt processing (ppN) and batched decoding on the 1.6B-shaped RWKV-6 and 1.5B-shaped RWKV-7
models, beside llama.cpp.

ppN feeds N random tokens in one forward() (the sequence mode), reported also as a fraction
of the f32 FMA peak measured in the same run (csrc/kernels/peak.c); llama.cpp, when
llama-cpp-python is installed, evaluates the same tokens with n_batch 512 in a child process,
alternated with ours three times (median of the per-alternation ratios). Batched decoding
reports the total tokens/s of B sequences stepped together by forward_batch.

    pytest bench/test_prefill.py --benchmark-only -s [--threads 2]
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rwkvfast
from rwkvfast import _core

from conftest import model_for

PP = int(os.environ.get("RWKVFAST_BENCH_PP", "512"))  # the issue measures pp512; smaller for a quick look
_LLAMA = textwrap.dedent("""
    import json, sys, time, numpy as np, llama_cpp
    llm = llama_cpp.Llama(model_path=sys.argv[1], n_threads=int(sys.argv[2]), n_threads_batch=int(sys.argv[2]),
                          n_ctx=1024, n_batch=512, verbose=False)
    ids = [int(t) for t in np.random.default_rng(0).integers(1, 65000, int(sys.argv[3]))]
    llm.eval(ids[:8]); llm.reset()
    t0 = time.perf_counter(); llm.eval(ids); print(json.dumps({"s": time.perf_counter() - t0}))
""")


def _ours(m, n: int) -> float:
    ids = np.random.default_rng(0).integers(1, 65000, n).tolist()
    t0 = time.perf_counter()
    m.forward(ids, m.new_state())
    return time.perf_counter() - t0


def _llama(path, n_threads, n) -> float | None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    r = subprocess.run([sys.executable, "-c", _LLAMA, str(path), str(n_threads), str(n)], capture_output=True, text=True)
    return json.loads(r.stdout)["s"] if r.returncode == 0 else None


@pytest.fixture(scope="module")
def peaks(n_threads):
    """The f32 FMA and int8 dot-product peaks of these threads (GFLOP/s, G int8 ops/s), measured here."""
    out = {}
    for name, int8 in (("fma", False), ("int8", True)):
        ops, s = _core.peak_ops(int8, n_threads, 20_000_000)
        out[name] = ops / s / 1e9
    print(f"\npeaks, {n_threads} threads: f32 FMA {out['fma']:.1f} GFLOP/s, int8 dot {out['int8']:.1f} Gop/s")
    return out


def _flops_per_token(m) -> float:
    """2 per weight of every matrix read per token (the embedding is a lookup)."""
    return 2.0 * sum(math.prod(t["shape"]) for t in m.metadata["tensors"]
                     if len(t["shape"]) >= 2 and t["name"] != "token_embd.weight")


@pytest.mark.parametrize("dtype", ["F16", "Q8_0", "Q5_1", "Q4_K_M"])
@pytest.mark.parametrize("arch", ["rwkv6", "rwkv7"])
def test_prompt_processing(benchmark, n_threads, peaks, arch, dtype):
    path = model_for(arch, dtype)
    with rwkvfast.Model(path, n_threads=n_threads) as m:
        flops = _flops_per_token(m)
        _ours(m, 8)
        ours = [_ours(m, PP) for _ in range(2)]
        ratios, theirs = [], []
        for _ in range(3):
            t = _llama(path, n_threads, PP)
            if t is None:
                break
            o = _ours(m, PP)
            ratios.append(t / o)
            theirs.append(t)
            ours.append(o)
        benchmark.pedantic(_ours, args=(m, PP), rounds=1)
    tps = PP / float(np.median(ours))
    line = (f"\n{arch} {dtype:6s} pp{PP}, {n_threads} threads: {tps:6.1f} t/s = {tps * flops / 1e9:5.1f} GFLOP/s "
            f"= {100 * tps * flops / 1e9 / peaks['fma']:3.0f}% of the f32 FMA peak")
    if ratios:
        line += (f" | llama.cpp {PP / float(np.median(theirs)):6.1f} t/s, ratio {float(np.median(ratios)):.2f}x "
                 f"(per alternation: {', '.join(f'{r:.2f}' for r in ratios)})")
    benchmark.extra_info.update({"pp_tokens_per_s": PP / float(np.median(ours))})
    print(line)


@pytest.mark.parametrize("dtype", ["F16", "Q4_K_M"])
@pytest.mark.parametrize("arch", ["rwkv6", "rwkv7"])
def test_batched_decode(benchmark, n_threads, arch, dtype):
    with rwkvfast.Model(model_for(arch, dtype), n_threads=n_threads) as m:
        rates = {}
        for B in (1, 2, 4, 8, 16):
            states = [m.new_state() for _ in range(B)]
            toks = list(range(1, B + 1))
            m.forward_batch(toks, states)
            t0 = time.perf_counter()
            for _ in range(4):
                m.forward_batch(toks, states)
            rates[B] = 4 * B / (time.perf_counter() - t0)
        benchmark.pedantic(m.forward_batch, args=([1], [m.new_state()]), rounds=1)
    benchmark.extra_info.update({f"B{b}_tokens_per_s": r for b, r in rates.items()})
    print(f"\n{arch} {dtype:6s} batched decode, {n_threads} threads: " +
          ", ".join(f"B={b} {r:.1f} t/s ({r / rates[1]:.2f}x)" for b, r in rates.items()))
