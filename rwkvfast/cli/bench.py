"""`rwkvfast-bench`: prompt (pp) and generation (tg) speed, like llama-bench.

    rwkvfast-bench -m rwkv6-1b6-Q4_K_M.gguf -m rwkv6-1b6-F16.gguf -p 512 -n 128 -t 1,2 -r 5 -o md
    rwkvfast-bench -m rwkv6-1b6-Q8_0.gguf -ngl 0,99          # the CPU and the Vulkan GPU side by side

Each test runs -r times on a fresh state: ppN feeds N random tokens in one forward() call (the
sequence mode), tgN feeds one token and then generates N greedily, one forward() per token.
The table gives the mean and standard deviation of tokens per second; a progress line goes
to stderr while it runs.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import statistics
import sys
import time

import numpy as np

import rwkvfast
from rwkvfast.cli.load import open_model


def _ints(s: str) -> list[int]:
    try:
        out = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if any(v < 0 for v in out):
        raise argparse.ArgumentTypeError(f"values must be >= 0, got {s!r}")
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rwkvfast-bench", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", required=True, help="GGUF file (repeatable)")
    ap.add_argument("-p", "--n-prompt", type=_ints, action="append", default=None,
                    help="prompt lengths (comma-separated; default 512; 0 skips)")
    ap.add_argument("-n", "--n-gen", type=_ints, action="append", default=None,
                    help="generation lengths (default 128; 0 skips)")
    ap.add_argument("-t", "--threads", type=_ints, action="append", default=None,
                    help=f"thread counts (default {os.cpu_count()})")
    ap.add_argument("-b", "--batch-size", type=_ints, action="append", default=None,
                    help="prompt tokens processed together (comma-separated; default 512)")
    ap.add_argument("-ngl", "--n-gpu-layers", type=_ints, action="append", default=None,
                    help="layers on the Vulkan GPU (comma-separated; default 0; more than the model has: "
                         "the output too)")
    ap.add_argument("-dev", "--device", type=int, default=None,
                    help="Vulkan device index (rwkvfast.system_info() lists them; default: the first GPU; a CPU one only when named)")
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("-o", "--output", choices=("md", "json", "csv"), default="md")
    return ap


def _flat(lists, default):
    return [v for lst in lists for v in lst] if lists else default


def _params(meta: dict) -> int:
    return sum(math.prod(t["shape"]) for t in meta["tensors"])


def _label(n: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return str(n)


def _run_test(model, kind: str, n: int, rng) -> float:
    state = model.new_state()
    ids = rng.integers(1, model.n_vocab, max(n, 1)).tolist()
    if kind == "pp":
        t0 = time.perf_counter()
        model.forward(ids, state)
        return n / (time.perf_counter() - t0)
    logits = model.forward(ids[:1], state)
    t0 = time.perf_counter()
    for _ in range(n):
        logits = model.forward(int(np.argmax(logits)), state)
    return n / (time.perf_counter() - t0)


def run(args) -> list[dict]:
    prompts, gens = _flat(args.n_prompt, [512]), _flat(args.n_gen, [128])
    threads = _flat(args.threads, [os.cpu_count() or 1])
    batches, ngls = _flat(args.batch_size, [512]), _flat(args.n_gpu_layers, [0])
    tests = [("pp", p) for p in prompts if p > 0] + [("tg", g) for g in gens if g > 0]
    rows, total = [], len(args.model) * len(ngls) * len(threads) * len(batches) * len(tests) * args.repetitions
    done = 0
    rng = np.random.default_rng(0)
    tty = sys.stderr.isatty()
    for path, ngl, t, b in ((p, g, t, b) for p in args.model for g in ngls for t in threads for b in batches):
        with open_model(path, t, b, ngl, args.device) as m:
            meta = m.metadata
            info = m.info
            name = meta["metadata"].get("general.name") or os.path.basename(path)
            gpu = m.gpu
            backend = f"Vulkan ({gpu['device']})" if gpu else f"CPU ({rwkvfast._core.cpu_level()})"
            for kind, n in tests:
                _run_test(m, kind, min(n, 8), rng)  # warm-up: page in the weights
                speeds = []
                for _ in range(args.repetitions):
                    done += 1
                    if tty:
                        print(f"\rrwkvfast-bench: {done}/{total} {os.path.basename(path)} ngl={ngl} t={t} b={b} "
                              f"{kind}{n}   ",
                              end="", file=sys.stderr, flush=True)
                    speeds.append(_run_test(m, kind, n, rng))
                rows.append({"model": f"{name} {info.get('file_type') or info['weight_type']}",
                             "model_filename": path, "size_bytes": os.path.getsize(path),
                             "n_params": _params(meta), "backend": backend,
                             "n_gpu_layers": ngl if gpu else 0,
                             "threads": t, "n_batch": b, "test": f"{kind}{n}",
                             "avg_ts": statistics.fmean(speeds),
                             "stddev_ts": statistics.stdev(speeds) if len(speeds) > 1 else 0.0,
                             "samples_ts": speeds})
    if tty:
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    return rows


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[k for k in rows[0] if k != "samples_ts"] if rows else ["model"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    # like llama-bench: ngl and n_batch columns only when some run used other than the default
    ngl = any(r["n_gpu_layers"] for r in rows)
    nb = any(r["n_batch"] != 512 for r in rows)
    head = ("| model | size | params | backend |" + (" ngl |" if ngl else "") + " threads |" +
            (" n_batch |" if nb else "") + " test | t/s |")
    lines = [head, "| --- | ---: | ---: | --- |" + (" ---: |" if ngl else "") + " ---: |" +
             (" ---: |" if nb else "") + " ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size_bytes'] / 2**30:.2f} GiB | {_label(r['n_params'])} | {r['backend']} |" +
                     (f" {r['n_gpu_layers']} |" if ngl else "") + f" {r['threads']} |" +
                     (f" {r['n_batch']} |" if nb else "") +
                     f" {r['test']} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.repetitions < 1:
        _parser().error("argument -r/--repetitions: must be >= 1")
    if any(b < 1 for b in _flat(args.batch_size, [512])):
        _parser().error("argument -b/--batch-size: must be >= 1")
    try:
        rows = run(args)
    except (ValueError, OSError) as e:
        print(f"\nerror: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nerror: interrupted", file=sys.stderr)
        return 130
    print(render(rows, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
