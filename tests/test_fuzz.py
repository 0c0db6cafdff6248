"""Every fuzz harness in tests/fuzz/ (fuzz_*.py; the convention is in tests/fuzz/_harness.py),
run two ways:

- in-process: its seeds and a fixed set of deterministic mutations of them (`smoke`), so every
  harness runs on every machine, with or without atheris;
- under atheris, when it is installed: a short coverage-guided run in a subprocess, bounded in
  runs and in seconds (all harnesses together stay within FUZZ_BUDGET_S); libFuzzer must end
  with "Done N runs" and exit code 0 (a crash, an ASan report or an escaped exception is not 0).

The long runs (a million executions each) are README's "Sanitizers and fuzzing" command.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rwkvfast

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "fuzz"
HARNESSES = sorted(FUZZ.glob("fuzz_*.py"))
SMOKE_RUNS = 1000  # mutations per harness in-process: under a second each here, up to 20 s under ASan
# atheris: the seconds all harnesses together may fuzz, and a cap on the runs of each (a fast
# harness stops at the cap, a slow one at its share of the time). Start-up and the seeds' first
# runs come on top: a few seconds per harness.
FUZZ_BUDGET_S = 40
ATHERIS_RUNS = 50000
# The harness run as a script, with one change: atheris.instrument_all() instruments every
# function loaded (numpy, the standard library: 5000 functions, 30 s of start-up here), which
# the long runs can afford and a test of four harnesses cannot; here it instruments the
# functions of this repository and of the rwkvfast package (wherever it is installed), where the
# parsers are.
RUN_HARNESS = """
import gc, os, runpy, sys, types
import atheris

def instrument_ours(roots=tuple(sys.argv[1].split(os.pathsep))):
    for f in gc.get_objects():
        if isinstance(f, types.FunctionType) and f.__code__.co_filename.startswith(roots):
            try:
                atheris.instrument_func(f)
            except Exception as e:  # as instrument_all: that function stays uninstrumented
                print(f"cannot instrument {f}: {e}", file=sys.stderr)

atheris.instrument_all = instrument_ours
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as when run as a script
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _harness(path: Path):
    if str(FUZZ) not in sys.path:  # where the harnesses find _harness.py when run as scripts
        sys.path.insert(0, str(FUZZ))
    return importlib.import_module(path.stem)


@pytest.mark.parametrize("path", HARNESSES, ids=[p.stem for p in HARNESSES])
def test_harness_smoke(path):
    mod = _harness(path)
    seeds = mod.seeds()
    assert seeds, f"{path.name}: seeds() gave nothing"
    from _harness import smoke
    assert smoke(mod.one_input, seeds, SMOKE_RUNS) == len(seeds) + SMOKE_RUNS


@pytest.mark.parametrize("path", HARNESSES, ids=[p.stem for p in HARNESSES])
def test_harness_under_atheris(path, tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed (the test extra has it where PyPI has "
                                          "wheels: x86-64 Linux): coverage-guided runs skipped")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("gcc's ASan runtime defines libFuzzer's coverage hooks as no-ops, so atheris would fuzz "
                    "blind: the in-process smoke run covers this build; RWKVFAST_SANITIZE=fuzz (clang) "
                    "gives coverage-guided runs under ASan")
    seconds = max(2, FUZZ_BUDGET_S // len(HARNESSES))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, s in enumerate(_harness(path).seeds()):
        (corpus / f"seed-{i:03d}").write_bytes(s)
    # a corpus folder of our own: the harness' default, build/fuzz/<name>, keeps growing between
    # runs, and with it this test's time; crash files go to tmp_path too
    roots = os.pathsep.join([str(ROOT), os.path.dirname(rwkvfast.__file__)])
    cmd = [sys.executable, "-c", RUN_HARNESS, roots, str(path), f"-runs={ATHERIS_RUNS}",
           f"-max_total_time={seconds}", f"-artifact_prefix={tmp_path}{os.sep}", "-print_final_stats=1",
           str(corpus)]
    # in tmp_path, where libFuzzer may leave files (fuzz-0.log, crash-*)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, errors="replace",
                          timeout=seconds + 120)
    out = proc.stdout + proc.stderr
    what = f"{path.name} {' '.join(cmd[5:])}"
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{out[-6000:]}"
    done = re.search(r"^Done (\d+) runs in (\d+) second", out, re.M)
    assert done, f"no libFuzzer summary in the output of {what}:\n{out[-3000:]}"
    runs = int(done.group(1))
    assert runs > 0
    print(f"{path.stem}: {runs} runs in {done.group(2)} s under atheris")
