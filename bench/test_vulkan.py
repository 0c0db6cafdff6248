"""Vulkan (-ngl): prompt and generation speed of the 1.6B-shaped RWKV-6 and 1.5B-shaped RWKV-7
models on the GPU, side by side with the CPU in one run, as ratios.

Runs only on a device that is a GPU: lavapipe (Mesa's Vulkan on the CPU, which the tests
use) computes correctly but its speed says nothing. For each type: pp (one forward of
`PROMPT` tokens) and tg (tokens one at a time), all layers and the head on the device
(-ngl 99), then the same on the CPU with the benchmark's threads; and the decode's GB/s
of weights read per token, to compare with the card's memory bandwidth.

    pytest bench/test_vulkan.py --benchmark-only -s
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import rwkvfast
from rwkvfast import _core

from conftest import model_for
from test_decode import weight_bytes_per_token

TYPES = ["Q8_0", "Q4_K_M", "F16"]
PROMPT, GEN = 512, 64


def _gpu_device():
    if not _core.vk_built():
        return None
    try:
        devices = _core.vk_devices()
    except RuntimeError:
        return None
    return next((i for i, d in enumerate(devices) if d["type"] in ("discrete", "integrated")), None)


def _speeds(m: rwkvfast.Model) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, m.n_vocab, PROMPT).tolist()
    m.forward(ids[:16], m.new_state())  # warm-up: pipelines, programs, page-in
    s = m.new_state()
    t0 = time.perf_counter()
    logits = m.forward(ids, s)
    pp = PROMPT / (time.perf_counter() - t0)
    tok = int(np.argmax(logits))
    m.forward(tok, s)
    t0 = time.perf_counter()
    for _ in range(GEN):
        tok = int(np.argmax(m.forward(tok, s)))
    return pp, GEN / (time.perf_counter() - t0)


@pytest.mark.parametrize("dtype", TYPES)
@pytest.mark.parametrize("arch", ["rwkv6", "rwkv7"])
def test_gpu_against_cpu(benchmark, arch, dtype, n_threads):
    dev = _gpu_device()
    if dev is None:
        pytest.skip("no Vulkan GPU here (lavapipe's speed is not a GPU's)")
    path = model_for(arch, dtype)
    with rwkvfast.Model(path, n_gpu_layers=99, device=dev) as m:
        name = m.gpu["device"]
        gpu_pp, gpu_tg = benchmark.pedantic(_speeds, args=(m,), rounds=1, iterations=1)
        gbs = weight_bytes_per_token(m) * gpu_tg / 1e9
    with rwkvfast.Model(path, n_threads=n_threads) as m:
        cpu_pp, cpu_tg = _speeds(m)
    print(f"\n  {arch} {dtype} on {name}: pp{PROMPT} {gpu_pp:.1f} t/s ({gpu_pp / cpu_pp:.1f}x the CPU's {cpu_pp:.1f}), "
          f"tg {gpu_tg:.1f} t/s ({gpu_tg / cpu_tg:.1f}x the CPU's {cpu_tg:.1f}; {gbs:.0f} GB/s of weights)")
    benchmark.extra_info.update(gpu_pp=gpu_pp, gpu_tg=gpu_tg, cpu_pp=cpu_pp, cpu_tg=cpu_tg, weights_gbs=gbs)
