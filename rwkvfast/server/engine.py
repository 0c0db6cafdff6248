"""engine.py — many generations at once on one model: the server's scheduler.

One engine thread owns the model. Each step it feeds one chunk of one waiting prompt, then
decodes one token for every sequence that is generating, all in a single batched forward
(the weights are read once for the batch). A long prompt therefore never freezes the other
streams: they get a token between its chunks, which are sized (from the measured prompt
speed) to take about `step_seconds` while anyone is generating, and `prompt_chunk` tokens
when nobody is; prompts take turns chunk by chunk, so a short one is not held up behind a
long one either. At most `n_parallel` sequences are active; later jobs wait in order of
arrival, and with a MemoryGuard a job is refused (Overloaded) when the machine lacks the
memory to hold it. Compute runs in C without the GIL, so the thread that serves HTTP keeps
running.

    >>> eng = Engine(model, n_parallel=4)                                        # doctest: +SKIP
    >>> job = eng.submit(model.tokenizer.encode("User: hi\\n\\nAssistant:"), Sampler.rwkv_chat(model.n_vocab))  # doctest: +SKIP
    >>> "".join(job)                                                              # doctest: +SKIP

With a StateCache, a prompt starts from its longest cached prefix (a follow-up turn or a
shared system prompt processes only its new tokens; a repeated prompt none), and the states
after the prompt, after the answer and at the job's `checkpoints` (the chat's message
boundaries) are cached for later requests.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterator, Sequence

import numpy as np

from rwkvfast.generate import TextStream
from rwkvfast.sampler import Sampler
from rwkvfast.state import State
from rwkvfast.server.memory import BYTES_PER_TOKEN, MemoryGuard, NoMemory
from rwkvfast.server.state_cache import StateCache

__all__ = ["Engine", "Job", "JobResult", "Overloaded"]


class Overloaded(RuntimeError):
    """The queue is full: the caller should answer 503 and let the client retry."""


@dataclass
class JobResult:
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    finish_reason: str = ""  # "stop" (stop string or end of text), "length", "cancelled", "error"
    stop: str | None = None
    prompt_n: int = 0  # prompt tokens processed
    cache_n: int = 0  # prompt tokens taken from the state cache
    prompt_s: float = 0.0
    gen_s: float = 0.0
    error: str | None = None
    # when asked for: per generated token, (token, its log-probability, [(token, log-probability)
    # of the most likely ones]) under the model's own distribution (before temperature, penalties
    # and biases), appended before the token's text is handed out
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)

    @property
    def prompt_per_second(self) -> float:
        return self.prompt_n / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def predicted_per_second(self) -> float:
        return len(self.tokens) / self.gen_s if self.gen_s > 0 else 0.0


_DONE = object()


class Job:
    """A submitted generation: iterate for text pieces as they come (or `async for` over
    `pieces()` in an event loop, which then holds no thread while it waits); `result` when done."""

    def __init__(self, prompt: Sequence[int], sampler: Sampler, max_tokens: int, stops: Sequence[str],
                 stop_on_eos: bool, checkpoints: Sequence[int] = (), logprobs: int | None = None) -> None:
        self.prompt = [int(t) for t in prompt]
        self.logprobs = logprobs  # None: none; k: each token's and the k most likely ones
        self.checkpoints = sorted({int(c) for c in checkpoints if 0 < c < len(self.prompt)})
        self.sampler, self.max_tokens, self.stops, self.stop_on_eos = sampler, max_tokens, list(stops), stop_on_eos
        self.result = JobResult()
        self._events: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aqueue: asyncio.Queue | None = None

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self._events.get()
            if item is _DONE:
                return
            yield item

    async def pieces(self) -> AsyncIterator[str]:
        """The text pieces, awaited in the running event loop (one consumer: this or __iter__)."""
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:  # from here on the engine hands items to this loop; none are lost
            self._loop, self._aqueue = asyncio.get_running_loop(), q
            while not self._events.empty():
                q.put_nowait(self._events.get_nowait())
        while True:
            item = await q.get()
            if item is _DONE:
                return
            yield item

    async def wait_async(self) -> JobResult:
        async for _ in self.pieces():
            pass
        return self.result

    def _put(self, item) -> None:
        """Called by the engine thread."""
        with self._lock:
            if self._loop is None:
                self._events.put(item)
                return
            try:
                self._loop.call_soon_threadsafe(self._aqueue.put_nowait, item)
            except RuntimeError:  # that loop has closed: nobody is listening
                pass

    def cancel(self) -> None:
        """Stop at the engine's next step (e.g. the client went away); its slot is freed."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """Asked to stop (it ends at the engine's next step, if it has not ended)."""
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> JobResult:
        self._done.wait(timeout)
        return self.result

    @property
    def done(self) -> bool:
        return self._done.is_set()


def _logprobs(logits: np.ndarray, token: int, k: int) -> tuple[int, float, list[tuple[int, float]]]:
    """log softmax(logits) at `token`, and k of the largest, most likely first (equal values by id;
    which of several equal to the k-th are in is argpartition's choice)."""
    x = np.asarray(logits, dtype=np.float64)
    top = x.max()
    lse = top + np.log(np.exp(x - top).sum())
    best = np.argpartition(-x, k - 1)[:k] if 0 < k < len(x) else np.arange(len(x) if k else 0)
    best = sorted(best.tolist(), key=lambda i: (-x[i], i))
    return token, float(x[token] - lse), [(i, float(x[i] - lse)) for i in best]


class _Seq:
    """An active job: its state, what is left of its prompt, its text stream."""

    def __init__(self, job: Job, state: State, todo: list[int], logits: np.ndarray | None, tokenizer) -> None:
        self.job, self.state, self.todo, self.logits = job, state, todo, logits
        self.stream = TextStream(tokenizer, job.stops)
        self.t_start = time.perf_counter()
        self.t_gen: float | None = None
        self.fed_at = -1  # the engine step that last fed this prompt a chunk


class Engine:
    """The scheduler (see the module doc). `step()` runs one step in the caller's thread;
    `start()` runs steps in a thread of its own until `close()`."""

    def __init__(self, model, n_parallel: int = 4, prompt_chunk: int = 256, cache: StateCache | None = None,
                 max_queue: int = 256, step_seconds: float = 0.25, memory: MemoryGuard | None = None) -> None:
        if n_parallel < 1:
            raise ValueError(f"n_parallel must be >= 1, got {n_parallel}")
        if prompt_chunk < 1:
            raise ValueError(f"prompt_chunk must be >= 1, got {prompt_chunk}")
        self.model, self.n_parallel, self.prompt_chunk, self.cache = model, n_parallel, prompt_chunk, cache
        self.max_queue, self.step_seconds, self.memory = max_queue, step_seconds, memory
        probe = model.new_state()
        self._seq_bytes = int(probe.att_shift.nbytes + probe.ffn_shift.nbytes + probe.wkv.nbytes) + 8 * model.n_vocab
        self._prompt_rate: float | None = None  # prompt tokens/s, a moving average
        self._waiting: deque[Job] = deque()
        self._active: list[_Seq] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stopping = False  # shutting down: new jobs refused, running ones cancelled
        # called in the engine's thread with each job that ends, however it ends (the server's
        # counters: a cancelled or abandoned request counts too)
        self.on_finish: Callable[[Job], None] | None = None
        self.steps = 0

    # -- submitting ------------------------------------------------------------------------

    def submit(self, prompt: Sequence[int], sampler: Sampler, max_tokens: int = -1, stop: Sequence[str] = (),
               stop_on_eos: bool = True, checkpoints: Sequence[int] = (), logprobs: int | None = None) -> Job:
        """Queue a generation. `checkpoints`: prompt lengths after which the state is cached
        too (where other prompts are likely to branch off: the end of a system prompt);
        `logprobs`: record each token's log-probability and the `logprobs` most likely ones."""
        if logprobs is not None and not 0 <= logprobs <= 64:
            raise ValueError(f"logprobs must be in [0, 64], got {logprobs}")
        if not prompt:
            raise ValueError("a job needs at least one prompt token")
        if self.memory is not None:
            try:
                self.memory.admit(len(prompt) * BYTES_PER_TOKEN + self._seq_bytes, f"a prompt of {len(prompt)} tokens")
            except NoMemory as e:
                raise Overloaded(str(e)) from None
        job = Job(prompt, sampler, max_tokens, stop, stop_on_eos, checkpoints, logprobs)
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if self.stopping:
                raise Overloaded("it is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise Overloaded(f"{len(self._waiting)} requests are already waiting for a slot")
            self._waiting.append(job)
            self._cv.notify()
        return job

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    @property
    def n_active(self) -> int:
        return len(self._active)

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> "Engine":
        self._thread = threading.Thread(target=self._loop, name="rwkvfast-engine", daemon=True)
        self._thread.start()
        return self

    def stop_accepting(self) -> None:
        """A shutdown's first half: refuse new jobs and cancel every waiting and running one at
        the next step; the thread goes on, so their answers end (as "cancelled") at once."""
        with self._cv:
            self.stopping = True
            jobs = list(self._waiting) + [s.job for s in self._active]
            self._cv.notify()
        for j in jobs:
            j.cancel()

    def close(self) -> None:
        """Cancel everything and stop the thread."""
        with self._cv:
            self._closed = True
        self.stop_accepting()
        if self._thread is not None:
            self._thread.join()
        while self._waiting or self._active:
            self.step()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self._waiting or self._active or self._closed):
                    self._cv.wait()
                if self._closed and not (self._waiting or self._active):
                    return
            self.step()

    # -- one step --------------------------------------------------------------------------

    def step(self) -> bool:
        """Admit waiting jobs, feed one prompt chunk, decode one token for every generating
        sequence. Returns False when there was nothing to do."""
        for s in [s for s in self._active if s.job._cancel.is_set()]:
            self._finish(s, "cancelled")
        self._admit()
        if not self._active:
            return False
        self.steps += 1
        try:
            # the prompt fed the longest ago goes next: one long prompt never holds up the others
            feeding = min((s for s in self._active if s.todo), key=lambda s: s.fed_at, default=None)
            generating = [s for s in self._active if not s.todo and s.logits is not None]
            if feeding is not None:
                self._feed_chunk(feeding, self._chunk_size(bool(generating)))
            self._decode(generating + ([feeding] if feeding is not None and not feeding.todo else []))
        except Exception as e:  # a failure ends the jobs it touched, never the engine
            for s in list(self._active):
                s.job.result.error = str(e)
                self._finish(s, "error")
        return True

    def _admit(self) -> None:
        with self._cv:
            while self._waiting and len(self._active) < self.n_parallel:
                job = self._waiting.popleft()
                if job._cancel.is_set():
                    job.result.finish_reason = "cancelled"
                    self._ended(job)
                    continue
                state, todo, logits = self.model.new_state(), job.prompt, None
                hit = self.cache.lookup(job.prompt) if self.cache is not None else None
                if hit is not None:
                    state, todo = hit.state, job.prompt[hit.n:]
                    logits = hit.logits if not todo else None
                    job.result.cache_n = hit.n
                self._active.append(_Seq(job, state, list(todo), logits, self.model.tokenizer))

    def _chunk_size(self, others_waiting: bool) -> int:
        """prompt_chunk, or while others wait for their next token about step_seconds of
        prompt (in multiples of 16 tokens, what the GEMM kernels like; 16 before any is timed)."""
        if not others_waiting:
            return self.prompt_chunk
        n = 16 if self._prompt_rate is None else int(self._prompt_rate * self.step_seconds) // 16 * 16
        return min(self.prompt_chunk, max(16, n))

    def _feed_chunk(self, s: _Seq, size: int) -> None:
        fed = len(s.job.prompt) - len(s.todo)  # prompt tokens already in the state
        nxt = next((c for c in s.job.checkpoints if c > fed), len(s.job.prompt))
        n = min(size, nxt - fed)
        chunk, s.todo = s.todo[:n], s.todo[n:]
        s.fed_at = self.steps
        t0 = time.perf_counter()
        logits = self.model.forward(chunk, s.state)
        dt = time.perf_counter() - t0
        s.job.result.prompt_s += dt
        s.job.result.prompt_n += n
        fed += n
        if n >= 16 and dt > 0:
            rate = n / dt
            self._prompt_rate = rate if self._prompt_rate is None else 0.7 * self._prompt_rate + 0.3 * rate
        if not s.todo:
            s.logits = logits
        if self.cache is not None and fed == nxt:  # at a checkpoint or the prompt's end
            self.cache.insert(s.job.prompt[:fed], s.state, logits)

    def _decode(self, seqs: list[_Seq]) -> None:
        feed: list[_Seq] = []
        for s in seqs:
            r = s.job.result
            if s.t_gen is None:
                s.t_gen = time.perf_counter()
            if 0 <= s.job.max_tokens <= len(r.tokens):
                self._finish(s, "length")
                continue
            t = s.job.sampler.sample(s.logits)
            if t == 0 and s.job.stop_on_eos:
                self._finish(s, "stop")
                continue
            s.job.sampler.accept(t)
            if s.job.logprobs is not None:
                r.logprobs.append(_logprobs(s.logits, t, s.job.logprobs))
            r.tokens.append(t)
            feed.append(s)
        if not feed:
            return
        logits = self.model.forward_batch([s.job.result.tokens[-1] for s in feed], [s.state for s in feed])
        for s, row in zip(feed, logits):
            s.logits = row  # fed before shown: the state holds every token produced
            out = s.stream.feed(s.job.result.tokens[-1])
            if out:
                s.job.result.text += out
                s.job._put(out)
            if s.stream.stop is not None:
                s.job.result.stop = s.stream.stop
                self._finish(s, "stop")

    def _finish(self, s: _Seq, reason: str) -> None:
        r = s.job.result
        tail = s.stream.finish() if reason in ("length", "stop") else ""
        if tail:
            r.text += tail
            s.job._put(tail)
        r.finish_reason = reason
        r.gen_s = time.perf_counter() - s.t_gen if s.t_gen is not None else 0.0
        if self.cache is not None and reason in ("length", "stop") and s.logits is not None and not s.todo:
            self.cache.insert(s.job.prompt + r.tokens, s.state, s.logits)
        self._ended(s.job, s)

    def _ended(self, job: Job, seq: _Seq | None = None) -> None:
        """Counted first, then out of the active list, then done: whoever sees the job done or
        the engine idle also sees it counted."""
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception:  # a counter must never stop the engine
                pass
        if seq is not None:
            self._active.remove(seq)
        job._put(_DONE)
        job._done.set()
