"""Tokenizer throughput: encoding ~1 MB of mixed English/Chinese/emoji/code text."""
from __future__ import annotations

from pathlib import Path

import rwkvfast

VOCAB = Path(__file__).resolve().parent.parent / "tests" / "data" / "vocab" / "rwkv-world-65536-vocab.gguf"
TEXT = ("RWKV is an RNN with transformer-level performance. 中文测试，表情🙂🚀。\n\n"
        "def f(x):\n    return x ** 2  # code\n") * 8000


def test_encode_1mb(benchmark):
    tok = rwkvfast.Tokenizer(VOCAB)
    ids = benchmark(tok.encode, TEXT)
    mb = len(TEXT.encode()) / 1e6
    benchmark.extra_info["MB_per_s"] = mb / benchmark.stats.stats.median
    print(f"\nencode {mb:.2f} MB -> {len(ids)} tokens: {mb / benchmark.stats.stats.median:.0f} MB/s")
