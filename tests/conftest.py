"""Where the peer reference fixtures live, and skipping cleanly when they are absent.

The full set is ../shared/fixtures (or $RWKVFAST_FIXTURES); a small subset with the
same relative paths ships in tests/data so a fresh clone still checks itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SHARED = Path(os.environ.get("RWKVFAST_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixture_path(rel: str) -> Path:
    """Path of fixture file `rel` (e.g. "tiny/gguf/tiny-F32.gguf"); skips the test if absent."""
    for base in (SHARED, DATA):
        p = base / rel
        if p.exists():
            return p
    pytest.skip(f"fixture {rel} not found in {SHARED} or {DATA}")


def manifest_entry(type_name: str) -> dict:
    manifest = json.loads(fixture_path("manifest.json").read_text())
    for e in manifest["gguf"]:
        if e["type"] == type_name:
            return e
    raise KeyError(type_name)


def reference_ids() -> list[int]:
    return json.loads(fixture_path("tiny/tokens.json").read_text())["ids"]
