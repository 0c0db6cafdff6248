"""`rwkvfast-perplexity -m MODEL -f TEXT`: perplexity of a model on a text, like llama-perplexity.

    rwkvfast-perplexity -m rwkv6-1b6-Q4_K_M.gguf -f wiki.test.raw -c 512
    rwkvfast-perplexity -m rwkv6-1b6-F16.gguf -f wiki.test.raw --kl-divergence-base base.kld
    rwkvfast-perplexity -m rwkv6-1b6-Q4_K_M.gguf -f wiki.test.raw --kl-divergence-base base.kld --kl-divergence

Chunks of -c tokens each start from a fresh state and score their second half, as
llama-perplexity does, so the numbers compare. The running estimate after each chunk goes to
stdout as [1]PPL,[2]PPL,... (with a progress bar on a terminal), then the final estimate.
--kl-divergence-base FILE alone saves the base model's log-probabilities there; with
--kl-divergence it reads them and prints how far this model's distributions are from them.
"""
from __future__ import annotations

import argparse
import sys
import time

from rwkvfast import perplexity as pp
from rwkvfast.cli.load import open_model


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rwkvfast-perplexity", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("-m", "--model", required=True, help="GGUF file")
    ap.add_argument("-f", "--file", required=True, help="text file (UTF-8)")
    ap.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default 512)")
    ap.add_argument("--chunks", type=int, default=None, help="score at most this many chunks")
    ap.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all cores)")
    ap.add_argument("-b", "--batch-size", type=int, default=512, help="prompt tokens processed together")
    ap.add_argument("-ngl", "--n-gpu-layers", type=int, default=0, help="layers on the Vulkan GPU")
    ap.add_argument("-dev", "--device", type=int, default=None, help="Vulkan device index")
    ap.add_argument("--kl-divergence-base", metavar="FILE", default=None,
                    help="where the base model's log-probabilities are saved (or, with --kl-divergence, read)")
    ap.add_argument("--kl-divergence", action="store_true",
                    help="compare with the log-probabilities saved in --kl-divergence-base")
    return ap


class _Progress:
    """A bar on a terminal (stderr); elsewhere the running estimates stream to stdout."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.values: list[str] = []

    def __call__(self, done: int, total: int, ppl: float) -> None:
        item = f"[{done}]{ppl:.4f},"
        self.values.append(item)
        if not self.tty:
            print(item, end="", flush=True)
            return
        el = time.perf_counter() - self.t0
        eta = el / done * (total - done)
        width = 30
        fill = round(width * done / total)
        print(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} chunks  PPL {ppl:.4f}  "
              f"{el / done:.2f} s/chunk  ETA {int(eta // 60)}:{int(eta % 60):02d} ", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty:
            print("\r" + " " * 90 + "\r", end="", file=sys.stderr)
            print("".join(self.values))
        else:
            print()


def _report_kl(r: pp.Result) -> None:
    k = r.kl
    print("====== Perplexity statistics ======")
    print(f"Mean PPL(Q)                   : {r.ppl:10.6f} ± {r.ppl_err:10.6f}")
    print(f"Mean PPL(base)                : {k.base_ppl:10.6f}")
    print(f"Mean PPL(Q)/PPL(base)         : {k.ppl_ratio:10.6f}")
    print("\n====== KL divergence statistics ======")
    print(f"Mean    KLD: {k.mean:10.6f} ± {k.err:10.6f}")
    print(f"Maximum KLD: {k.maximum:10.6f}")
    for name in ("99.9", "99", "95", "90"):
        print(f"{name + '%':<7} KLD: {k.percentiles[name]:10.6f}")
    print(f"Median  KLD: {k.percentiles['50']:10.6f}")
    for name in ("10", "5", "1"):
        print(f"{name + '%':<7} KLD: {k.percentiles[name]:10.6f}")
    print(f"Minimum KLD: {k.minimum:10.6f}")
    print("\n====== Token probability statistics ======")
    print(f"Same top p: {100 * k.same_top:6.3f} %")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.kl_divergence and not args.kl_divergence_base:
        _parser().error("--kl-divergence needs --kl-divergence-base FILE (saved by a run on the base model)")
    try:
        text = open(args.file, encoding="utf-8").read()
        with open_model(args.model, args.threads, args.batch_size, args.n_gpu_layers, args.device) as m:
            t0 = time.perf_counter()
            ids = m.tokenizer.encode(text)
            print(f"perplexity: tokenized {len(ids)} tokens in {1e3 * (time.perf_counter() - t0):.0f} ms",
                  file=sys.stderr)
            chunks, _ = pp.plan(len(ids), args.ctx_size, args.chunks)
            print(f"perplexity: calculating perplexity over {chunks} chunks, n_ctx={args.ctx_size}, "
                  f"batch_size={args.batch_size}", file=sys.stderr)
            progress = _Progress()
            r = pp.evaluate(m, ids, ctx=args.ctx_size, n_chunks=args.chunks,
                            save_base=args.kl_divergence_base if not args.kl_divergence else None,
                            kl_base=args.kl_divergence_base if args.kl_divergence else None, on_chunk=progress)
            progress.finish()
    except (ValueError, OSError, UnicodeDecodeError) as e:
        print(f"\nerror: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nerror: interrupted", file=sys.stderr)
        return 130
    print(f"Final estimate: PPL = {r.ppl:.4f} +/- {r.ppl_err:.5f}")
    if args.kl_divergence_base and not args.kl_divergence:
        print(f"perplexity: saved the base log-probabilities of {r.n_scored} tokens to {args.kl_divergence_base}",
              file=sys.stderr)
    if r.kl:
        print()
        _report_kl(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
