"""atomic_file.py — files written whole or not at all, and the temporaries a crash leaves.

Every file rwkvfast writes (GGUF models and states, safetensors, cached states, perplexity
bases) is written beside its destination under a hidden temporary name and renamed over it
when complete, so a reader never sees half a file and a file that was there stays intact until
the new one is whole. The name says whose it is:

    .<destination name>.<writer's pid>-<8 hex digits>.tmp

A kill -9 or a crash leaves such a temporary behind. `sweep_stale` removes those whose writer
is gone (its pid no longer runs on this machine), and only those: a temporary of a live writer
(another server sharing a cache directory, a conversion still running) is left alone, and so
is every file not named this way.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

__all__ = ["temp_beside", "create_temp", "write_bytes", "sweep_stale", "is_our_temp"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d{1,10})-[0-9a-f]{8}\.tmp$", re.S)


def temp_beside(path: str | os.PathLike) -> Path:
    """A fresh temporary name in `path`'s directory for a file that will become `path`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def create_temp(path: str | os.PathLike) -> tuple[int, Path]:
    """(fd open for writing, its temporary path) for a file that will become `path`. The file is
    new (O_EXCL) with the permissions of an ordinary new file (0666 less the umask)."""
    tmp = temp_beside(path)
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, then rename)."""
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_our_temp(name: str) -> bool:
    return _TEMP.match(name) is not None


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or unknowable): not ours to judge
    return True


def sweep_stale(directory: str | os.PathLike) -> tuple[int, int]:
    """Remove the temporaries of dead writers in `directory` (not recursive); returns (files,
    bytes) removed. Never raises for a directory that cannot be listed or a file that vanishes."""
    files = size = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0, 0
    for e in entries:
        m = _TEMP.match(e.name)
        if m is None or _running(int(m.group("pid"))):
            continue
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            n = e.stat(follow_symlinks=False).st_size
            os.unlink(e.path)
        except OSError:
            continue
        files, size = files + 1, size + n
    return files, size
