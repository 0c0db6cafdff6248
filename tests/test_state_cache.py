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
    cache = StateCache(model, 2 * StateCache(model, 0).entry_bytes)
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
    assert len(restarted) == 1 and restarted.bytes == 0  # read from disk on first use
    hit = restarted.lookup(ids + [11])
    assert hit.n == len(ids)
    np.testing.assert_array_equal(hit.logits, logits)
    np.testing.assert_array_equal(model.forward([11], hit.state), _run(model, ids + [11])[1])


def test_a_disk_entry_evicted_from_memory_comes_back(model, tmp_path):
    one = StateCache(model, 0).entry_bytes
    cache = StateCache(model, one, tmp_path)
    a, b = [1, 2, 3], [4, 5, 6]
    cache.insert(a, *_run(model, a))
    cache.insert(b, *_run(model, b))
    assert len(cache) == 2 and cache.bytes == one  # a left memory, not the disk
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
    one = StateCache(model, 0).entry_bytes
    cache = StateCache(model, 64 << 20, tmp_path, max_disk_bytes=2 * one)
    a, b, c = [1, 2, 3], [4, 5, 6], [7, 8, 9]
    cache.insert(a, *_run(model, a))
    cache.insert(b, *_run(model, b))
    assert cache.lookup(a).n == 3  # a is now more recent than b
    cache.insert(c, *_run(model, c))
    assert len(cache) == 2 and cache.disk_bytes == 2 * one and len(list(tmp_path.glob("*.state"))) == 2
    assert cache.lookup(b) is None and cache.lookup(a).n == 3 and cache.lookup(c).n == 3
    smaller = StateCache(model, 64 << 20, tmp_path, max_disk_bytes=one)  # a restart with less room
    assert len(smaller) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    assert smaller.lookup(c).n == 3  # the most recently used of the last run is what stays


def test_continuations_are_what_followed_a_prefix_most_recent_first(model):
    cache = StateCache(model, 64 << 20)
    for ids in ([1, 2, 3], [1, 2, 3, 4, 5], [1, 2, 9], [7, 2, 3, 4]):
        cache.insert(ids, *_run(model, ids))
    assert cache.continuations([1, 2]) == [(9,), (3, 4, 5), (3,)]
    assert cache.continuations([1, 2, 3]) == [(4, 5)]
    assert cache.continuations([2, 3]) == [] and cache.continuations([1, 2, 3, 4, 5]) == []
