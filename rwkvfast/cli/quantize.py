"""`rwkvfast-quantize INPUT OUTPUT TYPE [NTHREADS]`: quantize an RWKV-6 or RWKV-7 GGUF, like llama-quantize.

    rwkvfast-quantize rwkv6-1b6-F16.gguf rwkv6-1b6-Q4_K_M.gguf Q4_K_M 8

A thin layer over rwkvfast.quantize.quantize; progress and sizes go to stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from rwkvfast.quantize import ftype_help, parse_ftype, quantize


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rwkvfast-quantize", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantize an RWKV-6 or RWKV-7 GGUF (F32/F16/BF16) to another type, choosing each\n"
                    "tensor's type as llama.cpp's llama-quantize does.",
        epilog=ftype_help())
    ap.add_argument("input", metavar="INPUT", help="RWKV-6 or RWKV-7 GGUF to read (F32, F16 or BF16)")
    ap.add_argument("output", metavar="OUTPUT", help="GGUF to write (replaced only once complete)")
    ap.add_argument("type", metavar="TYPE", help="quantization type name or llama.cpp ftype id (see below)")
    ap.add_argument("nthreads", metavar="NTHREADS", nargs="?", default=None,
                    help="worker threads (default: all cores)")
    ap.add_argument("-t", "--threads", default=None, help="same as NTHREADS")
    ap.add_argument("--allow-requantize", action="store_true",
                    help="accept an already quantized input (dequantized first; quality suffers)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the tensor types and sizes without writing anything")
    return ap


def _threads(args: argparse.Namespace) -> int | None:
    given = [v for v in (args.nthreads, args.threads) if v is not None]
    if len(given) == 2 and given[0] != given[1]:
        raise ValueError(f"NTHREADS {args.nthreads} and --threads {args.threads} disagree")
    if not given:
        return None
    try:
        n = int(given[0])
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"NTHREADS must be a positive integer, got {given[0]!r}")
    return n


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    started = []

    def start() -> None:  # once the input checked out, so that a bad input prints only its error
        if not started:
            started.append(True)
            print(f"rwkvfast-quantize: {'planning' if args.dry_run else 'quantizing'} {args.input!r} to "
                  f"{args.output!r} as {ftype.name} using {n_threads or os.cpu_count() or 1} threads",
                  file=sys.stderr)

    def progress(p) -> None:
        start()
        print(p, file=sys.stderr, flush=True)

    try:
        ftype = parse_ftype(args.type)
        n_threads = _threads(args)
        result = quantize(args.input, args.output, ftype, n_threads=n_threads,
                          allow_requantize=args.allow_requantize, dry_run=args.dry_run, progress=progress)
    except (ValueError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; {args.output!r} was not written", file=sys.stderr)
        return 130
    start()
    print(result.summary(), file=sys.stderr)
    print(f"rwkvfast-quantize: {'planned' if args.dry_run else 'wrote ' + repr(str(result.output))} "
          f"in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
