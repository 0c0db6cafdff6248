"""The demo model (rwkvfast/data/demo): small, genuinely trained, in the chat format, and what
rwkvfast-chat and rwkvfast-server use when no -m is given. The model file is made by
tools/train_demo.py and is not kept in git: where it is absent, those tests skip, and the
commands without -m must say what is missing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rwkvfast
from rwkvfast import perplexity as pp
from rwkvfast.demo import demo_model_path

from conftest import live_server

HELDOUT = Path(__file__).parent / "data" / "demo_heldout.txt"  # WordNet synsets left out of training
PPL_BOUND = 12.0  # measured 9.74 +/- 0.46 on this sample (9.53 +/- 0.07 on all of the held-out text)


def _demo_or_skip() -> Path:
    try:
        return demo_model_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def demo():
    with rwkvfast.Model(_demo_or_skip()) as m:
        yield m


def test_without_the_demo_file_the_commands_say_what_is_missing(monkeypatch, capsys):
    import rwkvfast.demo
    from rwkvfast.cli.chat import main as chat
    from rwkvfast.cli.server import main as server
    monkeypatch.setattr(rwkvfast.demo, "FILE", "no-such-demo.gguf")
    with pytest.raises(FileNotFoundError, match="not in this installation; pass -m"):
        demo_model_path()
    for run in (chat, server):
        assert run(["-no-cnv"] if run is chat else []) == 1
        err = capsys.readouterr().err
        assert err.startswith("error:") and "no-such-demo.gguf" in err and "tools/train_demo.py" in err


def test_it_is_small_with_its_licence_and_its_card():
    p = _demo_or_skip()
    assert p.stat().st_size <= 11_000_000  # "at most ~10 MB": 10.6 MB, the LoRAs stay F32 as llama.cpp keeps them
    assert (p.parent / "WORDNET-LICENSE").read_text().count("Princeton University") >= 2
    assert "tools/train_demo.py" in (p.parent / "README.md").read_text()
    meta = rwkvfast.gguf_metadata(p)["metadata"]
    assert meta["general.architecture"] == "rwkv6" and meta["general.name"] == "rwkv6-demo"
    assert meta["general.file_type"] == 7  # Q8_0
    toks = meta["tokenizer.ggml.tokens"]
    # a World-compatible vocabulary: <s>, the 256 single bytes (so any text encodes), World tokens
    assert toks[0] == "<s>" and len(toks) == 4096
    assert toks[meta["tokenizer.ggml.eot_token_id"]] == "\\n\\n"


def test_it_encodes_any_text_through_byte_fallback(demo):
    text = "naïve façade — 日本語 😀 \x00"
    assert demo.tokenizer.decode(demo.tokenizer.encode(text)) == text


def test_it_is_trained_held_out_perplexity(demo):
    """Uniform guessing over the vocabulary is a perplexity of 4096; the trained model, on
    WordNet entries it never saw, is far below that (measured: see rwkvfast/data/demo/README.md)."""
    r = pp.evaluate(demo, HELDOUT.read_text(encoding="utf-8"), ctx=512)
    assert r.n_chunks >= 10
    assert r.ppl < PPL_BOUND


def test_it_answers_in_the_chat_format_and_stops_at_the_blank_line(demo):
    chat = rwkvfast.Chat(demo, params=rwkvfast.SamplerParams(temperature=0.0), max_tokens=80)
    answer = "".join(chat.reply('What does "water" mean?'))
    assert answer and "\n\n" not in answer and len(demo.tokenizer.encode(answer)) < 80
    assert chat.last.result.stop_reason == "stop"
    words = set(answer.lower().replace(".", " ").replace(",", " ").split())
    assert words & {"liquid", "water", "body", "h2o", "drink"}


def test_rwkvfast_chat_without_m_runs_the_demo():
    _demo_or_skip()
    r = subprocess.run([sys.executable, "-m", "rwkvfast.cli.chat", "-no-cnv", "-p",
                        'User: What does "tree" mean?\\n\\nAssistant:', "-n", "30", "--temp", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "demo model" in r.stderr
    assert r.stdout.startswith('User: What does "tree" mean?\n\nAssistant:') and len(r.stdout) > 45


def test_rwkvfast_server_without_m_serves_the_demo():
    import httpx
    _demo_or_skip()
    with live_server(None, "-np", "1") as (url, _):
        r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": 'What does "cat" mean?'}], "temperature": 0, "max_tokens": 60})
        assert r.status_code == 200
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["content"].strip()
        assert "rwkv6-demo" in httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
