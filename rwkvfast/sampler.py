"""sampler.py — `rwkvfast.Sampler`: the next token from logits, the RWKV way or llama.cpp's way.

    >>> s = Sampler.rwkv_chat(model.n_vocab, seed=42)     # doctest: +SKIP
    >>> tok = s.sample(logits); s.accept(tok)             # doctest: +SKIP

The algorithms are in csrc/sampler.h (C); this class holds the parameters, their defaults and
the checks. `mode="rwkv"` is the official RWKV sampler (ChatRWKV's API_DEMO_CHAT.py and the
`rwkv` package's PIPELINE): presence + count * frequency penalties over the tokens of the
current reply, decayed by penalty_decay per token; softmax; top-p with ties kept; top-k;
p^(1/T). `mode="llama"` is llama.cpp's default chain: repeat/presence/frequency penalties over
the last repeat_last_n tokens, top-k, typical, top-p, min-p, temperature. temperature 0 is
greedy in both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Iterable

import numpy as np

from rwkvfast import _core

__all__ = ["Sampler", "SamplerParams", "RWKV_CHAT_DEFAULTS", "RWKV_STATE_TUNED_DEFAULTS", "LLAMA_DEFAULTS"]


@dataclass(frozen=True)
class SamplerParams:
    mode: str = "rwkv"  # "rwkv" or "llama"
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    typical_p: float = 1.0  # llama mode only
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_decay: float = 1.0  # rwkv mode: per-token decay of the penalty counts
    repeat_penalty: float = 1.0  # llama mode
    repeat_last_n: int = 64  # llama mode: -1 = every generated token
    seed: int = 0


# The RWKV project's published RWKV-6 World chat settings: ChatRWKV API_DEMO_CHAT.py
# (GEN_TEMP = 1.0, GEN_TOP_P = 0.3, GEN_alpha_presence = 0.5, GEN_alpha_frequency = 0.5,
# GEN_penalty_decay = 0.996), https://github.com/BlinkDL/ChatRWKV/blob/main/API_DEMO_CHAT.py
RWKV_CHAT_DEFAULTS = SamplerParams(mode="rwkv", temperature=1.0, top_p=0.3, presence_penalty=0.5,
                                   frequency_penalty=0.5, penalty_decay=0.996)
# With a state-tuning file the RWKV docs lower top_p and the penalties (RWKV-Runner / the
# state-tuning guide: top_p 0.2, presence 0.3, frequency 0.3).
RWKV_STATE_TUNED_DEFAULTS = replace(RWKV_CHAT_DEFAULTS, top_p=0.2, presence_penalty=0.3, frequency_penalty=0.3)
# llama.cpp's common_params_sampling defaults.
LLAMA_DEFAULTS = SamplerParams(mode="llama", temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                               repeat_penalty=1.0, repeat_last_n=64)

_MODES = {"rwkv": 0, "llama": 1}


class Sampler:
    """Chooses tokens for one sequence; keeps its penalties, history and random generator.

    Same seed and same logits give the same tokens on every machine, SIMD level and thread
    count (the sampler is scalar C with its own generator).
    """

    def __init__(self, n_vocab: int, params: SamplerParams | None = None, *,
                 bias: dict[int, float] | None = None, banned: Iterable[int] = (), **overrides) -> None:
        p = replace(params or SamplerParams(), **overrides)
        if p.mode not in _MODES:
            raise ValueError(f"sampler mode must be 'rwkv' or 'llama', got {p.mode!r}")
        if not 0 <= int(p.seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2^64), got {p.seed}")
        self.params = p
        self.n_vocab = int(n_vocab)
        self._s = _core._Sampler(self.n_vocab, _MODES[p.mode], p.temperature, p.top_p, p.top_k, p.min_p,
                                 p.typical_p, p.presence_penalty, p.frequency_penalty, p.penalty_decay,
                                 p.repeat_penalty, p.repeat_last_n, int(p.seed))
        for t, b in (bias or {}).items():
            self._s.set_bias(int(t), float(b))
        for t in banned:
            self._s.set_bias(int(t), float("-inf"))

    @classmethod
    def rwkv_chat(cls, n_vocab: int, **overrides) -> "Sampler":
        """The official RWKV-6 World chat sampler (RWKV_CHAT_DEFAULTS), token 0 banned."""
        banned = overrides.pop("banned", (0,))
        return cls(n_vocab, RWKV_CHAT_DEFAULTS, banned=banned, **overrides)

    @classmethod
    def llama(cls, n_vocab: int, **overrides) -> "Sampler":
        """llama.cpp's default chain and values (LLAMA_DEFAULTS)."""
        return cls(n_vocab, LLAMA_DEFAULTS, **overrides)

    def __repr__(self) -> str:
        changed = {k: v for k, v in asdict(self.params).items() if v != getattr(SamplerParams(), k)}
        return f"Sampler({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def sample(self, logits: np.ndarray, u: float | None = None) -> int:
        """The next token for `logits` [n_vocab]. `u` in [0, 1) replaces the random draw."""
        t, _ = self._s.sample(np.ascontiguousarray(logits, dtype=np.float32), -1.0 if u is None else u, False)
        return t

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """The distribution sample() would draw from now (penalties included), [n_vocab]."""
        _, p = self._s.sample(np.ascontiguousarray(logits, dtype=np.float32), 0.0, True)
        return p

    def accept(self, token: int) -> None:
        """Record an emitted token (penalty counts decay, history grows)."""
        self._s.accept(int(token))

    def reset(self) -> None:
        """A new reply: forget the penalties and the history (the generator keeps going)."""
        self._s.reset()

    def reseed(self, seed: int) -> None:
        self._s.reseed(int(seed))

    def set_bias(self, token: int, bias: float) -> None:
        """Add `bias` to a token's logit from now on (float('-inf') bans it)."""
        self._s.set_bias(int(token), float(bias))
