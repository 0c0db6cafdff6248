"""`rwkvfast-server`: the OpenAI-compatible API with llama-server's flags.

    rwkvfast-server -m rwkv-6-world-7b-Q8_0.gguf -ngl 99        # then http://127.0.0.1:8080

One engine thread batches every active sequence into one forward per step (rwkvfast.server).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import rwkvfast
from rwkvfast.cli.load import model_or_demo, open_model
from rwkvfast.sampler import RWKV_CHAT_DEFAULTS, Sampler


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rwkvfast-server",
                                 description="Serve an RWKV-6 or RWKV-7 GGUF model over HTTP (llama-server's flags): "
                                             "OpenAI-compatible /v1/completions and /v1/chat/completions (also "
                                             "without /v1), /tokenize, /detokenize, /completion, /props, /metrics, "
                                             "/health, /v1/models.")
    a = ap.add_argument
    a("-m", "--model", default=None,
      help="RWKV-6 or RWKV-7 GGUF file (default: the demo model that ships with rwkvfast)")
    a("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    a("--port", type=int, default=8080, help="port (default 8080)")
    a("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    a("-b", "--batch-size", type=int, default=512, help="prompt tokens processed together (default 512)")
    a("-ngl", "--n-gpu-layers", "--gpu-layers", type=int, default=0,
      help="layers on the Vulkan GPU (more than the model has: the output too)")
    a("-dev", "--device", type=int, default=None,
      help="Vulkan device index, as system_info lists them (default: $RWKVFAST_VK_DEVICE, else the first GPU; "
           "a CPU implementation such as llvmpipe only when named)")
    a("-np", "--parallel", type=int, default=4, help="sequences generated at once (default 4); more requests queue")
    a("--max-body-mb", type=int, default=16, help="largest request body accepted; beyond that 413 (default 16)")
    a("--max-queue", type=int, default=256, help="requests that may wait for a slot; beyond that 503 (default 256)")
    a("-c", "--ctx-size", type=int, default=65536,
      help="most tokens one request may use, prompt and answer together (default 65536; 0: no limit). RWKV "
           "has no context window (its state is fixed-size): this is a budget, and a longer prompt gets a 400")
    a("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $RWKVFAST_API_KEY or $LLAMA_API_KEY)")
    a("--alias", default="", help="model name reported by the API (default: the file name)")
    a("--log-disable", action="store_true", help="no request log (default: one line per request on stderr: "
                                                  "client, method, path, status, ms, prompt/cached/predicted tokens)")
    a("-v", "--verbose", action="store_true", help="the request log shows each request's body too (cut short)")
    a("--no-webui", action="store_true", help="no chat page at /: the API only")
    a("--cors-origins", default="",
      help="comma-separated origins whose web pages may call the API, e.g. http://localhost:3000, or * for any "
           "(llama-server's behaviour); default: none, only the server's own page")
    a("--timeout", type=float, default=600,
      help="read/write timeout, as llama-server's: a client that stops reading an answer for this long is dropped "
           "(default 600)")
    a("--header-timeout", type=float, default=10,
      help="seconds a client has to send a request's line and headers, from connecting or from the first byte "
           "of a later request on the same connection (default 10)")
    a("--body-timeout", type=float, default=60, help="seconds a request's body may take to arrive; then 408 (default 60)")
    a("--keep-alive", type=float, default=5, help="seconds an idle kept-alive connection stays open (default 5)")
    a("--max-connections", type=int, default=512,
      help="open connections at most; at the limit a new one closes the longest-idle connection, or gets a "
           "503 if none is idle (default 512)")
    a("--memory-reserve-mb", type=int, default=None,
      help="requests that would leave the machine less memory than this get a 503 (default: 5%% of RAM, at "
           "least 256)")
    a("--prompt-chunk", type=int, default=256, help="prompt tokens fed per engine step between decode steps (default 256)")
    a("--state-cache-mb", type=int, default=512, help="memory for cached prompt states (default 512; 0: off)")
    a("--state-cache-dir", default=None, help="also keep cached states in this directory, across restarts")
    a("--state-cache-disk-mb", type=int, default=4096, help="disk space for --state-cache-dir (default 4096)")
    a("-n", "--n-predict", type=int, default=-1, help="default answer length for chat requests (-1: until it ends)")
    a("--reasoning-format", choices=("deepseek", "none"), default="deepseek",
      help="RWKV-7 G1 reasoning in chat answers: deepseek (default) returns it as reasoning_content beside "
           "content, none leaves it in the content with its <think> tags (a request's reasoning_format wins)")
    a("--reasoning-budget", type=int, choices=(-1, 0), default=-1,
      help="as llama-server's: -1 lets G1 models reason first (default), 0 asks them to answer at once; a request "
           "may say chat_template_kwargs.enable_thinking or reasoning_effort")
    a("--temp", type=float, default=None, help="default temperature")
    a("--top-p", type=float, default=None, help="default top-p")
    a("--top-k", type=int, default=None, help="default top-k (0: off)")
    a("--min-p", type=float, default=None, help="default min-p (0: off)")
    a("--presence-penalty", type=float, default=None)
    a("--frequency-penalty", type=float, default=None)
    return ap


def _log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", file=sys.stderr, flush=True)


def _origins(arg: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in arg.split(",") if o.strip())


def _sampling(args):
    over = {k: v for k, v in (("temperature", args.temp), ("top_p", args.top_p), ("top_k", args.top_k),
                               ("min_p", args.min_p),
                               ("presence_penalty", args.presence_penalty),
                               ("frequency_penalty", args.frequency_penalty)) if v is not None}
    return replace(RWKV_CHAT_DEFAULTS, **over)


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    for name, v, lo in (("-t/--threads", args.threads, 1), ("-np/--parallel", args.parallel, 1),
                        ("--port", args.port, 0), ("--max-queue", args.max_queue, 0),
                        ("--max-body-mb", args.max_body_mb, 1), ("--state-cache-mb", args.state_cache_mb, 0),
                        ("--state-cache-disk-mb", args.state_cache_disk_mb, 0),
                        ("-b/--batch-size", args.batch_size, 1), ("--prompt-chunk", args.prompt_chunk, 1),
                        ("-c/--ctx-size", args.ctx_size, 0), ("--max-connections", args.max_connections, 1),
                        ("--memory-reserve-mb", args.memory_reserve_mb, 0)):
        if v is not None and v < lo:
            ap.error(f"argument {name}: must be >= {lo}, got {v}")
    for name, v in (("--timeout", args.timeout), ("--header-timeout", args.header_timeout),
                    ("--body-timeout", args.body_timeout), ("--keep-alive", args.keep_alive)):
        if not v > 0:
            ap.error(f"argument {name}: must be > 0 seconds, got {v}")
    try:
        Sampler(2, _sampling(args))
    except ValueError as e:
        ap.error(str(e))
    import uvicorn  # noqa: PLC0415 (imported late: --help and flag errors stay fast)

    from rwkvfast.server.app import App, ServerConfig
    from rwkvfast.server.connections import guarded_h11, raise_fd_limit
    from rwkvfast.server.engine import Engine
    from rwkvfast.server.memory import MemoryGuard
    from rwkvfast.server.shutdown import serve
    from rwkvfast.server.state_cache import StateCache

    try:
        model = open_model(model_or_demo(args.model), args.threads, args.batch_size, args.n_gpu_layers, args.device)
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    with model:
        try:
            cache = (StateCache(model, args.state_cache_mb << 20, args.state_cache_dir, args.state_cache_disk_mb << 20)
                     if args.state_cache_mb or args.state_cache_dir else None)
        except OSError as e:
            print(f"error: --state-cache-dir: {e}", file=sys.stderr)
            return 1
        memory = MemoryGuard(None if args.memory_reserve_mb is None else args.memory_reserve_mb << 20)
        engine = Engine(model, n_parallel=args.parallel, prompt_chunk=args.prompt_chunk, cache=cache,
                        max_queue=args.max_queue, memory=memory).start()
        key = args.api_key or os.environ.get("RWKVFAST_API_KEY") or os.environ.get("LLAMA_API_KEY")
        app = App(model, engine, ServerConfig(alias=args.alias, api_key=key, sampling=_sampling(args),
                                              n_predict=args.n_predict, max_body_bytes=args.max_body_mb << 20,
                                              max_tokens_per_request=args.ctx_size, body_timeout=args.body_timeout,
                                              reasoning="off" if args.reasoning_budget == 0 else "auto",
                                              reasoning_format=args.reasoning_format,
                                              cors_origins=_origins(args.cors_origins), web_ui=not args.no_webui,
                                              log=None if args.log_disable else _log, log_bodies=args.verbose))
        # a socket each, and a margin for the model, the cache directory and the log
        fds = raise_fd_limit(args.max_connections + 64)
        max_conn = min(args.max_connections, max(1, fds - 64))
        if max_conn < args.max_connections:
            print(f"warning: the open-file limit is {fds}: at most {max_conn} connections", file=sys.stderr)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                timeout_keep_alive=args.keep_alive, lifespan="off", timeout_graceful_shutdown=5,
                                http=guarded_h11(max_conn, args.header_timeout, args.timeout))
        print(f"rwkvfast-server {rwkvfast.__version__}: {model!r}, {args.parallel} parallel sequences\n"
              f"listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
        serve(config, engine)  # until SIGTERM or Ctrl-C (rwkvfast/server/shutdown.py)
    return 0


if __name__ == "__main__":
    sys.exit(main())
