"""Prompt-state cache: (State, last logits) pairs keyed by the tokens that produced them.

RWKV's whole context is its fixed-size State, so a prompt that starts with a cached prefix
only needs its remaining tokens processed, and a prompt seen before (a regenerate) none. The
cache keeps the most recently used pairs within a byte budget (states, logits and the token
ids that key them); with a directory it also writes each pair to disk (atomically, within a
second budget) so a restarted server resumes with zero re-processing. Safe to use from
several threads.

The directory may outlive the model file and be shared: its entries are keyed by the model's
content fingerprint (fingerprint.py), not its name, and every read checks that fingerprint,
the tokens, and digests of the state and logits, so one model's states never answer for
another's. What a crashed writer left (temporaries, entries without an index) is removed on
start, and every file of ours counts against the disk budget.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from rwkvfast.atomic_file import sweep_stale, write_bytes
from rwkvfast.fingerprint import model_fingerprint
from rwkvfast.state import State

if TYPE_CHECKING:
    from rwkvfast.model import Model

_M61 = (1 << 61) - 1
_INDEX_VERSION = 2
_ENTRY = re.compile(r"^[0-9a-f]{32}\.(json|state|logits)$")
_ORPHAN_AGE_S = 600  # an entry's data without its index is a crash's leftover once this old
MEMO = "model-fingerprints.memo"  # JSON; not named *.json, which are the entries' indexes


def _prefix_hashes(tokens: Sequence[int], base: int) -> list[int]:
    """h[n] identifies tokens[:n]: a polynomial hash modulo 2^61-1 with a base drawn per cache,
    so nobody can choose prompts that collide (entries also keep their tokens: a collision costs
    a comparison, never a wrong answer)."""
    h, out = 0, [0]
    for t in tokens:
        h = (h * base + t + 1) % _M61
        out.append(h)
    return out


def _ids(tokens: Sequence[int]) -> array:
    return tokens if isinstance(tokens, array) and tokens.typecode == "i" else array("i", tokens)


@dataclass
class CacheHit:
    """tokens[:n] were found: `state` (a copy, the caller's to advance) and the logits after them."""
    n: int
    state: State
    logits: np.ndarray


@dataclass
class _Entry:
    tokens: array  # int32 ids: 4 bytes a token, counted in the memory budget
    state: State | None  # None: on disk only, loaded on first use
    logits: np.ndarray | None
    file: str | None = None  # the entry's path without extension
    disk: int = 0  # bytes of its files


class PrefixWalk:
    """The cached continuations of one token list as it grows (a chat's messages, one by one):
    each call checks only the tokens added since the last, so a request of many messages costs
    time linear in its length, not quadratic."""

    def __init__(self, candidates: list[array]) -> None:
        self._cands = candidates  # most recently used first
        self._n = 0  # tokens of the prefix that every remaining candidate shares

    def continuations(self, prefix: Sequence[int]) -> Iterator[memoryview]:
        """What followed `prefix` in each cached entry that extends it, most recently used first
        (as views: no copying). `prefix` must extend the one of the previous call."""
        n = len(prefix)
        if n < self._n:
            raise ValueError("PrefixWalk: the prefix must grow from call to call")
        new = array("i", prefix[self._n:n])
        self._cands = [c for c in self._cands if len(c) > n and c[self._n:n] == new]
        self._n = n
        return (memoryview(c)[n:] for c in self._cands)


class StateCache:
    """LRU cache of (State, logits) by token prefix, bounded by `max_bytes` of memory.

    >>> cache = StateCache(model, 256 << 20)                        # doctest: +SKIP
    >>> hit = cache.lookup(ids)  # longest cached prefix of ids, or None   # doctest: +SKIP
    """

    def __init__(self, model: "Model", max_bytes: int, directory: str | os.PathLike | None = None,
                 max_disk_bytes: int = 4 << 30) -> None:
        if max_bytes < 0 or max_disk_bytes < 0:
            raise ValueError(f"state cache sizes must be >= 0 bytes, got {max_bytes} and {max_disk_bytes}")
        self.model = model
        self.max_bytes, self.max_disk_bytes = int(max_bytes), int(max_disk_bytes)
        self._lock = threading.RLock()
        self._base = 2 + secrets.randbelow(_M61 - 4)
        probe = model.new_state()
        self.entry_bytes = int(probe.att_shift.nbytes + probe.ffn_shift.nbytes + probe.wkv.nbytes) + 4 * model.n_vocab
        self._entries: OrderedDict[tuple[int, int], _Entry] = OrderedDict()  # (length, hash) -> entry, LRU first
        self._lengths: dict[int, int] = {}  # cached prefix length -> how many entries have it
        self.bytes = self.disk_bytes = 0
        self._stamp = 0
        self.hits = self.misses = self.tokens_reused = 0
        self.rejected = 0  # disk entries refused on read (another model's, damaged, changed)
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.fingerprint = model_fingerprint(model.path, memo=self.directory / MEMO)
            self._scan()

    def __len__(self) -> int:
        return len(self._entries)

    # -- lookup and insert ---------------------------------------------------------------

    def lookup(self, tokens: Sequence[int]) -> CacheHit | None:
        """The longest cached prefix of `tokens` (possibly all of them), or None."""
        with self._lock:
            return self._lookup(_ids(tokens))

    def _lookup(self, tokens: array) -> CacheHit | None:
        hashes = _prefix_hashes(tokens, self._base)
        for n in sorted((n for n in self._lengths if n <= len(tokens)), reverse=True):
            key = (n, hashes[n])
            e = self._entries.get(key)
            if e is None or e.tokens != tokens[:n]:
                continue
            if e.state is None and not self._load(key, e):
                continue
            self._entries.move_to_end(key)
            if e.file is not None:
                self._touch(e.file)
            self.hits += 1
            self.tokens_reused += n
            return CacheHit(n, e.state.copy(), e.logits.copy())
        self.misses += 1
        return None

    def insert(self, tokens: Sequence[int], state: State, logits: np.ndarray) -> None:
        """Remember the state after `tokens` and the logits it produced (both copied)."""
        if not tokens or self.max_bytes < self.entry_bytes + 4 * len(tokens):
            return
        with self._lock:
            self._insert(array("i", tokens), state, logits)

    def walk(self) -> PrefixWalk:
        """A PrefixWalk over the entries as they are now (see PrefixWalk)."""
        with self._lock:
            return PrefixWalk([e.tokens for e in reversed(self._entries.values())])

    def continuations(self, prefix: Sequence[int]) -> list[tuple[int, ...]]:
        """The tokens that follow `prefix` in the cached entries that extend it, most recently
        used first: how an earlier answer to this prompt was generated, token for token."""
        return [tuple(c) for c in self.walk().continuations(prefix)]

    def _insert(self, toks: array, state: State, logits: np.ndarray) -> None:
        key = (len(toks), _prefix_hashes(toks, self._base)[-1])
        old = self._entries.get(key)
        if old is not None and old.tokens == toks:
            self._entries.move_to_end(key)
            return
        if old is not None:  # a hash collision (about 2^-61 per pair): the newer prefix wins the slot
            self._drop(key)
        e = _Entry(toks, state.copy(), np.array(logits, dtype=np.float32, copy=True))
        if self.directory is not None and self.max_disk_bytes >= self.entry_bytes:
            self._write(e)
        self._add(key, e)
        self._evict()

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes,
                    "disk_bytes": self.disk_bytes, "max_disk_bytes": self.max_disk_bytes,
                    "hits": self.hits, "misses": self.misses, "tokens_reused": self.tokens_reused,
                    "rejected": self.rejected}

    # -- bookkeeping -----------------------------------------------------------------------

    def _add(self, key: tuple[int, int], e: _Entry) -> None:
        self._entries[key] = e
        self._lengths[key[0]] = self._lengths.get(key[0], 0) + 1
        self.bytes += 4 * len(e.tokens) + (self.entry_bytes if e.state is not None else 0)
        self.disk_bytes += e.disk

    def _drop(self, key: tuple[int, int]) -> None:
        """Forget an entry, in memory and on disk."""
        e = self._entries.pop(key)
        self._lengths[key[0]] -= 1
        if not self._lengths[key[0]]:
            del self._lengths[key[0]]
        self.bytes -= 4 * len(e.tokens) + (self.entry_bytes if e.state is not None else 0)
        self.disk_bytes -= e.disk
        if e.file is not None:
            _remove_entry_files(e.file)

    def _evict(self) -> None:
        """Least recently used first, within both budgets. With a directory, an entry leaves
        memory but stays on disk (loaded again on its next hit) until the disk budget is spent."""
        for key in list(self._entries):
            if self.bytes <= self.max_bytes and self.disk_bytes <= self.max_disk_bytes:
                break
            e = self._entries[key]
            if e.file is not None and self.disk_bytes > self.max_disk_bytes:
                self._drop(key)
            elif self.bytes > self.max_bytes:
                if e.file is not None and e.state is not None:
                    e.state = e.logits = None
                    self.bytes -= self.entry_bytes
                else:  # memory only, or its token index alone is over the budget
                    self._drop(key)

    # -- the directory ---------------------------------------------------------------------

    def _name(self, toks: array) -> str:
        digest = hashlib.blake2b(toks.tobytes(), digest_size=16)
        digest.update(self.fingerprint.encode())
        return digest.hexdigest()

    def _write(self, e: _Entry) -> None:
        """<name>.state (State.save, atomic) and <name>.logits, then <name>.json (the model's
        fingerprint, the tokens, digests of the state's and logits' values), written last and
        atomically: an entry counts only once its index exists."""
        base = self.directory / self._name(e.tokens)
        e.state.save(base.with_suffix(".state"))
        logits = e.logits.astype("<f4").tobytes()
        write_bytes(base.with_suffix(".logits"), logits)
        index = {"version": _INDEX_VERSION, "model": self.fingerprint, "tokens": e.tokens.tolist(),
                 "n_vocab": int(e.logits.size), "state_sha256": _state_digest(e.state),
                 "logits_sha256": hashlib.sha256(logits).hexdigest()}
        write_bytes(base.with_suffix(".json"), json.dumps(index).encode())
        e.file = str(base)
        e.disk = _entry_size(e.file)
        self._touch(e.file)

    def _touch(self, base: str) -> None:
        """Stamp an entry's index as used now: the order of use a restart reads back. Stamps
        strictly increase, so entries used within one clock tick keep their order."""
        self._stamp = max(time.time_ns(), self._stamp + 1)
        try:
            os.utime(base + ".json", ns=(self._stamp, self._stamp))
        except OSError:
            pass

    def _scan(self) -> None:
        """Take up this model's entries; remove what crashes left (dead writers' temporaries,
        an entry's data without its index once it is old, this model's unreadable indexes);
        leave every other file alone (another model's entries, anything not named like ours)."""
        sweep_stale(self.directory)
        names: dict[str, set[str]] = {}
        for p in self.directory.iterdir():
            m = _ENTRY.match(p.name)
            if m is not None:
                names.setdefault(p.name[:32], set()).add(m.group(1))
        found = []
        now = time.time()
        for stem, exts in names.items():
            base = self.directory / stem
            if "json" not in exts:
                try:
                    old = all(now - base.with_suffix(f".{x}").stat().st_mtime > _ORPHAN_AGE_S for x in exts)
                except OSError:
                    continue
                if old:
                    _remove_entry_files(str(base))
                continue
            index = base.with_suffix(".json")
            try:
                found.append((index.stat().st_mtime_ns, stem, index))
            except OSError:  # removed meanwhile
                pass
        found.sort()
        self._stamp = found[-1][0] if found else 0
        legacy = f"{os.path.basename(self.model.path)}:{os.path.getsize(self.model.path)}"  # version 1's key
        for _, stem, index in found:
            meta = _read_index(index)
            if meta is not None and "version" not in meta and meta.get("model") == legacy:
                _remove_entry_files(str(index.with_suffix("")))  # ours, keyed by name and size: unverifiable
                continue
            if meta is None or meta.get("model") != self.fingerprint:
                continue  # another model's (or not ours): theirs to manage
            toks = _valid_tokens(meta.get("tokens"), self.model.n_vocab)
            if toks is None or self._name(toks) != stem or meta.get("version") != _INDEX_VERSION:
                _remove_entry_files(str(index.with_suffix("")))
                continue
            key = (len(toks), _prefix_hashes(toks, self._base)[-1])
            if key not in self._entries:
                self._add(key, _Entry(toks, None, None, str(index.with_suffix("")), _entry_size(str(index.with_suffix("")))))
        self._evict()  # a smaller budget than the last run's: the least recently used go

    def _load(self, key: tuple[int, int], e: _Entry) -> bool:
        """Read an entry back, checking on this very read that it is this model's, for these
        tokens, and that the state and logits are what were written."""
        base = Path(e.file)
        meta = _read_index(base.with_suffix(".json"))
        try:
            if (meta is None or meta.get("model") != self.fingerprint
                    or _valid_tokens(meta.get("tokens"), self.model.n_vocab) != e.tokens):
                raise ValueError("index")
            state = State.load(base.with_suffix(".state"), self.model)
            raw = base.with_suffix(".logits").read_bytes()
            if (len(raw) != 4 * self.model.n_vocab or hashlib.sha256(raw).hexdigest() != meta.get("logits_sha256")
                    or _state_digest(state) != meta.get("state_sha256")):
                raise ValueError("digest")
        except (OSError, ValueError):
            self.rejected += 1
            self._drop(key)
            return False
        e.state, e.logits = state, np.frombuffer(raw, dtype="<f4").astype(np.float32)
        self.bytes += self.entry_bytes
        self._entries.move_to_end(key)
        self._evict()
        return e.state is not None


def _state_digest(state: State) -> str:
    h = hashlib.sha256()
    for a in (state.att_shift, state.ffn_shift, state.wkv):
        h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.hexdigest()


def _read_index(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _valid_tokens(toks, n_vocab: int) -> array | None:
    if not isinstance(toks, list) or not toks:
        return None
    if not all(type(t) is int and 0 <= t < n_vocab for t in toks):
        return None
    return array("i", toks)


def _entry_size(base: str) -> int:
    n = 0
    for ext in (".json", ".state", ".logits"):
        try:
            n += os.stat(base + ext).st_size
        except OSError:
            pass
    return n


def _remove_entry_files(base: str) -> None:
    for ext in (".json", ".state", ".logits"):  # the index first: a torn removal is ignored
        try:
            os.unlink(base + ext)
        except OSError:
            pass


__all__ = ["StateCache", "CacheHit", "PrefixWalk"]
