"""Single-token decode speed on a 1.6B-shaped model: tokens/s and weight GB/s.

Decode is memory-bound: each token reads every weight once, so GB/s = bytes of
weights read per token / time per token, to compare with the machine's bandwidth.
If llama-cpp-python is installed, llama.cpp runs the same GGUF with the same
threads in the same test, interleaved, and the ratio is printed.

    pytest bench/test_decode.py --benchmark-only -s [--threads 2]
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import rwkvfast

from conftest import model_1b6


def weight_bytes_per_token(model: rwkvfast.Model) -> int:
    """Every tensor is read once per token, except the embedding (one row)."""
    meta = model.metadata
    emb = next(t for t in meta["tensors"] if t["name"] == "token_embd.weight")
    row = emb["nbytes"] // emb["shape"][1]
    return sum(t["nbytes"] for t in meta["tensors"]) - emb["nbytes"] + row


@pytest.mark.parametrize("dtype,use_mmap", [("F16", True), ("F16", False), ("BF16", True)])
def test_decode_1b6(benchmark, n_threads, dtype, use_mmap):
    path = model_1b6(dtype)
    with rwkvfast.Model(path, n_threads=n_threads, use_mmap=use_mmap) as m:
        state = m.new_state()
        m.forward([1, 2, 3], state)
        token = [5]

        def step():
            token[0] = int(m.forward(token[0], state).argmax())

        benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=2)
        t = benchmark.stats.stats.median
        gb = weight_bytes_per_token(m) / t / 1e9
        benchmark.extra_info.update({"tokens_per_s": 1 / t, "weights_GB_per_s": gb, "threads": n_threads})
        how = "mmap" if use_mmap else "loaded"
        print(f"\nrwkvfast {dtype} ({how}) 1.6B-shape decode, {n_threads} threads: {1 / t:.2f} t/s, "
              f"{gb:.1f} GB/s of weights")


def _llama_cpp():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    return llama_cpp


def test_decode_vs_llama_cpp(benchmark, n_threads):
    """Same GGUF, same threads, interleaved rounds; prints rwkvfast / llama.cpp speed.
    (The benchmark fixture times one interleaved pair, so --benchmark-only runs it too.)"""
    llama_cpp = _llama_cpp()
    if llama_cpp is None:
        pytest.skip("llama-cpp-python is not installed")
    path = model_1b6("F16")
    llm = llama_cpp.Llama(model_path=str(path), n_threads=n_threads, n_threads_batch=n_threads,
                          n_ctx=256, n_batch=64, verbose=False)
    m = rwkvfast.Model(path, n_threads=n_threads)
    state = m.new_state()
    m.forward([1, 2, 3], state)
    llm.eval([1, 2, 3])
    ours, theirs = [], []
    toks = [5, 5]

    def pair():
        t0 = time.perf_counter()
        toks[0] = int(m.forward(toks[0], state).argmax())
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        llm.eval([toks[1]])
        theirs.append(time.perf_counter() - t0)
        toks[1] = int(np.argmax(llm.scores[llm.n_tokens - 1]))

    benchmark.pedantic(pair, rounds=14, iterations=1, warmup_rounds=2)
    a, b = float(np.median(ours[2:])), float(np.median(theirs[2:]))
    benchmark.extra_info.update({"rwkvfast_tps": 1 / a, "llama_cpp_tps": 1 / b, "ratio": b / a})
    gbps = weight_bytes_per_token(m) / 1e9
    print(f"\n1.6B-shape F16 decode, {n_threads} threads: rwkvfast {1 / a:.2f} t/s ({gbps / a:.1f} GB/s), "
          f"llama.cpp {1 / b:.2f} t/s ({gbps / b:.1f} GB/s), ratio {b / a:.2f}x")
    m.close()
    assert a > 0 and b > 0
