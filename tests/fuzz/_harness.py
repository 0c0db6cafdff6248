"""The one runner behind every fuzz harness in this folder.

A harness is a module `fuzz_<parser>.py` that defines

    seeds() -> list[bytes]          valid inputs (and a few broken ones) to start from
    one_input(data: bytes) -> None  feeds `data` to the parser through its public entry point;
                                    catches exactly the errors the parser may raise (its
                                    documented ValueError/OSError, an HTTP 4xx) and lets
                                    anything else escape: an escape is a bug

and ends with `if __name__ == "__main__": main(seeds, one_input)`. Run as a script it fuzzes
with atheris (coverage-guided; libFuzzer's flags pass through; the seeds are written to a
corpus folder under build/fuzz/ when none is given):

    python tests/fuzz/fuzz_pth.py -runs=1000000            # or -max_total_time=600, -jobs=2 ...

Without atheris (or from pytest: tests/test_fuzz.py) `smoke()` feeds the seeds and a fixed
number of deterministic byte mutations of them in-process, so every harness also runs where
atheris does not install. A native crash (SIGSEGV, an ASan report) kills the process either way:
run the C-heavy harnesses under the sanitizer build to see where (README's "Sanitizers").
"""
from __future__ import annotations

import atexit
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[2]


def scratch_dir(prefix: str) -> Path:
    """A folder for this process's inputs, in memory where there is one. libFuzzer ends the process
    with C exit(), which skips atexit, so folders of earlier runs whose process is gone are
    removed here."""
    base = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
    for old in base.glob(f"{prefix}-*"):
        pid = old.name.rsplit("-", 1)[1]
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(old, ignore_errors=True)
            except OSError:  # alive, someone else's
                pass
    d = base / f"{prefix}-{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o700)
    atexit.register(shutil.rmtree, d, True)  # runs when the process ends normally (smoke runs)
    return d


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """One to four random edits: byte flips and sets, interesting integers, inserts, deletes,
    truncation, and splices with another seed."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if not b or op == 0:  # splice: a prefix of this one, a suffix of another
            other = rng.choice(pool)
            cut_a, cut_b = rng.randint(0, len(b)), rng.randint(0, len(other))
            b = b[:cut_a] + bytearray(other[cut_b:])
        elif op == 1:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 2:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 3:  # an integer that hits bounds checks, at any alignment
            v = rng.choice([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1])
            w = rng.choice([1, 2, 4, 8])
            p = rng.randrange(len(b))
            b[p:p + w] = (v & ((1 << 8 * w) - 1)).to_bytes(w, "little")
        elif op == 4:
            p = rng.randrange(len(b) + 1)
            b[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 5:
            p = rng.randrange(len(b))
            del b[p:p + rng.randint(1, 64)]
        else:
            del b[rng.randint(0, len(b)):]
    return bytes(b)


def smoke(one_input: Callable[[bytes], None], seeds: Iterable[bytes], n: int, seed: int = 0) -> int:
    """Feed every seed, then `n` mutations of them; returns how many inputs ran. An exception
    that escapes one_input propagates (a bug: the test fails and shows the input's repr)."""
    pool = [bytes(s) for s in seeds]
    rng = random.Random(seed)
    count = 0
    for data in pool:
        one_input(data)
        count += 1
    for _ in range(n):
        data = mutate(rng.choice(pool), rng, pool)
        try:
            one_input(data)
        except Exception as e:
            raise AssertionError(f"{type(e).__name__} escaped on input {data[:200]!r}...") from e
        count += 1
    return count


def main(seeds: Callable[[], list[bytes]], one_input: Callable[[bytes], None]) -> None:
    """Fuzz with atheris when it is installed (libFuzzer's flags in sys.argv), else a smoke run."""
    name = Path(sys.argv[0]).stem
    try:
        import atheris
    except ImportError:
        n = int(os.environ.get("FUZZ_SMOKE_RUNS", "10000"))
        print(f"{name}: atheris is not installed; {smoke(one_input, seeds(), n)} inputs in-process, no crash")
        return
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus folder given: start from the seeds
        corpus = ROOT / "build" / "fuzz" / name
        corpus.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(s)
        args.append(str(corpus))
    atheris.instrument_all()  # Python coverage of everything loaded (our parsers, zipfile, starlette)
    atheris.Setup(args, one_input)
    atheris.Fuzz()
