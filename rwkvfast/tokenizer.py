"""The RWKV World tokenizer: greedy longest match over bytes (the trie is in C)."""
from __future__ import annotations

import codecs
import os
from typing import Iterable

from rwkvfast import _core


class TooManyTokens(ValueError):
    """A text needs `n` tokens, more than the `limit` it was given."""

    def __init__(self, n: int, limit: int) -> None:
        super().__init__(f"the text is {n} tokens, more than the limit of {limit}")
        self.n, self.limit = n, limit


class Tokenizer:
    """RWKV World tokenizer read from any GGUF's ``tokenizer.ggml.*`` metadata.

    >>> tok = Tokenizer("rwkv-world-65536-vocab.gguf")   # doctest: +SKIP
    >>> tok.encode("Hello world")                        # doctest: +SKIP
    [33155, 40213]
    >>> tok.decode([33155, 40213])                       # doctest: +SKIP
    'Hello world'
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._t = _core.Tokenizer.from_gguf(path)

    @classmethod
    def _wrap(cls, core: _core.Tokenizer) -> "Tokenizer":
        self = cls.__new__(cls)
        self._t = core
        return self

    @property
    def vocab_size(self) -> int:
        return self._t.vocab_size

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """Token ids of `text` (encoded as UTF-8; lone surrogates are an error). With `limit`,
        TooManyTokens when the text needs more ids than that (before any list is built: a
        server's budget check costs 4 bytes a token, not a Python list)."""
        ids = self._t.encode_bytes(text.encode("utf-8"))
        if limit is not None and len(ids) > limit:
            raise TooManyTokens(len(ids), limit)
        return ids.tolist()

    def piece(self, token_id: int) -> bytes:
        """The bytes of one token; control and unused tokens give b''."""
        return self._t.piece(token_id)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        piece = self._t.piece
        return b"".join(piece(i) for i in ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of `ids`; bytes that are not valid UTF-8 become U+FFFD by default."""
        return self.decode_bytes(ids).decode("utf-8", errors)

    def decoder(self) -> "StreamDecoder":
        """An incremental decoder for streaming: never splits a UTF-8 character."""
        return StreamDecoder(self)


class StreamDecoder:
    """Feeds token ids one at a time and returns only complete characters.

    A token may end in the middle of a multi-byte character (emoji, CJK); those
    bytes are held back until the character is complete.

    >>> d = tok.decoder()                                # doctest: +SKIP
    >>> "".join(d.feed(i) for i in ids) + d.flush()      # doctest: +SKIP
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._piece = tokenizer._t.piece
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._dec.decode(self._piece(token_id))

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character becomes U+FFFD)."""
        return self._dec.decode(b"", final=True)
