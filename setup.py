"""Build of the rwkvfast._core extension: the C engine in csrc/ plus thin Cython.

No -march=native: SIMD kernels carry their own target pragmas and are chosen at
run time (csrc/kernels/cpu.c), so one build runs on any x86-64.
"""
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent
C_SOURCES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*.c"))

ext = Extension(
    "rwkvfast._core",
    sources=["rwkvfast/_core.pyx", *C_SOURCES],
    include_dirs=["csrc", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-std=c11", "-O3", "-fopenmp", "-fvisibility=hidden", "-Wall",
                        "-Werror=implicit-function-declaration",
                        "-Wno-unused-function"],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=cythonize([ext], compiler_directives={"language_level": "3"}))
