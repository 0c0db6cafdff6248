"""Tokenizer vs the official rwkv package's TRIE_TOKENIZER (fixture tables)."""
from __future__ import annotations

import json
import random

import pytest

import rwkvfast
from rwkvfast.gguf_writer import write_gguf
from rwkvfast.testing import read_gguf

from conftest import fixture_path


@pytest.fixture(scope="module")
def world():
    return rwkvfast.Tokenizer(fixture_path("vocab/rwkv-world-65536-vocab.gguf"))


def _cases(rel):
    return list(json.loads(fixture_path(rel).read_text()).items())


def test_full_vocab_matches_official_tokenizer(world):
    cases = _cases("vocab/tokenizer_cases.json")
    assert len(cases) == 41
    assert world.vocab_size == 65536
    for text, ids in cases:
        assert world.encode(text) == ids, repr(text)
        assert world.decode(ids) == text, repr(text)


def test_tiny_vocab_matches_official_tokenizer():
    tok = rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")).tokenizer
    assert isinstance(tok, rwkvfast.Tokenizer)
    for text, ids in _cases("tiny/ref/tokenizer_rwkv.json"):
        assert tok.encode(text) == ids, repr(text)
    ref = json.loads(fixture_path("tiny/tokens.json").read_text())
    assert tok.encode(ref["text"])[:64] == ref["ids"]


def test_special_looking_text_is_plain_text(world):
    # the official tokenizer never produces <s> (0) or the [PAD] ids from text
    assert world.encode("<s>") == [61, 116, 63]
    assert world.encode("[PAD65530]") == [92, 6404, 685, 673, 49, 94]
    assert world.piece(0) == b"" and world.piece(65530) == b""
    assert world.piece(11) == b"\n" and world.piece(261) == b"\n\n"
    assert world.piece(-1) == b"" and world.piece(10**6) == b""


def test_round_trip_random_text(world):
    rng = random.Random(7)
    alphabet = "abc xyz\n\n\t你好世界🙂é—'\"\\{}()0123456789"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert world.decode(world.encode(text)) == text


def test_large_text_round_trips(world):
    text = ("RWKV is an RNN with transformer-level performance. 中文测试，表情🙂🚀。\n\n"
            "def f(x):\n    return x ** 2  # code\n") * 8000  # ~1 MB of UTF-8
    assert len(text.encode()) > 900_000
    ids = world.encode(text)
    assert world.decode(ids) == text
    assert len(ids) < len(text.encode())


def test_stream_decoder_never_splits_characters(world):
    text = "a🙂b你好\n\n🚀"
    ids = []
    for ch in text:  # force one token per byte so characters straddle tokens
        ids += [b + 1 for b in ch.encode()]  # ids 1..256 are the single bytes
    d = world.decoder()
    pieces = [d.feed(i) for i in ids]
    assert "".join(pieces) + d.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[1:5] == ["", "", "", "🙂"]


def test_stream_decoder_flushes_incomplete_as_replacement(world):
    d = world.decoder()
    assert d.feed(0xF0 + 1) == ""  # first byte of a 4-byte sequence
    assert d.flush() == "\ufffd"


def test_tokenizer_from_file_without_rwkv_vocab(tmp_path):
    path = tmp_path / "gpt2.gguf"
    write_gguf(path, {"general.architecture": "llama", "tokenizer.ggml.model": "gpt2",
                      "tokenizer.ggml.tokens": ["a", "b"]}, [])
    with pytest.raises(ValueError, match="gpt2"):
        rwkvfast.Tokenizer(path)
    path2 = tmp_path / "none.gguf"
    write_gguf(path2, {"general.architecture": "rwkv6"}, [])
    with pytest.raises(ValueError, match="tokenizer.ggml.model"):
        rwkvfast.Tokenizer(path2)


def test_malformed_escape_is_refused(tmp_path):
    g = read_gguf(fixture_path("tiny/gguf/tiny-F32.gguf"))
    meta = dict(g.metadata)
    tokens = list(meta["tokenizer.ggml.tokens"].value)
    tokens[300] = "ab\\x4"  # truncated hex escape
    from rwkvfast.gguf_writer import Array, GGUFValueType
    meta["tokenizer.ggml.tokens"] = Array(GGUFValueType.STRING, tokens)
    path = tmp_path / "bad.gguf"
    write_gguf(path, meta, [(t.name, t.type, t.ne, t.data) for t in g.tensors])
    with pytest.raises(ValueError, match="300"):
        rwkvfast.Tokenizer(path)
