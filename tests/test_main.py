"""`python -m rwkvfast`: the first-run greedy completion."""
from __future__ import annotations

from rwkvfast.__main__ import main

from conftest import fixture_path


def test_greedy_completion_prints_prompt_and_tokens(capsys):
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    assert main(["-m", str(path), "-p", "Hello", "-n", "5", "-t", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Hello") and len(out) > len("Hello\n")
    assert "system_info: cpu:" in err and "5 tokens" in err


def test_bad_model_path_is_a_clean_error(tmp_path, capsys):
    assert main(["-m", str(tmp_path / "missing.gguf")]) == 1
    assert "missing.gguf" in capsys.readouterr().err
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 10)
    assert main(["-m", str(bad)]) == 1
    assert "bad.gguf" in capsys.readouterr().err
