"""Where the peer reference fixtures live, and skipping cleanly when they are absent.

The full set is ../shared/fixtures (or $RWKVFAST_FIXTURES); a small subset with the
same relative paths ships in tests/data so a fresh clone still checks itself.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the Vulkan tests run on whatever device is first (Mesa's lavapipe where there is no GPU), which
# a default choice never takes when it is a CPU: they name it, as a user must
os.environ.setdefault("RWKVFAST_VK_DEVICE", "0")
DATA = ROOT / "tests" / "data"
SHARED = Path(os.environ.get("RWKVFAST_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixture_path(rel: str) -> Path:
    """Path of fixture file `rel` (e.g. "tiny/gguf/tiny-F32.gguf"); skips the test if absent."""
    for base in (SHARED, DATA):
        p = base / rel
        if p.exists():
            return p
    pytest.skip(f"fixture {rel} not found in {SHARED} or {DATA}")


def manifest_entry(type_name: str, manifest: str = "manifest.json") -> dict:
    """The fixture manifest's entry of a GGUF type (RWKV-6's; "rwkv7/manifest.json" for RWKV-7's)."""
    manifest = json.loads(fixture_path(manifest).read_text())
    for e in manifest["gguf"]:
        if e["type"] == type_name:
            return e
    raise KeyError(type_name)


def reference_ids(model: str = "tiny") -> list[int]:
    """The reference token ids of a fixture model ("tiny": RWKV-6; "rwkv7/tiny7": RWKV-7)."""
    return json.loads(fixture_path(f"{model}/tokens.json").read_text())["ids"]


@contextmanager
def live_server(model_path, *flags: str):
    """rwkvfast-server (on model_path, or None: no -m) in its own process on a free loopback port; yields (url, process) once it
    answers /health, and stops it with Ctrl-C (a graceful shutdown) on the way out."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = ["-m", str(model_path)] if model_path is not None else []  # None: the shipped demo
    p = subprocess.Popen([sys.executable, "-m", "rwkvfast.cli.server", *model, "--port", str(port), *flags],
                         stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # ready when it answers (connections are refused until uvicorn listens)
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not come up: {p.stderr.read()}")
                time.sleep(0.1)
        yield url, p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
