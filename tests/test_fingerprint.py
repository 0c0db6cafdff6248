"""A model file's content fingerprint (rwkvfast/fingerprint.py): the bytes decide, not the name;
the memo saves the hashing and never gives a stale answer."""
from __future__ import annotations

import hashlib
import json
import os

from rwkvfast import fingerprint as fpmod
from rwkvfast.fingerprint import model_fingerprint


def _expected(data: bytes) -> str:
    """The scheme, computed independently: SHA-256 of the size and each 64 MiB piece's SHA-256."""
    top = hashlib.sha256(len(data).to_bytes(8, "little"))
    for i in range(0, len(data), 64 << 20):
        top.update(hashlib.sha256(data[i:i + (64 << 20)]).digest())
    return "sha256t:" + top.hexdigest()


def test_the_bytes_decide_not_the_name(tmp_path):
    data = os.urandom(1 << 20)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.gguf").write_bytes(data)
    (tmp_path / "m.gguf").write_bytes(data)
    changed = bytearray(data)
    changed[-1] ^= 1  # one bit of the last weight
    (tmp_path / "b.gguf").write_bytes(changed)
    fp = model_fingerprint(tmp_path / "m.gguf")
    assert fp == model_fingerprint(tmp_path / "a" / "m.gguf") == _expected(data)
    assert model_fingerprint(tmp_path / "b.gguf") == _expected(bytes(changed)) != fp


def test_a_file_of_several_pieces(tmp_path):
    data = os.urandom(1 << 16) * 2100  # 131 MiB: three pieces, the last one partial
    (tmp_path / "big").write_bytes(data)
    assert model_fingerprint(tmp_path / "big") == _expected(data)


def test_the_memo_is_used_while_the_file_is_unchanged_and_survives_garbage(tmp_path, monkeypatch):
    path, memo = tmp_path / "m.gguf", tmp_path / "memo"
    path.write_bytes(b"weights" * 1000)
    calls = []
    real = fpmod._hash_file
    monkeypatch.setattr(fpmod, "_hash_file", lambda p: calls.append(p) or real(p))
    fp = model_fingerprint(path, memo)
    assert model_fingerprint(path, memo) == fp and len(calls) == 1
    assert json.loads(memo.read_text())[os.path.realpath(path)]["fingerprint"] == fp
    path.write_bytes(b"WEIGHTS" * 1000)  # same size, new content: the times and inode tell
    assert model_fingerprint(path, memo) != fp and len(calls) == 2
    memo.write_text("[not a memo")
    assert model_fingerprint(path, memo) == _expected(b"WEIGHTS" * 1000) and len(calls) == 3
    assert isinstance(json.loads(memo.read_text()), dict)  # rewritten whole
