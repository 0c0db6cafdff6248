"""Files written whole or not at all (rwkvfast/atomic_file.py), and what a killed writer leaves:
removed by the next run that writes there, and nothing else with it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from rwkvfast.atomic_file import is_our_temp, sweep_stale, temp_beside, write_bytes
from rwkvfast.testing import make_model


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def _killed_mid_write(out) -> list:
    """Run write_gguf in a child that is killed (SIGKILL) halfway through the data: the crash
    the defect describes. Returns what it left in the directory."""
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from rwkvfast.gguf_writer import write_gguf
        def data():
            yield np.zeros(1 << 20, np.float32)
            os.kill(os.getpid(), signal.SIGKILL)
        write_gguf({str(out)!r}, {{"general.architecture": "x"}}, [("t", "F32", (1 << 21,), data)])
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert p.returncode == -signal.SIGKILL
    return [f for f in out.parent.iterdir() if f.name.startswith(f".{out.name}.")]


def test_a_quantize_killed_mid_write_leaves_a_temporary_the_next_run_removes(tmp_path):
    from rwkvfast.cli.quantize import main

    src = make_model(tmp_path / "in.gguf", n_layer=1, n_embd=64, vocab=300, head_size=32, dtype="F16")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".hidden.tmp").write_text("not named like ours")
    left = _killed_mid_write(tmp_path / "out.gguf")
    assert len(left) == 1 and left[0].stat().st_size >= 4 << 20 and is_our_temp(left[0].name)
    assert main([str(src), str(tmp_path / "out.gguf"), "Q8_0"]) == 0
    assert not left[0].exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == [".hidden.tmp", "in.gguf", "notes.txt", "out.gguf"]


def test_only_dead_writers_temporaries_are_swept(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    names = {f".a.gguf.{dead}-0123abcd.tmp": True, f".b.state.{live}-0123abcd.tmp": False,
             f".c.gguf.{dead}-xyz.tmp": False, f"c.gguf.{dead}-0123abcd.tmp": False, "d.tmp": False,
             f".e.gguf.{dead}-0123abcd.tmp.bak": False}
    for n in names:
        (tmp_path / n).write_bytes(b"1234")
    (tmp_path / f".dir.{dead}-0123abcd.tmp").mkdir()  # a folder: never ours
    assert sweep_stale(tmp_path) == (1, 4)
    assert {n for n in names if (tmp_path / n).exists()} == {n for n, gone in names.items() if not gone}
    assert sweep_stale(tmp_path / "missing") == (0, 0)


def test_a_temporary_name_is_ours_beside_its_destination(tmp_path):
    t = temp_beside(tmp_path / "model.gguf")
    assert t.parent == tmp_path and t.name.startswith(".model.gguf.") and is_our_temp(t.name)
    write_bytes(tmp_path / "x.bin", b"abc")
    assert (tmp_path / "x.bin").read_bytes() == b"abc" and [f.name for f in tmp_path.iterdir()] == ["x.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    dst = tmp_path / "keep.bin"
    dst.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_bytes(dst, object())  # type: ignore[arg-type]
    assert dst.read_bytes() == b"old" and [f.name for f in tmp_path.iterdir()] == ["keep.bin"]


def test_a_convert_killed_mid_write_is_swept_by_the_next_conversion(tmp_path):
    from pathlib import Path

    import rwkvfast
    from rwkvfast.cli.convert import main
    from torch_zip import rwkv6_weights, write_torch_zip  # tests/ helper

    w = rwkv6_weights(n_layer=1)
    lines = (Path(rwkvfast.__file__).parent / "data/rwkv_vocab_v20230424.txt").read_text(encoding="utf-8")
    (tmp_path / "rwkv_vocab_v20230424.txt").write_text("".join(lines.splitlines(True)[:w["emb.weight"].shape[0] - 1]),
                                                       encoding="utf-8")
    src = write_torch_zip(tmp_path / "m.pth", w)
    left = _killed_mid_write(tmp_path / "m-F16.gguf")
    assert len(left) == 1
    assert main([str(src), "--outfile", str(tmp_path / "m-F16.gguf")]) == 0
    assert not left[0].exists() and (tmp_path / "m-F16.gguf").exists()
