"""Single-token decode speed on 1.6B-shaped RWKV-6 and 1.5B-shaped RWKV-7 models: tokens/s, GB/s of
weights, % of roofline; for RWKV-7 also the WKV7 step's share of a token.

Decode is memory-bound: each token reads every weight once, so GB/s = bytes of weights
read per token / time per token, compared with a streaming read of the same threads
probed between rounds of tokens (the roofline; this machine's bandwidth drifts). Quantized models are made from the F16 one by
our own quantizer. If llama-cpp-python is installed, llama.cpp runs the same GGUF with
the same threads (in a child process, so a crash there cannot take the run down) between
rwkvfast measurements (three alternations), and the median ratio is printed for both of our modes: llama.cpp maps
the file by default, rwkvfast reads it into huge pages whenever it fits in memory.

    pytest bench/test_decode.py --benchmark-only -s [--threads 2]
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rwkvfast

from conftest import model_for

TYPES = ["F16", "BF16", "Q8_0", "Q5_1", "Q4_K_M", "Q5_K_M"]
LLAMA_ALTERNATIONS = 3


def weight_bytes_per_token(model: rwkvfast.Model) -> int:
    """Every tensor is read once per token, except the embedding (one row)."""
    meta = model.metadata
    emb = next(t for t in meta["tensors"] if t["name"] == "token_embd.weight")
    row = emb["nbytes"] // emb["shape"][1]
    return sum(t["nbytes"] for t in meta["tensors"]) - emb["nbytes"] + row


_LLAMA = textwrap.dedent("""
    import json, sys, time, numpy as np, llama_cpp
    llm = llama_cpp.Llama(model_path=sys.argv[1], n_threads=int(sys.argv[2]), n_threads_batch=int(sys.argv[2]),
                          n_ctx=256, n_batch=64, verbose=False)
    llm.eval([1, 2, 3])
    tok, times = 5, []
    for _ in range(14):
        t0 = time.perf_counter(); llm.eval([tok]); times.append(time.perf_counter() - t0)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    print(json.dumps({"s_per_token": float(np.median(times[2:]))}))
""")


def _llama_cpp(path, n_threads) -> float | None:
    try:
        import llama_cpp  # noqa: F401  (only whether it is installed)
    except ImportError:
        return None
    res = subprocess.run([sys.executable, "-c", _LLAMA, str(path), str(n_threads)], capture_output=True, text=True)
    if res.returncode != 0:
        print(f"\n  llama.cpp failed on {path.name} (exit {res.returncode})")
        return None
    return json.loads(res.stdout)["s_per_token"]


def _wkv7_seconds(m: rwkvfast.Model) -> float:
    """The WKV7 recurrence of one token, every head of every layer, on one thread with the
    active kernel (an upper bound: the engine spreads the heads over its threads, and each call
    here crosses from Python)."""
    from rwkvfast import _core
    i = m.info
    N = i["head_size"]
    rng = np.random.default_rng(0)
    r, w, k, v, a, b = (rng.random(N, dtype=np.float32) for _ in range(6))
    S = np.zeros((N, N), np.float32)
    level, calls = _core.cpu_level(), i["n_layer"] * i["n_head"]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            _core.wkv7_at_level(level, r, w, k, v, a, b, S)
        best = min(best, time.perf_counter() - t0)
    return best


def _rounds(m: rwkvfast.Model, roofline, nbytes: int, rounds: int = 6, steps: int = 8):
    """Decode `rounds` x `steps` tokens with a roofline probe between rounds: the median
    seconds per token and the median fraction of the bandwidth beside each round."""
    state = m.new_state()
    m.forward([1, 2, 3], state)
    tok, bw, times, fractions = 5, [roofline.probe()], [], []
    for _ in range(rounds):
        ts = []
        for _ in range(steps):
            t0 = time.perf_counter()
            tok = int(m.forward(tok, state).argmax())
            ts.append(time.perf_counter() - t0)
        bw.append(roofline.probe())
        t = float(np.median(ts[1:]))
        times += ts[1:]
        fractions.append(nbytes / t / 1e9 / ((bw[-2] + bw[-1]) / 2))
    return float(np.median(times)), float(np.median(fractions)), float(np.median(bw))


@pytest.mark.parametrize("use_mmap", [True, False], ids=["mmap", "loaded"])
@pytest.mark.parametrize("dtype", TYPES)
@pytest.mark.parametrize("arch", ["rwkv6", "rwkv7"])
def test_decode(benchmark, roofline, n_threads, arch, dtype, use_mmap):
    path = model_for(arch, dtype)
    shape = "1.6B" if arch == "rwkv6" else "1.5B"
    with rwkvfast.Model(path, n_threads=n_threads, use_mmap=use_mmap) as m:
        nbytes = weight_bytes_per_token(m)
        t, frac, roof = _rounds(m, roofline, nbytes)
        state = m.new_state()
        m.forward([1, 2, 3], state)
        token = [5]

        def step():
            token[0] = int(m.forward(token[0], state).argmax())

        benchmark.pedantic(step, rounds=4, iterations=1, warmup_rounds=1)
        gb = nbytes / t / 1e9
        line = (f"\n{arch} {dtype:6s} ({'mmap' if use_mmap else 'loaded'}) {shape}-shape decode, {n_threads} threads: "
                f"{1 / t:5.2f} t/s, {gb:4.1f} GB/s = {100 * frac:3.0f}% of the roofline beside it ({roof:.1f} GB/s)")
        info = {"tokens_per_s": 1 / t, "weights_GB_per_s": gb, "roofline_GB_per_s": roof,
                "roofline_fraction": frac, "threads": n_threads}
        if arch == "rwkv7":
            wkv = _wkv7_seconds(m)
            line += f" | WKV7 {wkv * 1e3:.2f} ms of it ({100 * wkv / t:.1f}%)"
            info["wkv7_fraction"] = wkv / t
        # llama.cpp maps the file (its default); we compare both of our modes with it, since
        # ours reads the file into huge pages whenever it fits in memory. Three alternations
        # of theirs and ours, the ratio taken per alternation: the bandwidth drifts too much
        # between minutes for one pair of runs to mean anything.
        ratios, theirs_all = [], []
        for _ in range(LLAMA_ALTERNATIONS):
            theirs = _llama_cpp(path, n_threads)
            if theirs is None:
                break
            ours, _, _ = _rounds(m, roofline, nbytes, rounds=2)
            ratios.append(theirs / ours)
            theirs_all.append(theirs)
        if ratios:
            theirs, ratio = float(np.median(theirs_all)), float(np.median(ratios))
            line += (f" | llama.cpp {1 / theirs:5.2f} t/s ({nbytes / theirs / 1e9:4.1f} GB/s), "
                     f"ratio {ratio:.2f}x (per alternation: {', '.join(f'{r:.2f}' for r in ratios)})")
            info.update({"llama_cpp_tokens_per_s": 1 / theirs, "ratio": ratio, "ratios": ratios})
        benchmark.extra_info.update(info)
        print(line)
