"""memory.py — admit work only while the machine has memory for it.

A queue length says nothing about memory: 256 waiting requests of a few tokens are nothing,
60 of 13M tokens each exhaust 24 GB. So the server estimates what a request will hold (its
body while it is parsed; its token ids, state and logits while it waits and runs) and turns it
away with a 503 when taking it would leave less than a reserve of the machine's available
memory (Linux's MemAvailable: free memory plus what the page cache can give back). Where that
cannot be read, everything is admitted, as before.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["MemoryGuard", "available_memory", "NoMemory", "BYTES_PER_TOKEN"]

# what one prompt token costs while a request is parsed, queued and looked up: a Python int in
# a list (36 bytes) two or three times over, a prefix hash (44) and an int32 id (4)
BYTES_PER_TOKEN = 160


class NoMemory(RuntimeError):
    """Taking the work would leave the machine below its reserve."""


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            key, _, rest = line.partition(b":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key.decode()] = int(parts[0]) * (1024 if parts[-1:] == [b"kB"] else 1)
    return out


def available_memory() -> int | None:
    """Bytes the machine can still give (MemAvailable), or None where that is not known."""
    try:
        return _meminfo().get("MemAvailable")
    except (OSError, ValueError):
        return None


def _default_reserve() -> int:
    try:
        total = _meminfo().get("MemTotal", 0)
    except (OSError, ValueError):
        total = 0
    return max(256 << 20, total // 20)


class MemoryGuard:
    """`admit(need, what)` raises NoMemory when `need` more bytes would leave less than
    `reserve` available. `probe` is how much is available (None: unknown, admit)."""

    def __init__(self, reserve: int | None = None, probe: Callable[[], int | None] = available_memory) -> None:
        self.reserve = _default_reserve() if reserve is None else int(reserve)
        self.probe = probe

    def admit(self, need: int, what: str) -> None:
        free = self.probe()
        if free is not None and free - need < self.reserve:
            raise NoMemory(f"{what} needs about {need >> 20} MiB and the machine has {free >> 20} MiB "
                           f"available, {self.reserve >> 20} MiB of which are kept in reserve")
