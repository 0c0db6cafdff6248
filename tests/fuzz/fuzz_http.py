"""Fuzz the server's HTTP handlers (rwkvfast/server/app.py) with arbitrary request bodies.

An input is one byte choosing the endpoint, then the body, sent through the ASGI app in this
process (no sockets). Generation is replaced by an engine that answers at once with one token
drawn by the request's own sampler, so every byte of the input reaches the parsing,
validation, sampling parameters and response formatting, thousands of times a second. A bug
is a 500, an exception escaping the app, a status the API does not use, or an error body that
is not OpenAI's shape.

    python tests/fuzz/fuzz_http.py -runs=1000000
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import main, scratch_dir  # noqa: E402

import numpy as np  # noqa: E402

import rwkvfast  # noqa: E402
from rwkvfast.server.app import App, ServerConfig  # noqa: E402
from rwkvfast.server.engine import _DONE, Engine, Job, _logprobs  # noqa: E402
from rwkvfast.testing import make_model  # noqa: E402

ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/completion", "/tokenize", "/detokenize"]
STATUSES = {200, 400, 408, 413, 503}


class InstantEngine(Engine):
    """Answers every job at once with one token sampled from fixed logits."""

    def submit(self, prompt, sampler, max_tokens=-1, stop=(), stop_on_eos=True, checkpoints=(), logprobs=None):
        if not prompt:
            raise ValueError("a job needs at least one prompt token")
        job = Job(prompt, sampler, max_tokens, stop, stop_on_eos, checkpoints, logprobs)
        t = sampler.sample(self._logits)
        sampler.accept(t)
        if logprobs is not None:
            job.result.logprobs.append(_logprobs(self._logits, t, logprobs))
        job.result.tokens, job.result.text, job.result.prompt_n = [t], self.model.tokenizer.decode([t]), len(prompt)
        job.result.finish_reason = "stop"
        job._put(job.result.text)
        job._put(_DONE)
        job._done.set()
        return job


_app = None
_loop = None


def _setup() -> App:
    global _app, _loop
    if _app is None:
        d = scratch_dir("fuzz_http")
        model = rwkvfast.Model(make_model(d / "m.gguf", n_layer=1, n_embd=64, vocab=300, head_size=32), n_threads=1)
        eng = InstantEngine(model)
        eng._logits = np.random.default_rng(0).normal(size=model.n_vocab).astype(np.float32)
        _app = App(model, eng, ServerConfig(max_body_bytes=1 << 20, max_tokens_per_request=4096))
        _loop = asyncio.new_event_loop()
    return _app


async def _call(app: App, path: str, body: bytes) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}
    sent = [False]
    never = asyncio.Event()

    async def receive():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()  # the client stays: nothing more arrives
        return {"type": "http.disconnect"}

    status, out = [0], []

    async def send(message):
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app(scope, receive, send)
    return status[0], b"".join(out)


def one_input(data: bytes) -> None:
    app = _setup()
    if not data:
        return
    path = ENDPOINTS[data[0] % len(ENDPOINTS)]
    status, body = _loop.run_until_complete(_call(app, path, data[1:]))
    if status not in STATUSES:
        raise AssertionError(f"{path}: status {status}: {body[:300]!r}")
    if status != 200:
        err = json.loads(body)["error"]
        if not (isinstance(err["message"], str) and err["code"] == status and isinstance(err["type"], str)):
            raise AssertionError(f"{path}: malformed error {body[:300]!r}")
    elif body.startswith(b"data: "):  # a stream: every event is JSON but the last
        events = [e for e in body.split(b"\n\n") if e]
        for e in events:
            if e != b"data: [DONE]":
                json.loads(e[len(b"data: "):])
    else:
        json.loads(body)  # a non-streamed answer is one JSON document


def seeds() -> list[bytes]:
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "More"}],
            "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "top_k": 5, "seed": 3, "stop": ["\n"],
            "logit_bias": {"5": -1.5}, "presence_penalty": 0.5, "frequency_penalty": 0.1, "min_p": 0.05}
    bodies = [
        (0, chat), (0, {**chat, "stream": True}), (0, {"messages": [{"role": "user", "content": "中文 🙂"}]}),
        (1, {"prompt": "Once upon", "max_tokens": 4, "temperature": 0}), (1, {"prompt": ["x"], "stream": True}),
        (1, {"prompt": "a", "max_completion_tokens": 2, "n": 1}),
        (0, {**chat, "logprobs": True, "top_logprobs": 3, "stream": True}), (1, {"prompt": "a", "logprobs": 2}),
        (0, {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}),
        (2, {"prompt": "Hello", "n_predict": 3}), (2, {"prompt": "Hello", "n_predict": 3, "stream": True}),
        (3, {"content": "Hello world"}), (4, {"tokens": [1, 2, 3]}),
    ]
    out = [bytes([i]) + json.dumps(b).encode() for i, b in bodies]
    out += [b"\x01" + b'{"prompt": "hi", "max_tokens": NaN}', b"\x00" + b'{"messages": [{"role": "user", '
            b'"content": "\\ud800"}]}', b"\x01" + b"[" * 3000, b"\x02" + b'{"prompt": 1e999}']
    return out


if __name__ == "__main__":
    main(seeds, one_input)
