"""The server's request handling, without generation: parsing a chat of many messages with
the state cache on (it was quadratic: 109 s of CPU for 32,000 messages), and fingerprinting a
model file for the cache directory (once per file: GB/s against a plain read)."""
from __future__ import annotations

import time

import pytest

import rwkvfast
from rwkvfast.fingerprint import model_fingerprint
from rwkvfast.server.app import App, ServerConfig
from rwkvfast.server.engine import Engine
from rwkvfast.server.state_cache import StateCache
from rwkvfast.testing import make_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_model(tmp_path_factory.mktemp("srv") / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32)
    with rwkvfast.Model(path, n_threads=1) as m:
        yield m


@pytest.mark.parametrize("n", [4000, 32000])
@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cache"])
def test_parse_a_chat_of_n_messages(benchmark, tiny, n, cached):
    eng = Engine(tiny, cache=StateCache(tiny, 64 << 20) if cached else None)
    app = App(tiny, eng, ServerConfig(max_tokens_per_request=0))
    body = {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi there"} for i in range(n)],
            "max_tokens": 1}

    def parse():
        app._chat(body).job.cancel()
        eng._waiting.clear()

    benchmark.pedantic(parse, rounds=3, iterations=1)
    per_msg = benchmark.stats.stats.median / n
    benchmark.extra_info["us_per_message"] = per_msg * 1e6
    print(f"\n{n} messages, cache {'on' if cached else 'off'}: {benchmark.stats.stats.median:.3f} s "
          f"({per_msg * 1e6:.1f} us a message)")


def test_fingerprint_against_a_plain_read(benchmark, tmp_path_factory):
    from conftest import model_1b6

    path = model_1b6("Q8_0")
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass
    read_s = time.perf_counter() - t0
    fp = benchmark.pedantic(model_fingerprint, args=(path,), rounds=2, iterations=1)
    gb = path.stat().st_size / 1e9
    s = benchmark.stats.stats.median
    benchmark.extra_info.update(GB_per_s=gb / s, read_GB_per_s=gb / read_s)
    print(f"\nfingerprint of {gb:.2f} GB: {gb / s:.2f} GB/s (a plain read: {gb / read_s:.2f} GB/s) {fp[:24]}...")
