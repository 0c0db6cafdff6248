"""strict_json.py — JSON out of a checkpoint's files, every way it can be broken one error.

Header and config files come from whoever made the checkpoint: bytes that are not UTF-8, JSON
nested deeper than the parser can follow, integers too long to convert. Each becomes the
caller's error class (a ValueError) naming the file, never a traceback.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_json"]


def parse_json(raw: bytes, where: str, error: type[ValueError]) -> Any:
    """The JSON value of `raw`; `error(f"{where}: ...")` when it is not valid UTF-8 JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError; an integer too long to convert
        raise error(f"{where}: not JSON: {str(e)[:200]}") from None
