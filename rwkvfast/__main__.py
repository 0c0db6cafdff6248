"""`python -m rwkvfast -m model.gguf -p "prompt" -n 64`: greedy completion, a first run.

(The full chat/completion CLI with sampling is `rwkvfast-chat`.)
"""
from __future__ import annotations

import argparse
import sys
import time

import rwkvfast


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rwkvfast", description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True, help="RWKV-6 GGUF file")
    ap.add_argument("-p", "--prompt", default="The quick brown fox", help="prompt text")
    ap.add_argument("-n", "--n-predict", type=int, default=32, help="tokens to generate")
    ap.add_argument("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    args = ap.parse_args(argv)

    try:
        model = rwkvfast.Model(args.model, n_threads=args.threads)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with model:
        print(f"system_info: {rwkvfast.system_info()}", file=sys.stderr)
        print(f"model: {model!r}", file=sys.stderr)
        tok = model.tokenizer
        ids = tok.encode(args.prompt)
        state = model.new_state()
        t0 = time.perf_counter()
        logits = model.forward(ids, state)
        t1 = time.perf_counter()
        dec = tok.decoder()
        sys.stdout.write(args.prompt)
        n = 0
        for n in range(1, args.n_predict + 1):
            tid = int(logits.argmax())
            sys.stdout.write(dec.feed(tid))
            sys.stdout.flush()
            if n < args.n_predict:
                logits = model.forward(tid, state)
        sys.stdout.write(dec.flush() + "\n")
        t2 = time.perf_counter()
        print(f"prompt: {len(ids)} tokens in {t1 - t0:.3f} s; generation: {n} tokens in {t2 - t1:.3f} s "
              f"({n / max(t2 - t1, 1e-9):.1f} t/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
