"""shutdown.py — running the server until SIGTERM or Ctrl-C, and stopping it within seconds.

uvicorn alone waits for every open response before it exits, and an endless answer never
ends. Here a signal first makes the engine refuse new jobs and cancel the running ones at its
next step (Engine.stop_accepting), so each stream ends at once with an error event and [DONE];
uvicorn then closes the connections. Its graceful-shutdown timeout is the backstop.
"""
from __future__ import annotations

import signal

import uvicorn

from rwkvfast.server.engine import Engine


class _Terminated(Exception):
    pass


def _terminated(sig, frame) -> None:
    raise _Terminated


class _StoppingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine: Engine) -> None:
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig, frame) -> None:
        self.engine.stop_accepting()
        super().handle_exit(sig, frame)


def serve(config: uvicorn.Config, engine: Engine) -> None:
    """Serve until a signal, then close the engine: its thread is joined, so a state being
    written to the cache directory is complete before the process exits (status 0)."""
    # uvicorn raises the signal again, with the handler it found, once it has shut down: this
    # one turns SIGTERM into an exception, as Ctrl-C is, so the engine is closed below
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        _StoppingServer(config, engine).run()
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        engine.close()
        signal.signal(signal.SIGTERM, previous)
