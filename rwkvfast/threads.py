"""threads.py — how many threads a model with the default thread count runs on right now.

Every parallel region of a forward ends when its last thread does, so a thread that loses
its core to another process stalls the others at each of a token's ~150 joins: beside one
busy process on a 2-core machine, two threads decode at under a third of their quiet speed,
one thread at half of it. The governor watches how much CPU the *other* processes take
(the machine's busy time from /proc/stat less this process's own CPU time) and runs on the
cores they leave: all of them on a quiet machine, fewer while something else keeps cores
busy. It looks again at most every `interval` seconds, so a forward pays for a sample a few
times a second at most. Where /proc/stat cannot be read it always answers the maximum.

A thread count given explicitly (Model(n_threads=...), -t) is used as given.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable


def _proc_stat_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (user, nice, system, irq,
    softirq, steal), from the first line of /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
        if fields[:1] != [b"cpu"] or len(fields) < 8:
            return None
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
        steal = int(fields[8]) if len(fields) > 8 else 0
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


class ThreadGovernor:
    """threads(): the thread count for the next forward, in 1..max_threads.

    others = (machine busy seconds - our CPU seconds) / wall seconds over the last interval,
    smoothed; threads = the cores left by them, where a core counts as taken once they use
    more than 0.7 of it (kernel threads and short bursts do not cost us a thread;
    a process that keeps a core busy does)."""

    def __init__(self, max_threads: int, n_cpus: int | None = None, interval: float = 0.25,
                 busy: Callable[[], float | None] = _proc_stat_busy_seconds,
                 ours: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        self.max_threads = max_threads
        if n_cpus is None:
            n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.n_cpus = n_cpus
        self.interval = interval
        self._busy, self._ours, self._clock = busy, ours, clock
        self._last = self._sample()
        self._others = 0.0  # cores the other processes keep busy (smoothed)
        self.current = max_threads
        self._lock = threading.Lock()  # forwards from several threads: one samples, the others go on

    def _sample(self) -> tuple[float, float, float] | None:
        b = self._busy()
        return None if b is None else (self._clock(), b, self._ours())

    def threads(self) -> int:
        if self._last is None:
            return self.max_threads
        if self._clock() - self._last[0] < self.interval or not self._lock.acquire(blocking=False):
            return self.current
        try:
            return self._update()
        finally:
            self._lock.release()

    def _update(self) -> int:
        cur = self._sample()
        if cur is None:
            self._last = None
            self.current = self.max_threads
            return self.current
        wall = cur[0] - self._last[0]
        others = max(0.0, (cur[1] - self._last[1]) - (cur[2] - self._last[2])) / wall
        self._last = cur
        # halfway towards the new reading: one odd interval (a burst of another process)
        # moves the count only when it is large, a lasting load moves it within two
        self._others = 0.5 * self._others + 0.5 * min(others, float(self.n_cpus))
        free = self.n_cpus - self._others
        self.current = max(1, min(self.max_threads, int(free + 0.7)))
        return self.current
