"""app.py — the HTTP side of rwkvfast-server: OpenAI-compatible and llama-server endpoints.

Handlers only parse, validate and format; every generation is a Job of the one Engine, whose
thread batches all active sequences. A streaming response that loses its client cancels the
job at the engine's next step.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import math
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rwkvfast import __version__, _core
from rwkvfast.chat import TURN_END, format_message
from rwkvfast.sampler import RWKV_CHAT_DEFAULTS, Sampler, SamplerParams
from rwkvfast.reasoning import THINK_OFF, THINK_ON, Reasoning, ThinkSplitter, split_answer, think_prompt
from rwkvfast.tokenizer import TooManyTokens
from rwkvfast.server.engine import Engine, Job, Overloaded
from rwkvfast.server.logprobs import CompletionLogprobs, LogprobCursor, chat_logprobs, llama_probabilities
from rwkvfast.server.memory import NoMemory
from rwkvfast.server.state_cache import PrefixWalk

_PAGE = resources.files("rwkvfast.server").joinpath("static/index.html").read_bytes()
_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


# per request, when requests are logged: a dict the handler fills ("job", "body")
_REQUEST: contextvars.ContextVar[dict | None] = contextvars.ContextVar("rwkvfast_request", default=None)


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.close = status, message, kind, close


def _error(status: int, message: str, kind: str, close: bool = False) -> JSONResponse:
    # close: the request could not be read to its end, so the connection cannot be reused
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers={"Connection": "close"} if close else None)


@dataclass
class ServerConfig:
    alias: str = ""
    api_key: str | None = None
    sampling: SamplerParams = RWKV_CHAT_DEFAULTS
    n_predict: int = -1
    max_body_bytes: int = 16 << 20
    # a request's prompt and answer together, in tokens (-c): RWKV has no context window, so
    # this is a budget that keeps one request from taking the machine's memory or time; 0: none
    max_tokens_per_request: int = 65536
    body_timeout: float = 60.0  # seconds a request's body may take to arrive
    # RWKV-7 G1 reasoning: "auto" (on), "on" or "off" unless a request says otherwise; and whether
    # it is returned apart, as reasoning_content ("deepseek", llama-server's name) or left in the
    # content with its tags ("none")
    reasoning: str = "auto"
    reasoning_format: str = "deepseek"
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API ("*": any); none: same origin only
    web_ui: bool = True  # the chat page at /
    # one line per request (method, path, status, tokens, milliseconds) to this callable; None: none
    log: Callable[[str], None] | None = None
    log_bodies: bool = False  # --verbose: each request's body too, cut short


@dataclass
class _Pending:
    """A non-streamed answer: `job` is awaited on the event loop, then `respond()` builds it."""
    job: Job
    respond: Callable[[], Response]


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (its body has been read: nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _number(body: dict, key: str, default, lo: float, hi: float, kind=float):
    v = body.get(key, default)
    if v is None:
        return default
    what = "an integer" if kind is int else "a number"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, f"'{key}' must be {what}, got {_show(v)}")
    if isinstance(v, float) and not math.isfinite(v):  # Python's JSON reads NaN and Infinity
        raise ApiError(400, f"'{key}' must be a finite number, got {v!r}")
    if kind is int and int(v) != v:
        raise ApiError(400, f"'{key}' must be {what}, got {v!r}")
    if not lo <= v <= hi:
        raise ApiError(400, f"'{key}' must be in [{lo}, {hi}], got {v!r}")
    return kind(v)


def _show(v: Any) -> str:
    """A value for an error message, cut short (a client may send megabytes)."""
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _check_text(body: Any) -> None:
    """Every string in the body, keys included, must be encodable text: JSON's \\ud800 escapes
    decode to lone surrogates, which no tokenizer (or UTF-8 writer) accepts. Iterative, so a
    deep document costs no stack."""
    todo = [(body, "")]
    while todo:
        v, where = todo.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ApiError(400, f"'{where or 'body'}' is not valid Unicode: a lone surrogate "
                                    f"{v[e.start]!r} at character {e.start}") from None
        elif isinstance(v, dict):
            for k, x in v.items():
                path = f"{where}.{_show(k)[1:-1]}" if where else _show(k)[1:-1]  # escaped: it may be the culprit
                todo.append((x, path))
                todo.append((k, path))
        elif isinstance(v, list):
            todo.extend((x, f"{where}[{i}]") for i, x in enumerate(v))


# OpenAI content parts that carry something other than text
_MEDIA_PARTS = {"image_url": "an image", "input_audio": "audio", "file": "a file", "image": "an image"}


def _content_text(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of content parts, whose text parts are joined
    with newlines (as llama-server and vLLM do). Parts that are not text are a 400: the model
    reads text only, and a silently dropped image would change what the user asked."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, f"'{where}' must be a string or a list of content parts, got {_show(content)}")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _MEDIA_PARTS:
            raise ApiError(400, f"'{where}[{j}]' is {_MEDIA_PARTS[kind]} ({kind} part): this model reads text only")
        if kind != "text" or not isinstance(part.get("text"), str):
            raise ApiError(400, f"'{where}[{j}]' must be a text part {{\"type\": \"text\", \"text\": ...}}, "
                                f"got {_show(part)}")
        texts.append(part["text"])
    return "\n".join(texts)


# OpenAI fields this server cannot honour, and when a value asks for nothing (so it may pass):
# never accepted and ignored, always a 400 that names them
_CHAT_UNSUPPORTED = {
    "tools": lambda v: v in (None, []), "functions": lambda v: v in (None, []),
    "tool_choice": lambda v: v in (None, "none", "auto"), "function_call": lambda v: v in (None, "none", "auto"),
    "response_format": lambda v: v is None or v == {"type": "text"},
    "modalities": lambda v: v in (None, ["text"]), "audio": lambda v: v is None, "prediction": lambda v: v is None,
    "web_search_options": lambda v: v is None,
}
_COMPLETION_UNSUPPORTED = {
    "echo": lambda v: v in (None, False), "best_of": lambda v: v in (None, 1), "suffix": lambda v: v in (None, ""),
}


def _refuse_unsupported(body: dict, table: dict) -> None:
    for key, harmless in table.items():
        if key in body and not harmless(body[key]):
            raise ApiError(400, f"'{key}' is not supported by this server (got {_show(body[key])})")


def _chat_logprobs_asked(body: dict) -> int | None:
    """Chat Completions' `logprobs` (true/false) and `top_logprobs` (0-20, with logprobs only)."""
    on = body.get("logprobs")
    if on is not None and not isinstance(on, bool):
        raise ApiError(400, f"'logprobs' must be true or false, got {_show(on)}")
    k = _number(body, "top_logprobs", None, 0, 20, int)
    if k is not None and not on:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true")
    return (k or 0) if on else None


