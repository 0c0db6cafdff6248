"""Prompt-state cache: (State, last logits) pairs keyed by the tokens that produced them.

RWKV's whole context is its fixed-size State, so a prompt that starts with a cached prefix
only needs its remaining tokens processed, and a prompt seen before (a regenerate) none. The
cache keeps the most recently used pairs within a byte budget; with a directory it also
writes each pair to disk (atomically, within a second budget) so a restarted server resumes
with zero re-processing. Safe to use from several threads.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rwkvfast.state import State

if TYPE_CHECKING:
    from rwkvfast.model import Model

_MASK = (1 << 64) - 1


def _prefix_hashes(tokens: Sequence[int]) -> list[int]:
    """h[n] identifies tokens[:n] (a polynomial hash; entries also keep their tokens, so a
    collision costs a comparison, never a wrong answer)."""
    h, out = 0, [0]
    for t in tokens:
        h = (h * 0x100000001B3 + int(t) + 1) & _MASK
        out.append(h)
    return out


@dataclass
class CacheHit:
    """tokens[:n] were found: `state` (a copy, the caller's to advance) and the logits after them."""
    n: int
    state: State
    logits: np.ndarray


@dataclass
class _Entry:
    tokens: tuple[int, ...]
    state: State | None  # None: on disk only, loaded on first use
    logits: np.ndarray | None
    nbytes: int
    file: str | None = None


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
        probe = model.new_state()
        self.entry_bytes = int(probe.att_shift.nbytes + probe.ffn_shift.nbytes + probe.wkv.nbytes) + 4 * model.n_vocab
        self._entries: OrderedDict[tuple[int, int], _Entry] = OrderedDict()  # (length, hash) -> entry, LRU first
        self._lengths: dict[int, int] = {}  # cached prefix length -> how many entries have it
        self.bytes = self.disk_bytes = 0
        self._stamp = 0
        self.hits = self.misses = self.tokens_reused = 0
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fingerprint = f"{os.path.basename(model.path)}:{os.path.getsize(model.path)}"
            self._scan()

    def __len__(self) -> int:
        return len(self._entries)

    # -- lookup and insert ---------------------------------------------------------------

    def lookup(self, tokens: Sequence[int]) -> CacheHit | None:
        """The longest cached prefix of `tokens` (possibly all of them), or None."""
        with self._lock:
            return self._lookup(tokens)

    def _lookup(self, tokens: Sequence[int]) -> CacheHit | None:
        hashes = _prefix_hashes(tokens)
        for n in sorted((n for n in self._lengths if n <= len(tokens)), reverse=True):
            key = (n, hashes[n])
            e = self._entries.get(key)
            if e is None or e.tokens != tuple(int(t) for t in tokens[:n]):
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
        if not tokens or self.max_bytes < self.entry_bytes:
            return
        with self._lock:
            self._insert(tokens, state, logits)

    def continuations(self, prefix: Sequence[int]) -> list[tuple[int, ...]]:
        """The tokens that follow `prefix` in the cached entries that extend it, most recently
        used first: how an earlier answer to this prompt was generated, token for token."""
        n, pre = len(prefix), tuple(int(t) for t in prefix)
        with self._lock:
            return [e.tokens[n:] for e in reversed(self._entries.values())
                    if len(e.tokens) > n and (not n or e.tokens[n - 1] == pre[-1]) and e.tokens[:n] == pre]

    def _insert(self, tokens: Sequence[int], state: State, logits: np.ndarray) -> None:
        toks = tuple(int(t) for t in tokens)
        key = (len(toks), _prefix_hashes(toks)[-1])
        old = self._entries.get(key)
        if old is not None and old.tokens == toks:
            self._entries.move_to_end(key)
            return
        if old is not None:  # a hash collision: the newer prefix wins the slot
            self._drop(key)
        e = _Entry(toks, state.copy(), np.array(logits, dtype=np.float32, copy=True), self.entry_bytes)
        if self.directory is not None and self.max_disk_bytes >= self.entry_bytes:
            e.file = self._write(e)
        self._add(key, e)
        self._evict()

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes,
                    "disk_bytes": self.disk_bytes, "max_disk_bytes": self.max_disk_bytes,
                    "hits": self.hits, "misses": self.misses, "tokens_reused": self.tokens_reused}

    # -- bookkeeping -----------------------------------------------------------------------

    def _add(self, key: tuple[int, int], e: _Entry) -> None:
        self._entries[key] = e
        self._lengths[key[0]] = self._lengths.get(key[0], 0) + 1
        if e.state is not None:
            self.bytes += e.nbytes
        if e.file is not None:
            self.disk_bytes += e.nbytes

    def _drop(self, key: tuple[int, int]) -> None:
        """Forget an entry, in memory and on disk."""
        e = self._entries.pop(key)
        self._lengths[key[0]] -= 1
        if not self._lengths[key[0]]:
            del self._lengths[key[0]]
        if e.state is not None:
            self.bytes -= e.nbytes
        if e.file is not None:
            self.disk_bytes -= e.nbytes
            for ext in (".json", ".state", ".logits"):  # the index first: a torn removal is ignored
                try:
                    os.unlink(e.file + ext)
                except OSError:
                    pass

    def _evict(self) -> None:
        """Least recently used first, within both budgets. With a directory, an entry leaves
        memory but stays on disk (loaded again on its next hit) until the disk budget is spent."""
        for key in list(self._entries):
            if self.bytes <= self.max_bytes and self.disk_bytes <= self.max_disk_bytes:
                break
            e = self._entries[key]
            if e.file is not None and self.disk_bytes > self.max_disk_bytes:
                self._drop(key)
            elif e.state is not None and self.bytes > self.max_bytes:
                if e.file is not None:
                    e.state = e.logits = None
                    self.bytes -= e.nbytes
                else:
                    self._drop(key)

    # -- the directory ---------------------------------------------------------------------

    def _name(self, toks: tuple[int, ...]) -> str:
        digest = hashlib.blake2b(np.asarray(toks, dtype="<i4").tobytes(), digest_size=16)
        digest.update(self._fingerprint.encode())
        return digest.hexdigest()

    def _write(self, e: _Entry) -> str:
        """<name>.state (State.save, atomic) then <name>.json (tokens, model, logits file),
        written last and atomically: an entry counts only once its index exists."""
        name = self._name(e.tokens)
        base = self.directory / name
        e.state.save(base.with_suffix(".state"))
        _atomic_write(base.with_suffix(".logits"), e.logits.astype("<f4").tobytes())
        index = {"model": self._fingerprint, "tokens": list(e.tokens), "n_vocab": int(e.logits.size)}
        _atomic_write(base.with_suffix(".json"), json.dumps(index).encode())
        self._touch(str(base))
        return str(base)

    def _touch(self, base: str) -> None:
        """Stamp an entry's index as used now: the order of use a restart reads back. Stamps
        strictly increase, so entries used within one clock tick keep their order."""
        self._stamp = max(time.time_ns(), self._stamp + 1)
        try:
            os.utime(base + ".json", ns=(self._stamp, self._stamp))
        except OSError:
            pass

    def _scan(self) -> None:
        found = []
        for index in self.directory.glob("*.json"):
            try:
                found.append((index.stat().st_mtime_ns, index))
            except OSError:  # removed meanwhile
                pass
        found.sort()
        self._stamp = found[-1][0] if found else 0
        for _, index in found:
            try:
                meta = json.loads(index.read_text())
                toks = tuple(int(t) for t in meta["tokens"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not ours or half-written by something else: leave it alone
            if meta.get("model") != self._fingerprint or not toks:
                continue
            key = (len(toks), _prefix_hashes(toks)[-1])
            if key not in self._entries:
                self._add(key, _Entry(toks, None, None, self.entry_bytes, str(index.with_suffix(""))))
        self._evict()  # a smaller budget than the last run's: the least recently used go

    def _load(self, key: tuple[int, int], e: _Entry) -> bool:
        base = Path(e.file)
        try:
            state = State.load(base.with_suffix(".state"), self.model)
            logits = np.fromfile(base.with_suffix(".logits"), dtype="<f4")
        except (OSError, ValueError):
            self._drop(key)
            return False
        if logits.size != self.model.n_vocab:
            self._drop(key)
            return False
        e.state, e.logits = state, logits
        self.bytes += e.nbytes
        self._entries.move_to_end(key)
        self._evict()
        return e.state is not None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
