"""Decode beside a busy process: tokens/s quiet and beside one `yes > /dev/null`, with the
default thread count (which gives up a thread while another process keeps a core busy,
rwkvfast/threads.py) and with every core forced (-t), side by side in one run.

    pytest bench/test_busy.py --benchmark-only -s
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

import rwkvfast

from conftest import model_for

TOKENS = 48


def _decode_rate(m: rwkvfast.Model) -> float:
    s = m.new_state()
    m.forward([1, 2, 3], s)
    end = time.perf_counter() + 1.0  # a second: the governor's first samples (0.25 s apart)
    while time.perf_counter() < end:
        m.forward(5, s)
    t0 = time.perf_counter()
    for t in range(TOKENS):
        m.forward(t + 20, s)
    return TOKENS / (time.perf_counter() - t0)


def _rates(path, n_threads):
    with rwkvfast.Model(path, n_threads=n_threads) as m:
        quiet = _decode_rate(m)
        hog = subprocess.Popen(["sh", "-c", "exec yes > /dev/null"])
        try:
            time.sleep(0.5)
            busy = _decode_rate(m)
        finally:
            hog.kill()
            hog.wait()
    return quiet, busy


@pytest.mark.parametrize("dtype", ["F16", "Q4_K_M"])
@pytest.mark.parametrize("arch", ["rwkv6", "rwkv7"])
def test_decode_beside_a_busy_process(benchmark, arch, dtype):
    path = model_for(arch, dtype)
    cores = len(os.sched_getaffinity(0))
    auto_q, auto_b = benchmark.pedantic(_rates, args=(path, None), rounds=1, iterations=1)
    all_q, all_b = _rates(path, cores)
    print(f"\n{arch} {dtype} decode beside `yes`: default threads {auto_b:.2f} t/s = {100 * auto_b / auto_q:.0f}% "
          f"of quiet ({auto_q:.2f}); -t {cores} {all_b:.2f} t/s = {100 * all_b / all_q:.0f}% of quiet ({all_q:.2f})")
    benchmark.extra_info.update(default_quiet=auto_q, default_busy=auto_b, all_cores_quiet=all_q, all_cores_busy=all_b)
