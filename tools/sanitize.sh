#!/usr/bin/env bash
# Build rwkvfast._core with AddressSanitizer + UndefinedBehaviorSanitizer and run the C-heavy
# tests (or any command) on it. The build is a copy of the sources in build/asan/src, built in
# place there, so the normal in-place build in rwkvfast/ is never touched; a second run rebuilds
# only when a source changed (the copy keeps the sources' times).
#
#   tools/sanitize.sh                                   # build, then the default C-heavy tests
#   tools/sanitize.sh tests/test_gguf.py -k header      # build, then these pytest arguments
#   tools/sanitize.sh --durations=20                    # options only: the default tests with them
#   tools/sanitize.sh --exec python tests/fuzz/fuzz_gguf.py -runs=1000000   # any command
#   RWKVFAST_SANITIZE=fuzz tools/sanitize.sh --exec python tests/fuzz/fuzz_gguf.py -runs=1000000
#
# RWKVFAST_SANITIZE=fuzz builds with clang ($CC, default clang-14, or clang) and libFuzzer's
# coverage hooks in build/asan-fuzz/, and preloads atheris' asan_with_fuzzer.so instead of gcc's
# libasan, so atheris is guided by the C branches an input reaches and not by the Python alone.
#
# The Vulkan backend is left out (RWKVFAST_VULKAN=0): on the GPU path the work is done by Mesa's
# driver and the shaders, neither instrumented, so ASan would watch little of our code there for
# minutes of CI time; the normal run tests it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

MODE="${RWKVFAST_SANITIZE:-1}"
case "$MODE" in
    1) DIR="$ROOT/build/asan" ;;
    fuzz) DIR="$ROOT/build/asan-fuzz" ;;
    *) echo "sanitize.sh: RWKVFAST_SANITIZE must be 1 or fuzz, not '$MODE'" >&2; exit 2 ;;
esac
SRC="$DIR/src"

DEFAULT_TESTS=(tests/test_gguf.py tests/test_gguf_fuzz.py tests/test_tokenizer.py tests/test_kernels.py
               tests/test_matmul.py tests/test_quant_types.py tests/test_model.py tests/test_model_quant.py
               tests/test_sequence.py tests/test_sampler.py tests/test_quantize.py tests/test_rwkv7.py)
[ -f tests/test_fuzz.py ] && DEFAULT_TESTS+=(tests/test_fuzz.py)

# --- the copy: what setup.py reads. Stale files are removed first (setup.py compiles every
# csrc/**/*.c it finds); the built .so and Cython's _core.c stay, so an unchanged tree is not
# rebuilt. tar keeps modification times, which is what setuptools compares.
mkdir -p "$SRC"
rm -rf "$SRC/csrc"
[ -d "$SRC/rwkvfast" ] && find "$SRC/rwkvfast" -type f ! -name '_core*.so' ! -name '_core.c' -delete
tar -C "$ROOT" --exclude='*.so' --exclude='rwkvfast/_core.c' --exclude=__pycache__ \
    --exclude='rwkvfast/data/demo/*.gguf' -cf - setup.py pyproject.toml README.md csrc rwkvfast \
    | tar -C "$SRC" -xf -

# --- the runtime the process needs first. CPython itself is not built with ASan, so the ASan
# runtime must be loaded before anything else (LD_PRELOAD), or ASan refuses to start ("ASan
# runtime does not come first"). gcc's libubsan needs no preload: the extension links it
# (DT_NEEDED) and it may come later.
if [ "$MODE" = fuzz ]; then
    CC="${CC:-$(command -v clang-14 || command -v clang || true)}"
    [ -n "$CC" ] || { echo "sanitize.sh: RWKVFAST_SANITIZE=fuzz needs clang (apt-get install clang-14 libclang-rt-14-dev libomp-14-dev)" >&2; exit 2; }
    export CC LDSHARED="$CC -shared"
    PRELOAD="$(python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so"
else
    PRELOAD="$(gcc -print-file-name=libasan.so)"
fi
[ -f "$PRELOAD" ] || { echo "sanitize.sh: $PRELOAD not found" >&2; exit 2; }

# setup.py build_ext --inplace, with the C files compiled one per core: setuptools compiles one
# extension's files one after another, and the instrumented -O3 build of Cython's _core.c and
# of the AVX-512 kernels takes 3 minutes that way, under 2 on 2 cores.
start=$(date +%s)
(cd "$SRC" && RWKVFAST_SANITIZE="$MODE" RWKVFAST_VULKAN=0 python - >build.log 2>&1 <<'EOF'
import os, re, runpy, sys
from concurrent.futures import ThreadPoolExecutor
import setuptools  # noqa: F401 (first: it decides which distutils is "distutils")
from distutils.ccompiler import CCompiler

def compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
            extra_preargs=None, extra_postargs=None, depends=None):
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)
    def one(obj):
        src, ext = build[obj]
        extra = []
        if "clang" in os.path.basename(self.compiler_so[0]):
            # clang ignores "#pragma GCC target", which csrc/kernels/*.c use to be compiled for
            # their instruction set: the same ISA as -m flags for that one file
            m = re.search(r'^#pragma GCC target\("([^"]+)"\)', open(src).read(), re.M)
            extra = [f"-m{isa}" for isa in m.group(1).split(",")] if m else []
        self._compile(obj, src, ext, cc_args, extra_postargs + extra, pp_opts)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, objects))  # _core.c, the longest, is first
    return objects

