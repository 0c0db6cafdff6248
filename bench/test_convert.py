"""Converting a ~1.2 GB BF16 checkpoint (.pth, 1.6B-wide layers, 6 of them) to GGUF: time and peak memory.

The conversion runs in a child process that reports its own peak RSS (VmHWM, mapped file
pages included), so the number is what a user's machine sees. The checkpoint is written once
to the bench directory by the tests' torch-zip writer.

    pytest bench/test_convert.py --benchmark-only -s
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from conftest import bench_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from torch_zip import rwkv6_weights, write_torch_zip  # noqa: E402

_CHILD = textwrap.dedent("""
    import json, sys, time
    from rwkvfast.convert import convert
    t0 = time.perf_counter()
    convert(sys.argv[1], sys.argv[2], sys.argv[3], overwrite=True)
    # VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's across exec)
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(json.dumps({"s": time.perf_counter() - t0, "peak_rss": hwm * 1024}))
""")


def _checkpoint() -> Path:
    path = bench_dir() / "rwkv6-6x2048-bf16.pth"
    if not path.exists():
        w = rwkv6_weights(n_layer=6, C=2048, F=7168, V=65536, seed=0)
        vocab = Path(__file__).resolve().parent.parent / "rwkvfast" / "data" / "rwkv_vocab_v20230424.txt"
        (path.parent / "rwkv_vocab_v20230424.txt").write_bytes(vocab.read_bytes())
        write_torch_zip(path, w, dtype="BF16")
    return path


def test_convert_peak_memory(benchmark, tmp_path):
    pth = _checkpoint()
    size = pth.stat().st_size
    res = {}
    for outtype in ("f16", "q8_0"):
        out = tmp_path / f"o-{outtype}.gguf"
        r = subprocess.run([sys.executable, "-c", _CHILD, str(pth), str(out), outtype],
                           capture_output=True, text=True, check=True)
        res[outtype] = json.loads(r.stdout)
        res[outtype]["out_bytes"] = out.stat().st_size
        out.unlink()
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update({"checkpoint_bytes": size, **{f"{k}_{m}": v for k, d in res.items()
                                                                 for m, v in d.items()}})
    for k, d in res.items():
        print(f"\nconvert {size / 2**30:.2f} GiB BF16 .pth -> {k} ({d['out_bytes'] / 2**30:.2f} GiB): "
              f"{d['s']:.1f} s, peak RSS {d['peak_rss'] / 2**30:.2f} GiB "
              f"= {d['peak_rss'] / size:.2f}x the checkpoint")
    assert np.isfinite(res["f16"]["s"])
