"""logprobs.py — a job's token log-probabilities in OpenAI's response shapes.

The engine records (token, log-probability, [(token, log-probability) of the most likely])
for every generated token (JobResult.logprobs). A token belongs to the answer when the text
decoded before it is shorter than the answer: tokens that only spell a stop string are left
out, as the stop string is, and a stream hands out each token's entry with the text that
reaches past its start. Positions are characters of the same incremental UTF-8 decoding the
answer's text comes from, so invalid bytes (shown as U+FFFD) count alike on both sides.
"""
from __future__ import annotations

from rwkvfast.tokenizer import Tokenizer

Entry = tuple[int, float, list[tuple[int, float]]]


class LogprobCursor:
    """Hands out a job's entries in order, up to a length of its text."""

    def __init__(self, tokenizer: Tokenizer, entries: list[Entry]) -> None:
        self.entries = entries  # the engine appends to it as it goes
        self.dec = tokenizer.decoder()
        self.i = 0
        self.start = 0  # characters decoded before entries[i]'s token

    def take(self, text_chars: int) -> list[Entry]:
        """The entries not handed out yet whose tokens start before character `text_chars`."""
        out = []
        while self.i < len(self.entries) and self.start < text_chars:
            e = self.entries[self.i]
            out.append(e)
            self.start += len(self.dec.feed(e[0]))
            self.i += 1
        return out


def chat_logprobs(tok: Tokenizer, entries: list[Entry]) -> dict:
    """Chat Completions' choice.logprobs: one item per token, its bytes exact (a token may hold
    part of a character; `token` then shows U+FFFD in its place)."""
    def item(t: int, lp: float) -> dict:
        b = tok.piece(t)
        return {"token": b.decode("utf-8", "replace"), "logprob": lp, "bytes": list(b)}
    return {"content": [{**item(t, lp), "top_logprobs": [item(i, x) for i, x in top]} for t, lp, top in entries],
            "refusal": None}


class CompletionLogprobs:
    """Completions' (legacy) choice.logprobs, whose text_offset runs on across a stream's chunks."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok, self.offset = tok, 0

    def __call__(self, entries: list[Entry]) -> dict:
        out: dict = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for t, lp, top in entries:
            text = self.tok.piece(t).decode("utf-8", "replace")
            out["tokens"].append(text)
            out["token_logprobs"].append(lp)
            top_map: dict[str, float] = {}
            for i, x in top:  # distinct ids can spell the same string: the likelier one stays
                top_map.setdefault(self.tok.piece(i).decode("utf-8", "replace"), x)
            out["top_logprobs"].append(top_map)
            out["text_offset"].append(self.offset)
            self.offset += len(text)
        return out


def llama_probabilities(tok: Tokenizer, entries: list[Entry]) -> list[dict]:
    """llama-server's completion_probabilities (its current shape: ids, log-probabilities)."""
    def item(t: int, lp: float) -> dict:
        b = tok.piece(t)
        return {"id": t, "token": b.decode("utf-8", "replace"), "bytes": list(b), "logprob": lp}
    return [{**item(t, lp), "top_logprobs": [item(i, x) for i, x in top]} for t, lp, top in entries]
