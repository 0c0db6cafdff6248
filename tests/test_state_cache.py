"""The prompt-state cache: longest-prefix hits that continue exactly like a fresh run, the byte
bound, and a directory that survives a restart."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast
from rwkvfast.server.state_cache import StateCache
from rwkvfast.testing import make_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = make_model(tmp_path_factory.mktemp("sc") / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32)
    with rwkvfast.Model(path, n_threads=1) as m:
        yield m


def _run(m, ids, state=None):
    state = state or m.new_state()
    return state, m.forward(ids, state)


def test_a_prefix_hit_continues_exactly_like_a_fresh_run(model):
    cache = StateCache(model, 64 << 20)
    turn1 = [5, 6, 7, 8, 9]
    s, logits = _run(model, turn1)
    cache.insert(turn1, s, logits)
    turn2 = turn1 + [10, 11, 12]
    hit = cache.lookup(turn2)
    assert hit is not None and hit.n == len(turn1)
    np.testing.assert_array_equal(hit.logits, logits)
    cont = model.forward(turn2[hit.n:], hit.state)
    _, fresh = _run(model, turn2)
    np.testing.assert_array_equal(cont, fresh)
    assert cache.stats()["hits"] == 1 and cache.stats()["tokens_reused"] == len(turn1)


def test_the_whole_prompt_cached_needs_no_processing_and_the_cache_is_not_changed_by_the_caller(model):
    cache = StateCache(model, 64 << 20)
    ids = [3, 1, 4, 1, 5, 9]
    s, logits = _run(model, ids)
    cache.insert(ids, s, logits)
    s.reset()  # the caller's state is not the cached one
    first = cache.lookup(ids)
    assert first.n == len(ids)
    model.forward([2, 6], first.state)  # advancing a hit leaves the entry as it was
    again = cache.lookup(ids)
    np.testing.assert_array_equal(again.state.wkv, _run(model, ids)[0].wkv)


def test_the_longest_of_several_prefixes_wins_and_a_different_prompt_misses(model):
    cache = StateCache(model, 64 << 20)
    for ids in ([1, 2], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6]):
        cache.insert(ids, *_run(model, ids))
    assert cache.lookup([1, 2, 3, 4, 5, 7]).n == 4
    assert cache.lookup([1, 2, 9]).n == 2
    assert cache.lookup([2, 1]) is None
    assert cache.lookup([]) is None
    assert cache.stats()["misses"] == 2


def test_memory_stays_within_the_budget_least_recently_used_first(model):
    cache = StateCache(model, 0)
    cache.insert([1], *_run(model, [1]))
    assert len(cache) == 0  # a budget below one entry caches nothing
    cache = StateCache(model, 2 * (StateCache(model, 0).entry_bytes + 4))  # two states and their token ids
    for ids in ([1], [2], [3]):
        cache.insert(ids, *_run(model, ids))
        if ids == [2]:
            assert cache.lookup([1]).n == 1  # [1] is now the most recent, so [2] goes next
    assert len(cache) == 2 and cache.bytes <= cache.max_bytes
    assert cache.lookup([2]) is None and cache.lookup([1]).n == 1 and cache.lookup([3]).n == 1
    with pytest.raises(ValueError, match=">= 0"):
        StateCache(model, -1)


def test_a_cache_directory_survives_a_restart(model, tmp_path):
    ids = [7, 8, 9, 10]
    s, logits = _run(model, ids)
    StateCache(model, 64 << 20, tmp_path / "cache").insert(ids, s, logits)
    assert not list((tmp_path / "cache").glob("*.tmp"))
    restarted = StateCache(model, 64 << 20, tmp_path / "cache")
    assert len(restarted) == 1 and restarted.bytes == 4 * len(ids)  # only the ids: the state is read on first use
    hit = restarted.lookup(ids + [11])
    assert hit.n == len(ids)
    np.testing.assert_array_equal(hit.logits, logits)
    np.testing.assert_array_equal(model.forward([11], hit.state), _run(model, ids + [11])[1])


def test_a_disk_entry_evicted_from_memory_comes_back(model, tmp_path):
    one = StateCache(model, 0).entry_bytes
    cache = StateCache(model, one + 2 * 12, tmp_path)
    a, b = [1, 2, 3], [4, 5, 6]
    cache.insert(a, *_run(model, a))
    cache.insert(b, *_run(model, b))
    assert len(cache) == 2 and cache.bytes == one + 2 * 12  # a's state left memory, not the disk
    np.testing.assert_array_equal(cache.lookup(a).logits, _run(model, a)[1])


def test_broken_or_foreign_files_in_the_directory_are_ignored(model, tmp_path):
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"model": "another.gguf:1", "tokens": [1, 2]}')
    ids = [9, 9, 9]
    cache = StateCache(model, 64 << 20, tmp_path)
    cache.insert(ids, *_run(model, ids))
    (next(tmp_path.glob("*.state"))).write_bytes(b"GGUF broken")
    restarted = StateCache(model, 64 << 20, tmp_path)
    assert len(restarted) == 1
    assert restarted.lookup(ids) is None and len(restarted) == 0  # unreadable: dropped, not raised
    assert (tmp_path / "junk.json").read_text() == "{not json"  # nothing of the user's is touched


def test_the_directory_stays_within_its_own_budget_least_recently_used_first(model, tmp_path):
    probe = StateCache(model, 64 << 20, tmp_path / "probe")
    probe.insert([1, 1, 1], *_run(model, [1, 1, 1]))
    one = probe.disk_bytes  # an entry's files: its state, logits and index, as written
    assert one > probe.entry_bytes
    d = tmp_path / "c"
    cache = StateCache(model, 64 << 20, d, max_disk_bytes=2 * one)
    a, b, c = [1, 2, 3], [4, 5, 6], [7, 8, 9]
    cache.insert(a, *_run(model, a))
    cache.insert(b, *_run(model, b))
    assert cache.lookup(a).n == 3  # a is now more recent than b
    cache.insert(c, *_run(model, c))
    assert len(cache) == 2 and cache.disk_bytes == 2 * one and len(list(d.glob("*.state"))) == 2
    assert cache.lookup(b) is None and cache.lookup(a).n == 3 and cache.lookup(c).n == 3
    smaller = StateCache(model, 64 << 20, d, max_disk_bytes=one)  # a restart with less room
    assert len(smaller) == 1 and len(list(d.glob("*.json"))) == 1
    assert smaller.lookup(c).n == 3  # the most recently used of the last run is what stays


def test_continuations_are_what_followed_a_prefix_most_recent_first(model):
    cache = StateCache(model, 64 << 20)
    for ids in ([1, 2, 3], [1, 2, 3, 4, 5], [1, 2, 9], [7, 2, 3, 4]):
        cache.insert(ids, *_run(model, ids))
    assert cache.continuations([1, 2]) == [(9,), (3, 4, 5), (3,)]
    assert cache.continuations([1, 2, 3]) == [(4, 5)]
    assert cache.continuations([2, 3]) == [] and cache.continuations([1, 2, 3, 4, 5]) == []


def test_two_models_of_the_same_name_and_size_never_share_entries(tmp_path):
    """Defect: entries were keyed by the file's name and size, so a fine-tune (same shapes,
    other weights) answered with the first model's cached states. Through the server, at
    temperature 0, model B must answer as B does without any cache."""
    from starlette.testclient import TestClient

    from rwkvfast.server.app import App, ServerConfig
    from rwkvfast.server.engine import Engine

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_model(tmp_path / "a" / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32, seed=1)
    b = make_model(tmp_path / "b" / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32, seed=2)
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    shared = tmp_path / "cache"
    body = {"messages": [{"role": "user", "content": "Tell me about rivers"}], "max_tokens": 6, "temperature": 0}

    def ask(path, cache_dir):
        with rwkvfast.Model(path, n_threads=1) as m:
            eng = Engine(m, cache=StateCache(m, 64 << 20, cache_dir) if cache_dir else None).start()
            try:
                return TestClient(App(m, eng, ServerConfig())).post("/v1/chat/completions", json=body).json()
            finally:
                eng.close()

    ask(a, shared)  # A fills the shared directory
    alone = ask(b, None)
    for _ in range(3):
        got = ask(b, shared)
        assert got["choices"][0]["message"] == alone["choices"][0]["message"]
    assert got["timings"]["cache_n"] > 0  # B's own entries, from B's earlier runs, are used


def test_every_read_from_disk_checks_the_model_the_tokens_and_the_values(model, tmp_path):
    import json

    ids = [4, 5, 6]
    state, logits = _run(model, ids)
    for tamper in ("model", "tokens", "state", "logits"):
        d = tmp_path / tamper
        StateCache(model, 64 << 20, d).insert(ids, state, logits)
        cache = StateCache(model, 64 << 20, d)  # indexed, not yet read
        assert len(cache) == 1
        index = next(d.glob("*.json"))
        meta = json.loads(index.read_text())
        if tamper == "model":
            meta["model"] = "sha256t:" + "0" * 64
            index.write_text(json.dumps(meta))
        elif tamper == "tokens":
            meta["tokens"] = [4, 5, 7]
            index.write_text(json.dumps(meta))
        elif tamper == "state":  # another valid state file: the digest tells
            other, _ = _run(model, [9, 9])
            other.save(index.with_suffix(".state"))
        else:
            raw = bytearray(index.with_suffix(".logits").read_bytes())
            raw[0] ^= 1
            index.with_suffix(".logits").write_bytes(bytes(raw))
        assert cache.lookup(ids) is None, tamper
        assert cache.stats()["rejected"] == 1 and len(cache) == 0


def test_the_fingerprint_is_remembered_beside_the_cache_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    import os

    from rwkvfast import fingerprint as fpmod

    path = make_model(tmp_path / "m.gguf", n_layer=1, n_embd=64, vocab=300, head_size=32, seed=3)
    calls = []
    real = fpmod._hash_file
    monkeypatch.setattr(fpmod, "_hash_file", lambda p: calls.append(p) or real(p))
    with rwkvfast.Model(path, n_threads=1) as m:
        first = StateCache(m, 1 << 20, tmp_path / "c").fingerprint
        assert StateCache(m, 1 << 20, tmp_path / "c").fingerprint == first and len(calls) == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: hashed again, same answer
    with rwkvfast.Model(path, n_threads=1) as m:
        assert StateCache(m, 1 << 20, tmp_path / "c").fingerprint == first and len(calls) == 2


def test_what_a_crash_left_in_the_directory_is_removed_and_the_rest_counted(model, tmp_path):
    import os
    import subprocess
    import sys

    ids = [1, 2, 3]
    cache = StateCache(model, 64 << 20, tmp_path)
    cache.insert(ids, *_run(model, ids))
    one = cache.disk_bytes
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".0123456789abcdef0123456789abcdef.state.{dead}-0badc0de.tmp"
    stale.write_bytes(b"\0" * (8 << 20))  # what a kill -9 in State.save leaves
    live = tmp_path / f".fedcba9876543210fedcba9876543210.state.{os.getpid()}-0badc0de.tmp"
    live.write_bytes(b"x")  # a writer still running (this process): not to be touched
    orphan = tmp_path / "00112233445566778899aabbccddeeff.state"
    orphan.write_bytes(b"GGUF half an entry")  # its index never written
    fresh = tmp_path / "ffeeddccbbaa99887766554433221100.logits"
    fresh.write_bytes(b"\0" * 16)  # maybe a concurrent writer's: too young to judge
    old = os.stat(orphan).st_mtime - 3600
    os.utime(orphan, (old, old))
    legacy = tmp_path / "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json"  # version 1's index, keyed by name and size
    legacy.write_text(json_dumps({"model": f"m.gguf:{os.path.getsize(model.path)}", "tokens": [1]}))
    user = tmp_path / "notes.txt"
    user.write_text("mine")
    restarted = StateCache(model, 64 << 20, tmp_path)
    assert not stale.exists() and not orphan.exists() and not legacy.exists()
    assert live.exists() and fresh.exists() and user.read_text() == "mine"
    assert len(restarted) == 1 and restarted.disk_bytes == one
    assert restarted.lookup(ids).n == 3


def json_dumps(obj) -> str:
    import json
    return json.dumps(obj)


def test_continuations_of_a_growing_chat_read_each_token_once(model):
    """The walk behind chat parsing: over a conversation of many turns, the prefix is sliced
    once in total (linear), however many cached entries extend it."""
    from rwkvfast.server.state_cache import PrefixWalk

    class Counting(list):
        sliced = 0

        def __getitem__(self, i):
            out = super().__getitem__(i)
            if isinstance(i, slice):
                Counting.sliced += len(out)
            return out

    cache = StateCache(model, 64 << 20)
    turn = [5, 6, 7, 8]
    convo = turn * 300
    for n in (40, 400, 1200):
        cache.insert(convo[:n], *_run(model, convo[:8]))  # any state: only the keys matter here
    walk = cache.walk()
    assert isinstance(walk, PrefixWalk)
    ids = Counting()
    found = 0
    for k in range(300):
        ids += turn
        found += sum(1 for _ in walk.continuations(ids))
    assert Counting.sliced == len(ids) == 1200
    assert found == sum(min(1200, n) // 4 - 1 for n in (40, 400, 1200))  # every entry longer than the prefix
    with pytest.raises(ValueError):
        walk.continuations(ids[:4])
