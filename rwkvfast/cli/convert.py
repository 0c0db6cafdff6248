"""`rwkvfast-convert INPUT [--outfile OUT] [--outtype f16]`: RWKV-6 or RWKV-7 checkpoint to GGUF, like llama.cpp's
convert_hf_to_gguf.py, straight from a BlinkDL .pth (no torch, no renaming script).

    rwkvfast-convert RWKV-x060-World-1B6-v2.1-20240328-ctx4096.pth --outtype q8_0
    rwkvfast-convert v6-Finch-1B6-HF/ --outfile rwkv6-1b6-F16.gguf
    rwkvfast-convert model.pth --to-hf v6-Finch-1B6-HF/

A thin layer over rwkvfast.convert; progress goes to stderr. Every failure is one `error: ...`
line on stderr and exit status 1 (130 on Ctrl-C), never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rwkvfast.convert import OUTTYPES, convert, to_hf
from rwkvfast.quantize import parse_ftype


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rwkvfast-convert", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert an RWKV-6 or RWKV-7 checkpoint (BlinkDL .pth, .safetensors, or a Hugging Face directory)\n"
                    "to GGUF as llama.cpp's converter writes it. The pickle inside a .pth is read by a\n"
                    "reader that only rebuilds tensors: it never runs code from the file.")
    ap.add_argument("input", metavar="INPUT", help=".pth / .bin / .safetensors file or Hugging Face directory")
    ap.add_argument("--outfile", "-o", default=None,
                    help="GGUF to write (default: INPUT's name with -OUTTYPE.gguf, beside it)")
    ap.add_argument("--outtype", default="f16", type=str.lower, choices=OUTTYPES, metavar="TYPE",
                    help=f"tensor type of the big matrices: {', '.join(OUTTYPES)} (default f16); quantized "
                         f"types use rwkvfast-quantize's per-tensor rules")
    ap.add_argument("--model-name", default=None, help="general.name (default: INPUT's name)")
    ap.add_argument("--vocab", default=None,
                    help="RWKV World vocabulary file (default: rwkv_vocab_v20230424.txt beside INPUT, "
                         "else the packaged one)")
    ap.add_argument("--rescale-every", type=int, default=None,
                    help="rescale interval written to the file (default: config.json's, else 6)")
    ap.add_argument("--force", action="store_true", help="replace OUTFILE if it exists")
    ap.add_argument("--to-hf", metavar="DIR", default=None,
                    help="instead of a GGUF, write the Hugging Face layout (config.json, model.safetensors, "
                         "vocabulary) to DIR")
    return ap


def _progress(stream):
    """A bar redrawn in place on a terminal; one log line per tensor otherwise (logs, pipes)."""
    tty = stream.isatty()

    def show(p) -> None:
        if not tty:
            print(p, file=stream, flush=True)
            return
        width = 30
        done = width * p.index // p.count
        print(f"\r[{'#' * done}{'.' * (width - done)}] {p.index:4d}/{p.count} {p.name:<40.40s}",
              end="\n" if p.index == p.count else "", file=stream, flush=True)
    return show


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    src = Path(args.input)
    try:
        if args.to_hf:
            out = to_hf(src, args.to_hf, overwrite=args.force, rescale_every=args.rescale_every)
            print(f"rwkvfast-convert: wrote {str(out)!r} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
            return 0
        ft = parse_ftype(args.outtype)
        out = Path(args.outfile) if args.outfile else (
            src.with_name(f"{src.name if src.is_dir() else src.stem}-{ft.name}.gguf"))
        print(f"rwkvfast-convert: {str(src)!r} -> {str(out)!r} ({ft.name})", file=sys.stderr)
        convert(src, out, args.outtype, model_name=args.model_name, vocab=args.vocab,
                rescale_every=args.rescale_every, overwrite=args.force, progress=_progress(sys.stderr))
    except (ValueError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; nothing was written", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not a bad input (readers raise ValueError): still one line, no traceback
        print(f"error: internal error ({type(e).__name__}: {' '.join(str(e).split())[:300]}); nothing was "
              f"written; please report this with the input", file=sys.stderr)
        return 1
    size = out.stat().st_size
    print(f"rwkvfast-convert: wrote {str(out)!r} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.2f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
