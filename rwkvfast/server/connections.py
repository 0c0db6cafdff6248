"""connections.py — what a connection may hold: time limits and a cap, below the HTTP handlers.

uvicorn times out only idle keep-alive connections: a client that opens a connection and
sends nothing, or half a request line, holds a socket forever, and enough of them (about a
thousand: the file-descriptor limit) lock everyone out. A handler cannot help, since it runs
only once a request's head is complete. So the server speaks HTTP through `guarded_h11`, a
subclass of uvicorn's h11 protocol that adds, per connection:

- a head deadline: the request line and headers must be complete within `head_timeout`
  seconds of the connection opening, or of the first byte of a later request on a kept-alive
  connection (slowloris); an idle kept-alive connection is uvicorn's keep-alive timer's;
- a write deadline: a response that cannot be written for `write_timeout` seconds (a client
  that stops reading) drops the connection, which cancels its generation;
- a cap on open connections: at the cap, a new connection closes the connection that has
  been idle the longest (no request in progress: waiting for a head or kept alive), so idle
  sockets can never lock out new clients; if every connection has a request in progress, the
  newcomer gets a 503 and is closed.

The request body's deadline is the handler's (app.py), which can answer 408.
"""
from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["guarded_h11", "raise_fd_limit"]

_BUSY_BODY = b'{"error":{"message":"too many open connections; retry later","type":"server_overloaded","code":503}}'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
         b"content-length: %d\r\n\r\n" % len(_BUSY_BODY)) + _BUSY_BODY


def guarded_h11(max_connections: int, head_timeout: float, write_timeout: float) -> type:
    """A uvicorn HTTP protocol class (pass as `http=`) with the limits in the module doc."""
    if max_connections < 1 or head_timeout <= 0 or write_timeout <= 0:
        raise ValueError("max_connections must be >= 1 and the timeouts > 0")

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._head_timer: asyncio.TimerHandle | None = None
            self._write_timer: asyncio.TimerHandle | None = None
            self._head_cycle: Any = None
            self.idle_since = time.monotonic()
            super().connection_made(transport)
            if len(self.connections) > max_connections and not self._evict_idle():
                transport.write(_BUSY)
                transport.close()
                return
            self._arm_head()

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _evict_idle(self) -> bool:
            idle = [c for c in self.connections if c is not self and getattr(c, "idle_since", None) is not None
                    and c._idle() and not c.transport.is_closing()]
            if not idle:
                return False
            victim = min(idle, key=lambda c: c.idle_since)
            victim._close()
            return True

        def _close(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

        def _arm_head(self) -> None:
            self._disarm_head()
            self._head_cycle = self.cycle
            self._head_timer = self.loop.call_later(head_timeout, self._close)

        def _disarm_head(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and self._idle():
                self._arm_head()  # the first bytes of the next request on a kept-alive connection
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not self._head_cycle:
                self._disarm_head()  # a new request's head is complete: the handler takes over

        def on_response_complete(self) -> None:
            # idle from now on: uvicorn's keep-alive timer closes it if nothing comes
            self.idle_since = time.monotonic()
            super().on_response_complete()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:  # abort: close() would wait to flush what cannot be sent
                self._write_timer = self.loop.call_later(write_timeout, self.transport.abort)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

    return GuardedH11Protocol


def raise_fd_limit(want: int) -> int:
    """Raise this process's open-file limit towards `want` (within the hard limit); returns the
    soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