def _stream_usage(body: dict) -> bool:
    """OpenAI's stream_options.include_usage (stream_options only with stream, as OpenAI has it)."""
    opts = body.get("stream_options")
    if opts is None:
        return False
    if not body.get("stream"):
        raise ApiError(400, "'stream_options' is only allowed when 'stream' is true")
    if not isinstance(opts, dict):
        raise ApiError(400, f"'stream_options' must be an object, got {_show(opts)}")
    on = opts.get("include_usage", False)
    if not isinstance(on, bool):
        raise ApiError(400, f"'stream_options.include_usage' must be true or false, got {_show(on)}")
    return on


def _stops(body: dict) -> list[str]:
    s = body.get("stop")
    if s is None:
        return []
    if isinstance(s, str):
        return [s]
    if isinstance(s, list) and all(isinstance(x, str) for x in s) and len(s) <= 16:
        return s
    raise ApiError(400, "'stop' must be a string or a list of up to 16 strings")


class App:
    def __init__(self, model, engine: Engine, config: ServerConfig) -> None:
        self.model, self.engine, self.cfg = model, engine, config
        self.name = config.alias or os.path.basename(model.path)
        # what OpenAI's system_fingerprint stands for: the backend that made the answer
        self.fingerprint = f"rwkvfast-{__version__}-{_core.cpu_level()}"
        self.started = int(time.time())
        routes = [
            Route("/", self.page, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/models", self.models, methods=["GET"]),
            Route("/props", self.props, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/tokenize", self._post(self._tokenize), methods=["POST"]),
            Route("/detokenize", self._post(self._detokenize), methods=["POST"]),
            Route("/v1/completions", self._post(self._completions), methods=["POST"]),
            Route("/completions", self._post(self._completions), methods=["POST"]),
            Route("/v1/chat/completions", self._post(self._chat), methods=["POST"]),
            Route("/chat/completions", self._post(self._chat), methods=["POST"]),
            Route("/completion", self._post(self._native_completion), methods=["POST"]),
            Route("/apply-template", self._post(self._apply_template), methods=["POST"]),
        ]
        # updated by the engine's thread as jobs end (cancelled and abandoned ones too)
        self.counts = {"requests": 0, "cancelled": 0, "prompt_tokens": 0, "cache_tokens": 0, "predicted_tokens": 0,
                       "prompt_seconds": 0.0, "predicted_seconds": 0.0}
        self._counts_lock = threading.Lock()
        engine.on_finish = self._count
        middleware = []
        if config.cors_origins:  # a web page on another origin may call the API
            middleware.append(Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                         allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"]))
        self.asgi = Starlette(routes=routes, middleware=middleware,
                              exception_handlers={404: self._not_found, 405: self._not_allowed,
                                                  ApiError: self._api_error})

    async def __call__(self, scope, receive, send) -> None:
        if self.cfg.log is None or scope["type"] != "http":
            await self.asgi(scope, receive, send)
            return
        t0, seen = time.perf_counter(), {"status": 0}
        token = _REQUEST.set(seen)  # the handler's thread sees this dict and puts the job in it

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)
        try:
            await self.asgi(scope, receive, sending)
        finally:
            _REQUEST.reset(token)
            job: Job | None = seen.get("job")
            client = scope.get("client") or ("-", 0)
            line = (f"{client[0]} {scope['method']} {scope['path']} {seen['status'] or '-'} "
                    f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
            if job is not None:
                r = job.result
                line += (f" prompt {len(job.prompt)} (cached {r.cache_n}) predicted {len(r.tokens)}"
                         f" {r.finish_reason or ('cancelled' if job.cancelled else 'unfinished')}")
            if self.cfg.log_bodies and "body" in seen:
                line += f" body {_show(seen['body'])}"
            self.cfg.log(line)

    # -- plumbing --------------------------------------------------------------------------

    async def _api_error(self, request: Request, e: ApiError) -> Response:
        return _error(e.status, e.message, e.kind, e.close)

    async def _not_found(self, request: Request, exc) -> Response:
        return _error(404, f"no endpoint {request.url.path}", "not_found_error")

    async def _not_allowed(self, request: Request, exc) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.url.path}", "invalid_request_error")

    def _authorize(self, request: Request) -> None:
        if not self.cfg.api_key:
            return
        got = request.headers.get("authorization", "")
        if not secrets.compare_digest(got.encode(), f"Bearer {self.cfg.api_key}".encode()):
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer ...)", "authentication_error")

    async def _body(self, request: Request) -> dict:
        self._authorize(request)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.cfg.max_body_bytes:
            raise ApiError(413, f"the request body is over {self.cfg.max_body_bytes} bytes", close=True)
        self._admit(int(declared) if declared.isdigit() else self.cfg.max_body_bytes, "the request body")
        raw, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.body_timeout
        parts = request.stream().__aiter__()
        while True:
            try:
                part = await asyncio.wait_for(parts.__anext__(), max(0.0, deadline - loop.time()))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise ApiError(408, f"the request body did not arrive within {self.cfg.body_timeout:g} s",
                               close=True) from None
            except ClientDisconnect:
                raise ApiError(400, "the client went away before sending its whole request", close=True) from None
            raw.append(part)
            size += len(part)
            if size > self.cfg.max_body_bytes:
                raise ApiError(413, f"the request body is over {self.cfg.max_body_bytes} bytes", close=True)
        try:
            body = json.loads(b"".join(raw))
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}")
        except RecursionError:
            raise ApiError(400, "the request body is not valid JSON: it is nested too deeply") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        _check_text(body)
        return body

    def _sampler(self, body: dict) -> Sampler:
        base = self.cfg.sampling
        params = replace(
            base,
            temperature=_number(body, "temperature", base.temperature, 0.0, 100.0),
            top_p=_number(body, "top_p", base.top_p, 0.0, 1.0),
            top_k=_number(body, "top_k", base.top_k, 0, self.model.n_vocab, int),  # llama-server's extensions
            min_p=_number(body, "min_p", base.min_p, 0.0, 1.0),
            presence_penalty=_number(body, "presence_penalty", base.presence_penalty, -2.0, 2.0),
            frequency_penalty=_number(body, "frequency_penalty", base.frequency_penalty, -2.0, 2.0),
            seed=_number(body, "seed", secrets.randbits(31), 0, 2**63 - 1, int),
        )
        if _number(body, "n", 1, 1, 1, int) != 1:
            raise ApiError(400, "'n' must be 1")
        sampler = Sampler(self.model.n_vocab, params)
        bias = body.get("logit_bias") or {}
        if not isinstance(bias, dict):
            raise ApiError(400, "'logit_bias' must be an object of token id -> bias")
        for k, v in bias.items():
            try:
                t, b = int(k), float(v)
            except (TypeError, ValueError, OverflowError):
                raise ApiError(400, f"bad logit_bias entry {_show(k)}: {_show(v)}")
            if not 0 <= t < self.model.n_vocab or not -100 <= b <= 100:
                raise ApiError(400, f"logit_bias {_show(k)}: token must be in [0, {self.model.n_vocab}), bias in [-100, 100]")
            sampler.set_bias(t, b)
        return sampler

    def _admit(self, body_bytes: int, what: str) -> None:
        """503 when parsing and tokenizing a body this big would take the machine's reserve
        (a JSON text becomes Python strings and token ids several times its size)."""
        memory = self.engine.memory
        if memory is not None:
            try:
                memory.admit(body_bytes * 12, what)
            except NoMemory as e:
                raise ApiError(503, f"the server is short of memory ({e}); retry later", "server_overloaded")

    def _max_tokens(self, body: dict, default: int) -> int:
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        return _number(body, key, default, -1, 1 << 20, int)

    def _encode(self, text: str, used: int = 0) -> list[int]:
        """The ids of `text`, which comes after `used` tokens of the same prompt: 400 when the
        prompt outgrows the per-request budget (counted before any list is built)."""
        budget = self.cfg.max_tokens_per_request
        try:
            return self.model.tokenizer.encode(text, budget - used if budget else None)
        except TooManyTokens as e:
            raise ApiError(400, f"the prompt is at least {used + e.n} tokens; this server takes at most {budget} "
                                f"tokens per request, prompt and answer together (-c/--ctx-size)") from None

    def _answer_budget(self, n_prompt: int, max_tokens: int) -> int:
        """max_tokens within what the per-request budget leaves after the prompt (-1: no limit)."""
        budget = self.cfg.max_tokens_per_request
        if not budget:
            return max_tokens
        left = budget - n_prompt
        if left <= 0:
            raise ApiError(400, f"the prompt is {n_prompt} tokens; this server takes at most {budget} tokens per "
                                f"request, prompt and answer together (-c/--ctx-size)")
        return left if max_tokens < 0 else min(max_tokens, left)

    # -- endpoints -------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if not self.cfg.web_ui:
            return _error(404, "the web page is off (--no-webui); the API is at /v1", "not_found_error")
        # static and secret-free, so served without the API key; the page asks for the key and
        # sends it with its API calls. The policy keeps it from reaching anything but this server.
        return Response(_PAGE, media_type="text/html; charset=utf-8", headers={
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                       "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"object": "list", "data": [
            {"id": self.name, "object": "model", "created": self.started, "owned_by": "rwkvfast"}]})

    async def props(self, request: Request) -> Response:
        self._authorize(request)
        p = self.cfg.sampling
        return JSONResponse({
            "model_path": self.model.path, "model_alias": self.name, "total_slots": self.engine.n_parallel,
            "default_generation_settings": {"n_predict": self.cfg.n_predict, "n_ctx": self.cfg.max_tokens_per_request,
                                            "temperature": p.temperature,
                                            "top_p": p.top_p, "presence_penalty": p.presence_penalty,
                                            "frequency_penalty": p.frequency_penalty},
            "chat_template": "RWKV World (User: ... / Assistant: ...)", "build_info": f"rwkvfast {__version__}",
            "reasoning": self._think_mode({}), "reasoning_format": self.cfg.reasoning_format})

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format."""
        self._authorize(request)
        with self._counts_lock:
            c = dict(self.counts)
        cache = self.engine.cache
        prompt_rate = c["prompt_tokens"] / c["prompt_seconds"] if c["prompt_seconds"] else 0.0
        predicted_rate = c["predicted_tokens"] / c["predicted_seconds"] if c["predicted_seconds"] else 0.0
        # llama-server's names first (dashboards built for it read these), then our own
        llama = [
            ("prompt_tokens_total", "counter", "Number of prompt tokens processed.", c["prompt_tokens"]),
            ("prompt_seconds_total", "counter", "Prompt process time", c["prompt_seconds"]),
            ("tokens_predicted_total", "counter", "Number of generation tokens processed.", c["predicted_tokens"]),
            ("tokens_predicted_seconds_total", "counter", "Predict process time", c["predicted_seconds"]),
            ("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.", prompt_rate),
            ("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.", predicted_rate),
            ("requests_processing", "gauge", "Number of requests processing.", self.engine.n_active),
            ("requests_deferred", "gauge", "Number of requests deferred.", self.engine.queue_length),
        ]
        rows = [
            ("requests_total", "counter", "ended generation requests (cancelled ones included)", c["requests"]),
            ("requests_cancelled_total", "counter", "requests whose client left or that a shutdown cut short",
             c["cancelled"]),
            ("prompt_tokens_total", "counter", "prompt tokens processed", c["prompt_tokens"]),
            ("prompt_tokens_cached_total", "counter", "prompt tokens taken from the state cache", c["cache_tokens"]),
            ("tokens_predicted_total", "counter", "tokens generated", c["predicted_tokens"]),
            ("prompt_tokens_seconds", "gauge", "average prompt throughput (tokens/s)", prompt_rate),
            ("predicted_tokens_seconds", "gauge", "average generation throughput per sequence (tokens/s)",
             predicted_rate),
            ("requests_processing", "gauge", "sequences being processed", self.engine.n_active),
            ("requests_deferred", "gauge", "requests waiting for a slot", self.engine.queue_length),
            ("state_cache_hits_total", "counter", "state cache hits", cache.hits if cache else 0),
            ("state_cache_misses_total", "counter", "state cache misses", cache.misses if cache else 0),
            ("state_cache_bytes", "gauge", "memory held by cached states", cache.bytes if cache else 0),
        ]
        text = "".join(f"# HELP {p}:{n} {h}\n# TYPE {p}:{n} {t}\n{p}:{n} {v}\n"
                       for p, table in (("llamacpp", llama), ("rwkvfast", rows)) for n, t, h, v in table)
        return Response(text, media_type="text/plain; version=0.0.4")

    def _post(self, handler):
        """An endpoint that parses the JSON body and runs handler(body) off the event loop (it
        tokenizes). Waiting for the engine holds no thread: streams are async generators, and
        a _Pending job is awaited here, cancelled if its client hangs up first."""
        async def endpoint(request: Request) -> Response:
            body = await self._body(request)
            seen = _REQUEST.get()
            if seen is not None:
                seen["body"] = body
            out = await run_in_threadpool(handler, body)
            if not isinstance(out, _Pending):
                return out
            done = asyncio.ensure_future(out.job.wait_async())
            gone = asyncio.ensure_future(_disconnected(request))
            try:
                await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                if not done.done():  # the client left (or the server is stopping)
                    out.job.cancel()
                    done.cancel()
            return out.respond() if done.done() and not done.cancelled() else Response(status_code=499)
        return endpoint

    def _tokenize(self, body: dict) -> Response:
        content = body.get("content")
        if not isinstance(content, str):
            raise ApiError(400, "'content' must be a string")
        return JSONResponse({"tokens": self._encode(content)})

    def _detokenize(self, body: dict) -> Response:
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise ApiError(400, "'tokens' must be a list of integers")
        if any(not 0 <= t < self.model.n_vocab for t in tokens):
            raise ApiError(400, f"token ids must be in [0, {self.model.n_vocab})")
        return JSONResponse({"content": self.model.tokenizer.decode(tokens)})

    def _completions(self, body: dict) -> Response:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "'prompt' must be a non-empty string")
        _refuse_unsupported(body, _COMPLETION_UNSUPPORTED)
        ids = self._encode(prompt)
        k = _number(body, "logprobs", None, 0, 5, int)  # Completions: how many alternatives (null: none)
        job = self._submit(body, ids, self._max_tokens(body, 16), _stops(body), logprobs=k)
        return self._respond(body, job, "text_completion", lambda text: {"text": text})

    def _native_completion(self, body: dict) -> Response:
        """llama-server's /completion: `prompt`, `n_predict`, `stream`, `n_probs`, `return_tokens`;
        answers `content` and its fields."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "'prompt' must be a non-empty string")
        n_probs = _number(body, "n_probs", 0, 0, 64, int)
        want_tokens = body.get("return_tokens", False)
        if not isinstance(want_tokens, bool):
            raise ApiError(400, f"'return_tokens' must be true or false, got {_show(want_tokens)}")
        ids = self._encode(prompt)
        n_predict = _number(body, "n_predict", self.cfg.n_predict, -1, 1 << 20, int)
        job = self._submit(body, ids, n_predict, _stops(body), logprobs=n_probs or None)
        tok = self.model.tokenizer
        cursor = LogprobCursor(tok, job.result.logprobs) if n_probs else None

        def probs(upto: int) -> dict:
            return {"completion_probabilities": llama_probabilities(tok, cursor.take(upto))} if cursor else {}

        def final(content: str) -> dict:
            r, p = job.result, job.sampler.params
            return {"content": content, "tokens": list(r.tokens) if want_tokens else [], "stop": True,
                    "model": self.name, "tokens_predicted": len(r.tokens),
                    "tokens_evaluated": len(job.prompt),  # the whole prompt, cached or not, as llama-server counts
                    "tokens_cached": r.cache_n, "truncated": False, "has_new_line": "\n" in r.text,
                    "stop_type": "limit" if r.finish_reason == "length" else "word" if r.stop else "eos",
                    "stopping_word": r.stop or "", "timings": self._usage_timings(job)["timings"],
                    "generation_settings": {"n_predict": n_predict, "temperature": p.temperature, "top_k": p.top_k,
                                            "top_p": p.top_p, "min_p": p.min_p, "seed": p.seed,
                                            "presence_penalty": p.presence_penalty,
                                            "frequency_penalty": p.frequency_penalty, "stop": job.stops,
                                            "n_probs": n_probs}}

        if not body.get("stream"):
            def respond() -> Response:
                self._check_shutdown(job)
                return JSONResponse({**final(job.result.text), **probs(len(job.result.text))})
            return _Pending(job, respond)

        async def events() -> AsyncIterator[str]:
            sent = 0
            try:
                async for piece in job.pieces():
                    sent += len(piece)
                    yield _sse({"content": piece, "stop": False, **probs(sent)})
                if self._shut_down(job):
                    yield _sse_error(_SHUTDOWN, "server_overloaded", 503)
                    return
                yield _sse({**final(""), **probs(len(job.result.text))})
            finally:
                job.cancel()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @staticmethod
    def _messages(body: dict) -> list[tuple[str, str]]:
        """The request's messages as (role, World-format text), checked."""
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ApiError(400, "'messages' must be a non-empty list")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise ApiError(400, f"'messages[{i}]' must be an object with a role and a content")
            if not isinstance(m.get("role"), str) or m["role"] not in _ROLES:
                raise ApiError(400, f"'messages[{i}].role' must be one of system, user, assistant; "
                                    f"got {_show(m.get('role'))}")
            out.append((m["role"], format_message(_content_text(m.get("content"), f"messages[{i}].content"))))
        return out

    def _apply_template(self, body: dict) -> Response:
        """llama-server's /apply-template: the prompt a chat request would run, as text."""
        msgs = self._messages(body)
        think = self._think_mode(body)
        text = "".join(f"{_ROLES[role]}: {content}{TURN_END}" for role, content in msgs)
        return JSONResponse({"prompt": text + "Assistant:" + think_prompt(think)})

    def _chat(self, body: dict) -> Response:
        _refuse_unsupported(body, _CHAT_UNSUPPORTED)
        msgs = self._messages(body)
        ids: list[int] = []
        # cache the state where other requests branch off: after the leading system prompt
        # (shared by many chats) and before the last message (an edited or retried turn)
        checkpoints: list[int] = []
        def enc(text: str) -> list[int]:
            return self._encode(text, len(ids))

        walk = self.engine.cache.walk() if self.engine.cache is not None else None
        for i, (role, content) in enumerate(msgs):
            system_ends = i > 0 and msgs[i - 1][0] == "system" and role != "system"
            if system_ends or (i > 0 and i == len(msgs) - 1):
                checkpoints.append(len(ids))
            # each turn tokenized on its own, an answer as it was generated: a conversation's
            # tokens then extend its previous request's, so the state cache finds the earlier turns
            if role == "assistant":
                ids += enc("Assistant:")
                ids += (walk and self._generated_as(walk, ids, content)) or enc(f" {content}{TURN_END}")
                continue
            ids += enc(f"{_ROLES[role]}: {content}{TURN_END}")
        think = self._think_mode(body)
        ids += enc("Assistant:")
        ids += enc(think_prompt(think)) if think != "none" else []
        job = self._submit(body, ids, self._max_tokens(body, self.cfg.n_predict), [TURN_END] + _stops(body),
                           checkpoints=checkpoints, logprobs=_chat_logprobs_asked(body))
        return self._respond(body, job, "chat.completion", None, think)

    def _think_mode(self, body: dict) -> str:
        """"on", "off" or "none" (RWKV-6: no tags) for this request: the server's setting, or
        the request's chat_template_kwargs.enable_thinking (llama-server) or reasoning_effort
        (OpenAI; "none" turns it off)."""
        if self.model.info.get("architecture") != "rwkv7":
            return "none"
        mode = self.cfg.reasoning
        kw = body.get("chat_template_kwargs")
        if kw is not None:
            if not isinstance(kw, dict):
                raise ApiError(400, "'chat_template_kwargs' must be an object")
            on = kw.get("enable_thinking")
            if on is not None:
                if not isinstance(on, bool):
                    raise ApiError(400, f"'chat_template_kwargs.enable_thinking' must be true or false, got {_show(on)}")
                mode = "on" if on else "off"
        effort = body.get("reasoning_effort")
        if effort is not None:
            if effort not in ("none", "minimal", "low", "medium", "high"):
                raise ApiError(400, f"'reasoning_effort' must be none, minimal, low, medium or high, got {_show(effort)}")
            mode = "off" if effort == "none" else "on"
        return "on" if mode == "auto" else mode

    def _reasoning_format(self, body: dict) -> str:
        fmt = body.get("reasoning_format", self.cfg.reasoning_format)
        if fmt not in ("deepseek", "none"):
            raise ApiError(400, f"'reasoning_format' must be deepseek or none, got {_show(fmt)}")
        return fmt

    def _generated_as(self, walk: PrefixWalk, prefix: list[int], content: str) -> list[int] | None:
        """The tokens this answer was generated as after `prefix` (through its turn's end), if
        a cached state remembers them. A client sends an answer back as text, and its
        re-tokenization can differ from what was generated; these tokens extend the cached
        state instead (across restarts too, with --state-cache-dir). `walk` follows the chat's
        growing prefix, so all the turns of a request cost linear time together."""
        end, tok = TURN_END.encode(), self.model.tokenizer
        tags = [(tok.encode(THINK_OFF), False, True), (tok.encode(THINK_ON), True, False)]
        for tail in walk.continuations(prefix):
            # a G1 turn began with the think tag its prompt opened; the client sends the answer
            # back without its reasoning, so the content after the tags is what must match
            lead, opened, closed = next(((t, o, c) for t, o, c in tags if list(tail[:len(t)]) == t), ([], False, False))
            cap = None if opened else 4 * len(content) + 256  # longer than the answer: not it
            text, n, ended = bytearray(), len(tail), False
            for i in range(len(lead), len(tail)):
                piece = tok.piece(tail[i])
                text += piece
                if end in text[-len(end) - len(piece):]:
                    n, ended = i + 1, True
                    break
                if cap is not None and len(text) > cap:
                    break
            said = bytes(text).split(end, 1)[0].decode("utf-8", "replace")
            answer = split_answer(said, opened, closed)[1] if lead else said
            if format_message(answer) == content:
                return list(tail[:n]) + ([] if ended else tok.encode(TURN_END))
        return None

    def _submit(self, body: dict, ids: list[int], max_tokens: int, stops: list[str],
                checkpoints: list[int] = (), logprobs: int | None = None) -> Job:
        max_tokens = self._answer_budget(len(ids), max_tokens)
        _stream_usage(body)  # checked before the job starts: a 400 after it would leave it running
        user = body.get("user")  # OpenAI's end-user id, for abuse monitoring: nothing to do with it here
        if user is not None and not isinstance(user, str):
            raise ApiError(400, f"'user' must be a string, got {_show(user)}")
        try:
            job = self.engine.submit(ids, self._sampler(body), max_tokens=max_tokens, stop=stops,
                                     checkpoints=checkpoints, logprobs=logprobs)
            seen = _REQUEST.get()
            if seen is not None:
                seen["job"] = job
            return job
        except Overloaded as e:
            raise ApiError(503, f"the server is busy ({e}); retry later", "server_overloaded")

    # -- responses -------------------------------------------------------------------------

    def _count(self, job: Job) -> None:
        r, c = job.result, self.counts
        with self._counts_lock:
            c["requests"] += 1
            c["cancelled"] += r.finish_reason == "cancelled"
            c["prompt_tokens"] += r.prompt_n
            c["cache_tokens"] += r.cache_n
            c["predicted_tokens"] += len(r.tokens)
            c["prompt_seconds"] += r.prompt_s
            c["predicted_seconds"] += r.gen_s

    def _usage_timings(self, job: Job) -> dict:
        r = job.result
        return {
            "usage": {"prompt_tokens": len(job.prompt), "completion_tokens": len(r.tokens),
                      "total_tokens": len(job.prompt) + len(r.tokens)},
            "timings": {"prompt_n": r.prompt_n, "cache_n": r.cache_n, "prompt_ms": r.prompt_s * 1e3,
                        "prompt_per_second": r.prompt_per_second, "predicted_n": len(r.tokens),
                        "predicted_ms": r.gen_s * 1e3, "predicted_per_second": r.predicted_per_second},
        }

    def _shut_down(self, job: Job) -> bool:
        return job.result.finish_reason == "cancelled" and self.engine.stopping

    def _check_shutdown(self, job: Job) -> None:
        if self._shut_down(job):
            raise ApiError(503, _SHUTDOWN, "server_overloaded")

    @staticmethod
    def _finish_reason(job: Job) -> str:
        return "length" if job.result.finish_reason == "length" else "stop"

    def _respond(self, body: dict, job: Job, obj: str, text_choice, think: str = "none") -> Response:
        cid = f"{'cmpl' if text_choice else 'chatcmpl'}-{uuid.uuid4().hex}"
        head = {"id": cid, "object": obj, "created": int(time.time()), "model": self.name,
                "system_fingerprint": self.fingerprint}
        include_usage = _stream_usage(body)
        chat = text_choice is None
        # a chat answer: its reasoning apart (deepseek), or with the tags the prompt opened (none)
        fmt = self._reasoning_format(body) if chat else None
        apart = chat and think != "none" and fmt == "deepseek"
        tags = think_prompt(think).lstrip(" ") if chat and not apart else ""

        def splitter() -> ThinkSplitter:
            return ThinkSplitter(opened=think == "on", closed=think == "off")

        tok = self.model.tokenizer
        fmt_lp = (lambda e: chat_logprobs(tok, e)) if chat else CompletionLogprobs(tok)

        if not body.get("stream"):
            def respond() -> Response:
                r = job.result
                if r.finish_reason == "error":
                    raise ApiError(500, f"generation failed: {r.error}", "server_error")
                self._check_shutdown(job)
                choice = {"index": 0, "finish_reason": self._finish_reason(job), "logprobs": None}
                if job.logprobs is not None:
                    choice["logprobs"] = fmt_lp(LogprobCursor(tok, r.logprobs).take(len(r.text)))
                if apart:
                    s = splitter()
                    s.feed(r.text)
                    s.finish()
                    msg = {"role": "assistant", "content": s.content}
                    if s.reasoning:
                        msg["reasoning_content"] = s.reasoning
                    choice["message"] = msg
                elif chat:
                    choice["message"] = {"role": "assistant", "content": (tags + r.text).lstrip(" ")}
                else:
                    choice.update(text_choice(r.text))
                return JSONResponse({**head, "choices": [choice], **self._usage_timings(job)})
            return _Pending(job, respond)
        if chat:
            head["object"] = "chat.completion.chunk"

        cursor = LogprobCursor(tok, job.result.logprobs) if job.logprobs is not None else None
        sent = 0  # characters of the job's text read so far

        def with_logprobs(choice: dict) -> dict:
            if cursor is not None:  # the tokens the text read so far reaches, not sent yet
                choice["logprobs"] = fmt_lp(cursor.take(sent))
            return choice

        def chunk(delta: dict) -> str:
            return _sse({**head, "choices": [with_logprobs({"index": 0, **delta, "finish_reason": None})]})

        async def events() -> AsyncIterator[str]:
            nonlocal sent
            split = splitter() if apart else None
            lead = chat and not apart  # the World answer's leading space is not part of the message
            try:
                if chat:
                    yield chunk({"delta": {"role": "assistant", "content": ""}})
                if tags:
                    yield chunk({"delta": {"content": tags}})
                    lead = False
                async for piece in job.pieces():
                    sent += len(piece)
                    if split is not None:
                        for part in split.feed(piece):
                            yield chunk({"delta": {"reasoning_content" if isinstance(part, Reasoning) else "content":
                                                   part}})
                        continue
                    if lead:
                        piece = piece.lstrip(" ")
                        lead = not piece
                        if not piece:
                            continue
                    yield chunk({"delta": {"content": piece}} if chat else text_choice(piece))
                for part in split.finish() if split is not None else []:
                    yield chunk({"delta": {"reasoning_content" if isinstance(part, Reasoning) else "content": part}})
                if job.result.finish_reason == "error":
                    yield _sse_error(f"generation failed: {job.result.error}", "server_error", 500)
                    return
                if self._shut_down(job):  # the answer is cut short: say so, then end the stream as usual
                    yield _sse_error(_SHUTDOWN, "server_overloaded", 503)
                    yield "data: [DONE]\n\n"
                    return
                last = {"delta": {}} if chat else text_choice("")
                sent = len(job.result.text)  # the tail a stop string held back, if any
                usage = self._usage_timings(job)
                yield _sse({**head, "choices": [with_logprobs({"index": 0, **last,
                                                               "finish_reason": self._finish_reason(job)})],
                            **usage})
                if include_usage:  # OpenAI's stream_options: the usage alone, in a chunk of no choices
                    yield _sse({**head, "choices": [], "usage": usage["usage"]})
                yield "data: [DONE]\n\n"
            finally:
                job.cancel()  # the client left (or we are done): free the slot at the next step

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


_SHUTDOWN = "the server is shutting down; retry on another server or after it restarts"


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _sse_error(message: str, kind: str, code: int) -> str:
    return _sse({"error": {"message": message, "type": kind, "code": code}})
