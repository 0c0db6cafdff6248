"""Perplexity and KL divergence of a model on a text, as llama.cpp's llama-perplexity measures
them, so that the numbers compare.

The tokens are cut into chunks of `ctx`; each chunk starts from a fresh state, and the tokens
of its second half are scored (the first half is context): the log-probability the model
gave to each of them from the tokens before it. The perplexity is exp(mean negative log
probability); its error is the standard error of that mean carried through exp.

KL divergence judges a quantized file against its base: a run on the base model saves the
log-probabilities of every scored token (`save_base`), a run on the quantized one reads them
back (`kl_base`) and reports how far its distributions are from the base's, token by token.

    >>> r = rwkvfast.perplexity.evaluate(model, text, ctx=512)      # doctest: +SKIP
    >>> print(f"PPL = {r.ppl:.4f} +/- {r.ppl_err:.5f}")           # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rwkvfast.atomic_file import create_temp, sweep_stale

MAGIC = b"RWKVKLD1"
_HEADER_MAX = 1 << 30  # a header beyond this is not one of ours


@dataclass
class KLStats:
    """Base against model, over the scored tokens (KLD in nats)."""
    mean: float
    err: float
    maximum: float
    percentiles: dict[str, float]  # "99.9", "99", "95", "90", "50", "10", "5", "1"
    minimum: float
    same_top: float  # fraction of tokens where both rank the same token first
    base_ppl: float
    ppl_ratio: float  # PPL(model) / PPL(base)


@dataclass
class Result:
    ppl: float
    ppl_err: float
    n_scored: int
    n_chunks: int
    ctx: int
    chunk_ppl: list[float] = field(default_factory=list)  # the running estimate after each chunk
    kl: KLStats | None = None


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return x


def _ppl(nll: np.ndarray) -> tuple[float, float]:
    mean = float(nll.mean())
    err = float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0
    return math.exp(mean), math.exp(mean) * err


def plan(n_tokens: int, ctx: int, n_chunks: int | None = None) -> tuple[int, int]:
    """(chunks, first scored position in a chunk); ValueError when the text is too short."""
    if ctx < 4:
        raise ValueError(f"ctx must be at least 4, got {ctx}")
    chunks = n_tokens // ctx
    if n_chunks is not None and n_chunks > 0:
        chunks = min(chunks, n_chunks)
    if chunks < 1:
        raise ValueError(f"the text has {n_tokens} tokens, fewer than one chunk of {ctx} "
                         f"(use a smaller -c/--ctx-size or a longer text)")
    return chunks, ctx // 2


class _BaseWriter:
    """The base run's log-probabilities: written beside `path` and renamed over it at the end,
    so an interrupted run leaves no partial file (and a file there before stays as it was)."""

    def __init__(self, path: Path, header: dict, n_rows: int, n_vocab: int):
        self.path = path
        head = json.dumps(header).encode()
        sweep_stale(path.parent)
        fd, self.tmp = create_temp(path)
        self.f = os.fdopen(fd, "wb")
        self.f.write(MAGIC + struct.pack("<Q", len(head)) + head)
        self.expect = n_rows * n_vocab * 2
        self.written = 0

    def write(self, logp: np.ndarray) -> None:
        b = logp.astype(np.float16).tobytes()
        self.f.write(b)
        self.written += len(b)

    def close(self, ok: bool) -> None:
        self.f.close()
        if ok and self.written == self.expect:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def read_base(path: str | os.PathLike) -> tuple[dict, np.ndarray]:
    """(header, log-probabilities [rows, n_vocab] float16, memory-mapped) of a saved base run;
    ValueError naming the file and what is wrong."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(8)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a saved base run (starts {magic!r}, expected {MAGIC!r})")
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: truncated header")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_HEADER_MAX, size - 16):
            raise ValueError(f"{path}: header length {n} exceeds the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
            rows, vocab = int(header["rows"]), int(header["n_vocab"])
            header["tokens"] = [int(t) for t in header["tokens"]]
            int(header["ctx"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: bad header ({e})") from None
    if rows < 0 or vocab < 1 or 16 + n + rows * vocab * 2 != size:
        raise ValueError(f"{path}: {rows} rows of {vocab} log-probabilities do not fill the file "
                         f"({size} bytes after a {n}-byte header)")
    data = np.memmap(path, dtype=np.float16, mode="r", offset=16 + n, shape=(rows, vocab))
    return header, data


def _kl_stats(kld: np.ndarray, same: np.ndarray, nll: np.ndarray, base_nll: np.ndarray) -> KLStats:
    ppl, _ = _ppl(nll)
    base_ppl, _ = _ppl(base_nll)
    q = {k: float(np.percentile(kld, float(k))) for k in ("99.9", "99", "95", "90", "50", "10", "5", "1")}
    err = float(kld.std(ddof=1) / math.sqrt(len(kld))) if len(kld) > 1 else 0.0
    return KLStats(mean=float(kld.mean()), err=err, maximum=float(kld.max()), percentiles=q,
                   minimum=float(kld.min()), same_top=float(same.mean()), base_ppl=base_ppl,
                   ppl_ratio=ppl / base_ppl)


def evaluate(model, text_or_ids: str | Sequence[int], ctx: int = 512, n_chunks: int | None = None,
             save_base: str | os.PathLike | None = None, kl_base: str | os.PathLike | None = None,
             on_chunk: Callable[[int, int, float], None] | None = None) -> Result:
    """Perplexity of `model` on a text (or its token ids); see the module's doc.

    save_base: write the scored log-probabilities there (the base model's run).
    kl_base: a file that a base run saved; the same tokens must be scored (ValueError if not).
    on_chunk(done, total, running_ppl) is called after each chunk (progress display).
    """
    ids = model.tokenizer.encode(text_or_ids) if isinstance(text_or_ids, str) else [int(t) for t in text_or_ids]
    chunks, first = plan(len(ids), ctx, n_chunks)
    used = ids[: chunks * ctx]
    per_chunk = ctx - 1 - first
    base = None
    if kl_base is not None:
        header, base = read_base(kl_base)
        if header["tokens"] != used or header["ctx"] != ctx:
            raise ValueError(f"{kl_base}: saved for another text or -c (ctx {header['ctx']}, "
                             f"{len(header['tokens'])} tokens; now ctx {ctx}, {len(used)} tokens)")
        if header["n_vocab"] != model.n_vocab:
            raise ValueError(f"{kl_base}: saved with a vocabulary of {header['n_vocab']}, "
                             f"the model has {model.n_vocab}")
    writer = None
    if save_base is not None:
        writer = _BaseWriter(Path(save_base), {"ctx": ctx, "rows": chunks * per_chunk, "n_vocab": model.n_vocab,
                                               "tokens": used}, chunks * per_chunk, model.n_vocab)
    nll, kld, same, base_nll, running = [], [], [], [], []
    ok = False
    try:
        for c in range(chunks):
            tok = used[c * ctx:(c + 1) * ctx]
            logits = model.forward(tok, model.new_state(), all_logits=True)
            logp = log_softmax(logits[first:ctx - 1])
            target = np.asarray(tok[first + 1:ctx])
            rows = np.arange(len(target))
            nll.append(-logp[rows, target])
            if writer is not None:
                writer.write(logp)
            if base is not None:
                b = log_softmax(np.asarray(base[c * per_chunk:(c + 1) * per_chunk]))  # sums to 1 again
                kld.append((np.exp(b) * (b - logp)).sum(axis=1))
                same.append(b.argmax(axis=1) == logp.argmax(axis=1))
                base_nll.append(-b[rows, target])
            running.append(_ppl(np.concatenate(nll))[0])
            if on_chunk:
                on_chunk(c + 1, chunks, running[-1])
        ok = True
    finally:
        if writer is not None:
            writer.close(ok)
    all_nll = np.concatenate(nll)
    ppl, err = _ppl(all_nll)
    kl = None
    if base is not None:
        kl = _kl_stats(np.concatenate(kld), np.concatenate(same), all_nll, np.concatenate(base_nll))
    return Result(ppl=ppl, ppl_err=err, n_scored=len(all_nll), n_chunks=chunks, ctx=ctx, chunk_ppl=running, kl=kl)
