"""vocab.py — the RWKV World vocabulary as llama.cpp's converter writes it into a GGUF.

Token 0 is `<s>`; ids 1.. come from rwkv_vocab_v20230424.txt (packaged in rwkvfast/data, the
official file), each stored as repr(bytes)[2:-1]; `[PADi]` fill up to the embedding size.
"""
from __future__ import annotations

import ast
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ..gguf_writer import U32, Array, GGUFValueType
from .checkpoint import ConvertError

__all__ = ["load_world_vocab", "vocab_path", "token_metadata", "packaged_vocab_text", "EOT_TOKEN"]

EOT_TOKEN = 261  # "\n\n" in the World vocabulary, as llama.cpp's converter sets it


def packaged_vocab_text() -> str:
    return resources.files("rwkvfast").joinpath("data/rwkv_vocab_v20230424.txt").read_text(encoding="utf-8")


_MAX_VOCAB_FILE = 64 << 20  # the World vocabulary is ~1 MB
# Its longest line is 140 characters. A bound on the literal, and requiring it to be a string
# or bytes literal, keeps ast.literal_eval off crafted expressions nested deep enough to exhaust
# the parser (RecursionError, or MemoryError from a 100k-long chain of unary minus signs).
_MAX_LITERAL = 4096


def _read_text(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        raw = f.read(_MAX_VOCAB_FILE + 1)
    if len(raw) > _MAX_VOCAB_FILE:
        raise ConvertError(f"{path}: more than {_MAX_VOCAB_FILE >> 20} MiB; not a vocabulary file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConvertError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); not a vocabulary file") from None


def load_world_vocab(path: str | os.PathLike | None = None) -> list[bytes]:
    """Token bytes of ids 1.. from an RWKV World vocabulary file (default: the packaged
    rwkv_vocab_v20230424.txt). Lines are `id python-literal byte-length`; the literal is read
    with ast.literal_eval (never eval), and ids and lengths are checked. ConvertError (a
    ValueError) naming the file and line for anything else; OSError when it cannot be read."""
    if path is None:
        text = packaged_vocab_text()
        where = "rwkvfast/data/rwkv_vocab_v20230424.txt"
    else:
        text, where = _read_text(path), str(path)
    out: list[bytes] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            sp, rsp = line.index(" "), line.rindex(" ")
            src = line[sp + 1:rsp]
            if len(src) > _MAX_LITERAL or not (src[:1] in ("'", '"') or src[:2] in ("b'", 'b"')):
                raise ValueError("the token is not a short string or bytes literal")
            idx, lit, length = int(line[:sp]), ast.literal_eval(src), int(line[rsp + 1:])
            b = lit.encode("utf-8") if isinstance(lit, str) else lit
        except (ValueError, SyntaxError, TypeError, RecursionError) as e:
            # ValueError includes a string with lone surrogates (UnicodeEncodeError) and a
            # literal that is not one; RecursionError: a literal nested past the parser's reach
            raise ConvertError(f"{where}:{n}: not a vocabulary line ({type(e).__name__}: {str(e)[:80]}): "
                               f"{line[:60]!r}") from None
        if not isinstance(b, bytes) or idx != len(out) + 1 or len(b) != length:
            raise ConvertError(f"{where}:{n}: expected token {len(out) + 1} with the stated length, got {line[:60]!r}")
        out.append(b)
    return out


def vocab_path(src: Path, vocab: str | os.PathLike | None) -> Path | None:
    """The vocabulary to use: the given file, else rwkv_vocab_v20230424.txt beside the input
    (as llama.cpp's converter reads it from the model directory), else None (the packaged one)."""
    if vocab is not None:
        return Path(vocab)
    beside = (src if src.is_dir() else src.parent) / "rwkv_vocab_v20230424.txt"
    return beside if beside.is_file() else None


def token_metadata(vocab: list[bytes], n_vocab: int) -> list[tuple[str, Any]]:
    if len(vocab) + 1 > n_vocab:
        raise ConvertError(f"the vocabulary has {len(vocab) + 1} tokens (with <s>) but the model's embedding "
                           f"has {n_vocab} rows; pass the model's own vocabulary file")
    # llama.cpp stores each token as repr(bytes)[2:-1] and types <s> CONTROL, pads UNUSED
    texts = ["<s>"] + [repr(b)[2:-1] for b in vocab] + [f"[PAD{i}]" for i in range(len(vocab) + 1, n_vocab)]
    types = [3] + [1] * len(vocab) + [5] * (n_vocab - len(vocab) - 1)
    template = resources.files("rwkvfast").joinpath("data/rwkv_world_chat_template.jinja").read_text(encoding="utf-8")
    # the end of a turn is "\n\n": 261 in the World vocabulary, elsewhere in a smaller one
    eot = vocab.index(b"\n\n") + 1 if b"\n\n" in vocab else None
    return [("tokenizer.ggml.model", "rwkv"),
            ("tokenizer.ggml.tokens", Array(GGUFValueType.STRING, texts)),
            ("tokenizer.ggml.token_type", Array(GGUFValueType.INT32, types)),
            ("tokenizer.ggml.bos_token_id", U32(0)), ("tokenizer.ggml.eos_token_id", U32(0))] + \
        ([("tokenizer.ggml.eot_token_id", U32(eot))] if eot is not None else []) + \
        [("tokenizer.chat_template", template)]
