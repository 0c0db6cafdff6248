"""Opening the model the way the command-line tools do: with -ngl, on the GPU if there is one."""
from __future__ import annotations

import sys

import rwkvfast


def open_model(path: str, n_threads: int | None, n_batch: int, n_gpu_layers: int,
               device: int | None = None) -> rwkvfast.Model:
    """-ngl N puts N layers on the Vulkan device; without one (no backend in this build, no
    loader, no driver, not enough memory) it says why, once, and runs on the CPU, as llama.cpp
    does. Errors of the file itself propagate (ValueError, OSError)."""
    if n_gpu_layers <= 0:
        return rwkvfast.Model(path, n_threads=n_threads, n_batch=n_batch)
    try:
        m = rwkvfast.Model(path, n_threads=n_threads, n_batch=n_batch, n_gpu_layers=n_gpu_layers, device=device)
    except RuntimeError as e:
        print(f"warning: -ngl {n_gpu_layers}: {' '.join(str(e).split())}; running on the CPU", file=sys.stderr)
        return rwkvfast.Model(path, n_threads=n_threads, n_batch=n_batch)
    g = m.gpu
    print(f"note: -ngl {n_gpu_layers}: {g['layers']}/{m.info['n_layer']} layers"
          f"{' and the output' if g['head'] else ''} on the GPU ({g['device']})", file=sys.stderr)
    return m


def model_or_demo(path: str | None) -> str:
    """-m, or without one the packaged demo model (saying so; FileNotFoundError where it is absent)."""
    if path is not None:
        return path
    from rwkvfast.demo import demo_model_path
    demo = demo_model_path()
    print(f"note: no -m given: using the demo model packaged with rwkvfast ({demo.name}, a tiny RWKV-6 "
          "trained on WordNet that explains English words); pass -m MODEL.gguf for a real model", file=sys.stderr)
    return str(demo)
