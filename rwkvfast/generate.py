"""generate.py — streaming, stateful generation: text pieces out, the state kept aligned.

    >>> g = generate(model, "User: hi\\n\\nAssistant:", state, Sampler.rwkv_chat(model.n_vocab), stop=["\\n\\n"])  # doctest: +SKIP
    >>> for piece in g: print(piece, end="", flush=True)                                   # doctest: +SKIP
    >>> g.result.stop_reason, g.result.gen_tokens_per_s                                     # doctest: +SKIP

Every emitted token is fed into the state before its text is handed out, so the state always
holds the prompt plus everything generated (a follow-up turn feeds only its new text), and an
interrupt between pieces leaves the state matching the tokens produced. Text is decoded
UTF-8-safely (a character split across tokens is held until complete) and held back while it
could still be the start of a stop string; a matched stop string is never emitted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from rwkvfast.sampler import Sampler
from rwkvfast.state import State

__all__ = ["generate", "Generation", "GenerationResult", "TextStream"]


@dataclass
class GenerationResult:
    text: str = ""  # what was emitted (stop string excluded)
    tokens: list[int] = field(default_factory=list)  # generated ids, all fed into the state
    stop_reason: str = ""  # "stop" (a stop string), "eos" (token 0), "length", "interrupted"
    stop: str | None = None  # the stop string that matched
    prompt_tokens: int = 0
    prompt_s: float = 0.0
    gen_s: float = 0.0
    logits: np.ndarray | None = None  # after the last fed token: continue without refeeding

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def gen_tokens_per_s(self) -> float:
        return len(self.tokens) / self.gen_s if self.gen_s > 0 else 0.0


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class TextStream:
    """Generated ids to text pieces: UTF-8-safe decoding, stop strings matched across token
    boundaries and held back while they may still be starting (a matched one is never
    emitted). Shared by `Generation` and the server's engine.

    feed(t) returns the text that is now safe to show; after it, `stop` is the stop string
    that matched (feed no more), else None. finish() returns what was held back."""

    def __init__(self, tokenizer, stops: Sequence[str] = ()) -> None:
        self._dec = tokenizer.decoder()
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stop: str | None = None

    def feed(self, token: int) -> str:
        text = self.pending + self._dec.feed(token)
        hit = min(((text.find(s), s) for s in self.stops if s in text), default=None)
        if hit is not None:
            self.stop, self.pending = hit[1], ""
            return text[:hit[0]]
        keep = _held_back(text, self.stops)
        out, self.pending = text[:len(text) - keep], text[len(text) - keep:]
        return out

    def finish(self) -> str:
        if self.stop is not None:
            return ""
        tail, self.pending = self.pending + self._dec.flush(), ""
        return tail


class Generation:
    """An iterator of text pieces; `result` is complete once it is exhausted or closed."""

    def __init__(self, model, prompt: str | Sequence[int], state: State, sampler: Sampler,
                 max_tokens: int = -1, stop: Sequence[str] = (), stop_on_eos: bool = True,
                 logits: np.ndarray | None = None) -> None:
        self.model, self.state, self.sampler = model, state, sampler
        self.max_tokens, self.stops = max_tokens, [s for s in stop if s]
        self.stop_on_eos = stop_on_eos
        self.result = GenerationResult()
        self._stream: TextStream | None = None
        ids = model.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids and logits is None:
            raise ValueError("generation needs a prompt, or the logits of a state that was fed before")
        self._ids, self._logits = ids, logits
        self._it = self._run()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._it)

    @property
    def pending(self) -> str:
        """Decoded text held back (a possible stop-string start), not yet in result.text."""
        return self._stream.pending if self._stream is not None else ""

    def close(self) -> None:
        """Stop early (e.g. on Ctrl-C): the state holds every token generated so far."""
        self._it.close()

    def _run(self) -> Iterator[str]:
        r, model, tok = self.result, self.model, self.model.tokenizer
        logits = self._logits
        if self._ids:
            t0 = time.perf_counter()
            logits = model.forward(self._ids, self.state)
            r.prompt_tokens, r.prompt_s = len(self._ids), time.perf_counter() - t0
        stream = self._stream = TextStream(tok, self.stops)
        t0 = time.perf_counter()
        r.stop_reason = "interrupted"
        try:
            while self.max_tokens < 0 or len(r.tokens) < self.max_tokens:
                t = self.sampler.sample(logits)
                if t == 0 and self.stop_on_eos:
                    r.stop_reason = "eos"
                    break
                self.sampler.accept(t)
                logits = model.forward(t, self.state)  # fed before shown: state == tokens produced
                r.tokens.append(t)
                r.logits = logits
                out = stream.feed(t)
                if out:
                    r.text += out
                    yield out
                if stream.stop is not None:
                    r.stop_reason, r.stop = "stop", stream.stop
                    break
            else:
                r.stop_reason = "length"
            tail = stream.finish()
            if tail:
                r.text += tail
                yield tail
        finally:
            r.gen_s = time.perf_counter() - t0
            r.logits = logits


def generate(model, prompt: str | Sequence[int], state: State, sampler: Sampler, max_tokens: int = -1,
             stop: Sequence[str] = (), stop_on_eos: bool = True, logits: np.ndarray | None = None) -> Generation:
    """Generate from `state` after feeding `prompt` (text or ids; empty with `logits` given to
    continue where a previous generation stopped). max_tokens -1 = until a stop; stop strings
    are matched on the decoded text across token boundaries and never emitted; token 0 ends
    the text when stop_on_eos. See Generation and GenerationResult."""
    return Generation(model, prompt, state, sampler, max_tokens, stop, stop_on_eos, logits)
