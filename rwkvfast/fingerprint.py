"""fingerprint.py — what a model file holds, as a short string: two files share a fingerprint
only if they hold the same bytes (header, tensor table and weights).

A name and a size say nothing about the weights: a fine-tune or a re-converted file can have
both, and a state computed by one model is garbage to another. So anything that keeps results
of a model across runs (the server's state-cache directory) keys them by this instead.

Hashing a 14 GB file takes seconds, so the result can be remembered in a small JSON file (a
"memo") beside the data that needs it, keyed by the file's real path and checked against its
size, modification and change times, inode and device: a file edited in place, replaced, or
touched gets hashed again.

    >>> model_fingerprint("rwkv6-1b6-Q8_0.gguf")                   # doctest: +SKIP
    'sha256t:5d41402abc4b2a76b9719d911017c592...'
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rwkvfast.atomic_file import write_bytes

__all__ = ["model_fingerprint"]

_PIECE = 64 << 20  # hashed independently, so all cores share a big file
_READ = 8 << 20
_MEMO_ENTRIES = 64  # files remembered per memo; the least recently hashed go first
_SCHEME = "sha256t"  # SHA-256 over the SHA-256 of each 64 MiB piece, with the size in front


def _piece_digest(fd: int, start: int, end: int) -> bytes:
    h = hashlib.sha256()
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(_READ, end - pos), pos)
        if not chunk:
            raise OSError(f"the file ended at byte {pos} while it was being hashed (it changed?)")
        h.update(chunk)  # releases the GIL for big chunks: the pieces hash in parallel
        pos += len(chunk)
    return h.digest()


def _hash_file(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        bounds = [(a, min(a + _PIECE, size)) for a in range(0, size, _PIECE)]
        with ThreadPoolExecutor(max_workers=max(1, min(len(bounds), os.cpu_count() or 1))) as pool:
            digests = list(pool.map(lambda b: _piece_digest(fd, *b), bounds))
    finally:
        os.close(fd)
    top = hashlib.sha256(size.to_bytes(8, "little"))
    for d in digests:
        top.update(d)
    return f"{_SCHEME}:{top.hexdigest()}"


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def model_fingerprint(path: str | os.PathLike, memo: str | os.PathLike | None = None) -> str:
    """The content fingerprint of the file at `path`; with `memo` (a JSON file, created if
    missing), reused while the file's size, times, inode and device stay the same. A memo that
    cannot be read or written is ignored: the answer is then only slower, never wrong."""
    real = os.path.realpath(path)
    sig = _signature(os.stat(real))
    memo_data: dict = {}
    if memo is not None:
        try:
            memo_data = json.loads(Path(memo).read_text(encoding="utf-8"))
            if not isinstance(memo_data, dict):
                memo_data = {}
        except (OSError, ValueError, RecursionError):
            memo_data = {}
        hit = memo_data.get(real)
        if isinstance(hit, dict) and hit.get("stat") == sig and isinstance(hit.get("fingerprint"), str):
            return hit["fingerprint"]
    fp = _hash_file(real)
    if _signature(os.stat(real)) != sig:
        raise OSError(f"{path}: the file changed while it was being fingerprinted")
    if memo is not None:
        memo_data.pop(real, None)
        memo_data[real] = {"stat": sig, "fingerprint": fp}
        for k in list(memo_data)[:-_MEMO_ENTRIES]:
            del memo_data[k]
        try:
            write_bytes(memo, json.dumps(memo_data, indent=1).encode())
        except OSError:
            pass
    return fp
