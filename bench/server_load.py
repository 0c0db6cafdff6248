"""Load on rwkvfast-server: N concurrent streaming clients, a fixed number of requests each round.

    python bench/server_load.py -m model.gguf                  # starts the server, N = 1,4,8,16
    python bench/server_load.py --url http://127.0.0.1:8080    # a server that is already up

Every request is a chat turn: a system prompt all clients share, then a question of its own; it
generates exactly --max-tokens tokens (end-of-text is biased away so lengths do not vary).
Reported per N: requests/s, generated tokens/s over the whole round, and the percentiles of
time to first token and of the whole request. -np (slots) defaults to the largest N, so with
N <= slots every client is decoded in the same batched step; `--parallel 1` shows the same load
on a server that takes one sequence at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

SYSTEM = ("You are a helpful assistant. Answer briefly and accurately. If a question is unclear, "
          "say what you would need to know. ") * 3


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def _one(client: httpx.Client, url: str, key: str | None, i: int, max_tokens: int) -> tuple[float, float, int, int]:
    body = {"messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": f"Question {i}: what is {i} times {i + 7}? Show the steps."}],
            "max_tokens": max_tokens, "temperature": 1.0, "top_p": 0.7, "stream": True, "seed": i,
            "stream_options": {"include_usage": True},
            "logit_bias": {"0": -100}}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    first, n, pieces, fed = None, 0, 0, -1
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=600) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.read().decode(errors='replace')}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                pieces += 1
                if first is None:
                    first = time.perf_counter() - t0
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            if chunk.get("timings"):
                fed = chunk["timings"].get("prompt_n", fed)
    # a server that reports no usage when streaming (llama-server): one piece is one token
    return first if first is not None else float("nan"), time.perf_counter() - t0, n or pieces, fed


def run_round(url: str, key: str | None, n_clients: int, n_requests: int, max_tokens: int) -> dict:
    """n_clients threads take requests from one counter until n_requests are done."""
    lock, next_i, rows, errors = threading.Lock(), [0], [], []

    def client_loop() -> None:
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n_requests:
                return
            try:  # a connection per request: servers differ in how they keep idle ones alive
                with httpx.Client() as client:
                    row = _one(client, url, key, i, max_tokens)
            except Exception as e:  # noqa: BLE001 (reported, and the round fails below)
                errors.append(repr(e))
                return
            with lock:
                rows.append(row)

    threads = [threading.Thread(target=client_loop) for _ in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    ttft, lat, toks = [r[0] for r in rows], [r[1] for r in rows], sum(r[2] for r in rows)
    fed = [r[3] for r in rows if r[3] >= 0]
    return {"clients": n_clients, "requests": len(rows), "wall_s": wall, "req_per_s": len(rows) / wall,
            "gen_tok_per_s": toks / wall, "tokens": toks,
            "prompt_fed_mean": sum(fed) / len(fed) if fed else float("nan"),
            **{f"ttft_p{p}": _pct(ttft, p) for p in (50, 90, 99)},
            **{f"latency_p{p}": _pct(lat, p) for p in (50, 90, 99)}}


def _start(args, parallel: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "rwkvfast.cli.server", "-m", args.model, "--port", str(port),
           "-np", str(parallel), "--max-queue", "1024"]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return p, url
        except httpx.TransportError:
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not come up")
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", help="GGUF to serve (starts rwkvfast-server)")
    ap.add_argument("--url", help="an already running server instead")
    ap.add_argument("--api-key", default=os.environ.get("RWKVFAST_API_KEY"))
    ap.add_argument("-N", "--clients", default="1,4,8,16", help="concurrent clients per round (default 1,4,8,16)")
    ap.add_argument("--requests", type=int, default=32, help="requests per round (default 32)")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request (default 32)")
    ap.add_argument("-np", "--parallel", type=int, default=None, help="server slots (default: the largest N)")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("-o", "--output", choices=["md", "json"], default="md")
    args = ap.parse_args(argv)
    if not (args.model or args.url):
        ap.error("give -m MODEL or --url URL")
    ns = [int(x) for x in args.clients.split(",")]
    proc = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        proc, url = _start(args, args.parallel or max(ns))
    try:
        run_round(url, args.api_key, 1, 2, 4)  # warm: page the weights in, fill the prompt cache
        results = [run_round(url, args.api_key, n, args.requests, args.max_tokens) for n in ns]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    if args.output == "json":
        print(json.dumps(results, indent=1))
        return 0
    slots = "" if args.url else f", {args.parallel or max(ns)} slots"
    print(f"{args.model or url}{slots}: {args.requests} requests x {args.max_tokens} tokens per round\n")
    print("| clients | req/s | gen tok/s | prompt tokens processed / request | TTFT p50 / p90 / p99 (s) "
          "| latency p50 / p90 / p99 (s) |")
    print("|--:|--:|--:|--:|--:|--:|")
    for r in results:
        print(f"| {r['clients']} | {r['req_per_s']:.2f} | {r['gen_tok_per_s']:.1f} | {r['prompt_fed_mean']:.0f} | "
              f"{r['ttft_p50']:.2f} / {r['ttft_p90']:.2f} / {r['ttft_p99']:.2f} | "
              f"{r['latency_p50']:.2f} / {r['latency_p90']:.2f} / {r['latency_p99']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
