"""rwkvfast-bench: llama-bench's flags and output formats on the fixture model."""
from __future__ import annotations

import csv
import io
import json

import pytest

from rwkvfast.cli.bench import main

from conftest import fixture_path


def test_json_rows_per_model_thread_and_test(capsys):
    m = str(fixture_path("tiny/gguf/tiny-F32.gguf"))
    assert main(["-m", m, "-p", "8,16", "-n", "4", "-t", "1,2", "-r", "2", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["threads"], r["test"]) for r in rows] == [(1, "pp8"), (1, "pp16"), (1, "tg4"),
                                                         (2, "pp8"), (2, "pp16"), (2, "tg4")]
    assert all(r["avg_ts"] > 0 and len(r["samples_ts"]) == 2 and r["n_params"] == 2466816 for r in rows)


def test_markdown_and_csv(capsys):
    m = str(fixture_path("tiny/gguf/tiny-F32.gguf"))
    assert main(["-m", m, "-p", "8", "-n", "0", "-r", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| model | size | params") and len(out) == 3 and "| pp8 |" in out[2]
    assert main(["-m", m, "-p", "0", "-n", "3", "-r", "1", "-o", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["test"] == "tg3"


def test_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["-m", "x.gguf", "-p", "a"])
    assert e.value.code == 2
    assert main(["-m", str(tmp_path / "none.gguf"), "-p", "8", "-n", "0", "-r", "1"]) == 1
    assert "error:" in capsys.readouterr().err


def test_batch_sizes_are_a_dimension(capsys):
    m = str(fixture_path("tiny/gguf/tiny-F32.gguf"))
    assert main(["-m", m, "-p", "20", "-n", "0", "-b", "7,512", "-r", "1", "-o", "json"]) == 0
    assert [r["n_batch"] for r in json.loads(capsys.readouterr().out)] == [7, 512]
    assert main(["-m", m, "-p", "20", "-n", "0", "-b", "7", "-r", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "| n_batch |" in out[0] and "| 7 |" in out[2]
    assert main(["-m", m, "-p", "20", "-n", "0", "-r", "1"]) == 0
    assert "n_batch" not in capsys.readouterr().out  # the default is not a column, as in llama-bench
    with pytest.raises(SystemExit) as e:
        main(["-m", m, "-b", "0"])
    assert e.value.code == 2


def test_gpu_layers_are_a_dimension(capsys):
    """-ngl 0,3 runs the model on the CPU and then on the Vulkan device (lavapipe in CI); where
    no device is found the -ngl run says so and falls back to the CPU, like llama.cpp."""
    from rwkvfast import _core
    m = str(fixture_path("tiny/gguf/tiny-F32.gguf"))
    assert main(["-m", m, "-p", "8", "-n", "2", "-r", "1", "-ngl", "0,3", "-o", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [(r["n_gpu_layers"] > 0, r["test"]) for r in rows][:2] == [(False, "pp8"), (False, "tg2")]
    assert rows[0]["backend"].startswith("CPU")
    if _core.vk_built() and "running on the CPU" not in captured.err:
        assert [(r["n_gpu_layers"], r["backend"].startswith("Vulkan")) for r in rows[2:]] == [(3, True), (3, True)]
    else:
        assert [r["n_gpu_layers"] for r in rows[2:]] == [0, 0]
    assert main(["-m", m, "-p", "8", "-n", "0", "-r", "1", "-ngl", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ("| ngl |" in out[0]) == rows[2]["backend"].startswith("Vulkan")


def test_an_rwkv7_model_on_the_cpu_and_the_device(capsys):
    from rwkvfast import _core
    m = str(fixture_path("rwkv7/tiny7/gguf/tiny7-Q8_0.gguf"))
    assert main(["-m", m, "-p", "8", "-n", "2", "-r", "1", "-ngl", "0,5", "-o", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["test"] for r in rows] == ["pp8", "tg2", "pp8", "tg2"]
    assert all(r["avg_ts"] > 0 and r["n_params"] == 3993600 for r in rows)  # tiny7: 4 x 256, LoRAs, vocab 1024
    if _core.vk_built() and "running on the CPU" not in captured.err:
        assert [r["backend"].startswith("Vulkan") for r in rows] == [False, False, True, True]