CCompiler.compile = compile
sys.argv = ["setup.py", "build_ext", "--inplace"]
runpy.run_path("setup.py", run_name="__main__")
EOF
) \
    || { tail -n 40 "$SRC/build.log" >&2; echo "sanitize.sh: build failed (log: $SRC/build.log)" >&2; exit 1; }
SO="$(ls "$SRC"/rwkvfast/_core*.so)"
echo "sanitize.sh: $SO built in $(( $(date +%s) - start )) s"
# proof the build is instrumented: the extension calls into both runtimes
# (the symbol list is read whole first: grep -q stopping early would kill nm with SIGPIPE, a
# failure under pipefail)
syms="$(nm -D "$SO")"
grep -q ' U __asan_report_load' <<<"$syms" || { echo "sanitize.sh: $SO has no ASan instrumentation" >&2; exit 1; }
grep -q ' U __ubsan_handle_' <<<"$syms" || { echo "sanitize.sh: $SO has no UBSan instrumentation" >&2; exit 1; }
if [ "$MODE" = fuzz ]; then
    grep -q ' U __sanitizer_cov_8bit_counters_init' <<<"$syms" || { echo "sanitize.sh: $SO has no libFuzzer coverage" >&2; exit 1; }
fi

export LD_PRELOAD="$PRELOAD"
# detect_leaks=0: CPython does not free its interned objects, modules and arenas at exit, so
# LeakSanitizer would report thousands of leaks that are the interpreter's, and one of ours
# would drown in them. abort_on_error: a report kills the run (pytest cannot carry on as if it
# passed); the UBSan options make the first undefined behaviour fatal, with its stack.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# the run is ASan-only: no Vulkan was built, so nothing may demand it
unset RWKVFAST_REQUIRE_VULKAN
# OpenMP's threads sleep when idle rather than spin: on a busy machine (CI shares its cores) a
# spinning thread under ASan made each 2-thread token step 50x slower (130 ms, not 3 ms)
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# The check that the tests import this build, with the ASan runtime live in the process (not
# merely linked to): a pytest plugin, so it runs inside the very process that runs the tests.
cat >"$DIR/_sanitize_check.py" <<'EOF'
import ctypes, os

def check():
    import rwkvfast._core as core
    want = os.path.join(os.environ["RWKVFAST_SANITIZED_SRC"], "rwkvfast", "")
    assert core.__file__.startswith(want), f"imported {core.__file__}, not the sanitized build in {want}"
    # the ASan runtime is in the process and owns malloc: a fresh block's first byte past the
    # end is a poisoned red zone (AttributeError here: no runtime)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.__asan_address_is_poisoned.argtypes = [ctypes.c_void_p]
    p = libc.malloc(13)
    assert not libc.__asan_address_is_poisoned(p + 12) and libc.__asan_address_is_poisoned(p + 13), \
        "malloc is not ASan's"
    libc.free(ctypes.c_void_p(p))
    return core.__file__

def pytest_configure(config):
    print(f"sanitize.sh: pytest imports {check()}, ASan runtime live")
EOF
export RWKVFAST_SANITIZED_SRC="$SRC"
export PYTHONPATH="$SRC:$DIR${PYTHONPATH:+:$PYTHONPATH}"  # ahead of an editable install's finder

# --exec: the command runs from the repository root; a script (python tests/fuzz/x.py) imports
# this build, but python -c or -m would put the root, and the normal build, first on sys.path
if [ "${1:-}" = --exec ]; then
    shift
    # from $DIR, where no rwkvfast/ shadows PYTHONPATH (python -c puts the current folder first)
    (cd "$DIR" && python -c 'import _sanitize_check as c; print(f"sanitize.sh: {c.check()}, ASan runtime live")')
    exec "$@"
fi
# no test named (only options, e.g. --durations=20): the default list, less its two slowest
# groups under ASan (100 of its 175 s here), whose memory accesses the rest repeat in smaller
# sizes: 1000 tokens one at a time (the n_batch tests cross chunk boundaries) and batches of 33
# sequences (33-token sequences take the same GEMM tiles)
named=0 has_k=0
for a in "$@"; do
    [ -e "${a%%::*}" ] && named=1
    case "$a" in -k*) has_k=1 ;; esac
done
if [ $named = 0 ]; then
    set -- -q "$@" "${DEFAULT_TESTS[@]}"
    [ $has_k = 1 ] || set -- "$@" \
        -k "not (test_sequence_equals_token_serial and 1000) and not (test_batch_equals_one_sequence_at_a_time and 33)"
fi
start=$(date +%s)
# pytest's own script, not python -m pytest: -m would put the current folder, and with it the
# normal build in rwkvfast/, first on sys.path
pytest -p _sanitize_check -p no:cacheprovider "$@"
echo "sanitize.sh: tests took $(( $(date +%s) - start )) s"
