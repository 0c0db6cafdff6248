"""The demo model (rwkvfast/data/demo): small, genuinely trained, in the chat format, and what
rwkvfast-chat and rwkvfast-server use when no -m is given. tools/train_demo.py made it; git
keeps it in tests/data/demo and the build copies it into the package, so these tests run
wherever the package was built from this tree."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rwkvfast
from rwkvfast import perplexity as pp
from rwkvfast.demo import demo_model_path

from conftest import live_server

HELDOUT = Path(__file__).parent / "data" / "demo" / "heldout.txt"  # WordNet words left out of training
PPL_BOUND = 9.0  # measured 7.80 +/- 0.40 on this sample (7.94 +/- 0.10 on all of the held-out text)

# the probe words and a word of each one's definition; how many the model must know
COMMON_WORDS = {"water": "liquid", "river": "stream", "dog": "canis", "cat": "feline", "tree": "woody",
                "book": "written", "house": "dwelling", "happy": "joy", "run": "feet", "teacher": "teaching",
                "music": "auditory", "sun": "star", "car": "vehicle", "city": "urban", "friend": "affection",
                "mother": "birth", "rain": "drops", "school": "educational", "language": "communicating",
                "king": "sovereign"}
KNOWN_BOUND = 16  # measured 18 of 20

# largest logit difference from llama.cpp on the same Q8_0 file: measured 0.17 (logits up to 23.6).
# llama.cpp rounds the activations to 8 bits as well; each engine's Q8_0 is 0.14 (ours) and 0.20
# (llama.cpp's) from its own F32 result, and on the F32 export the two agree within 3.8e-6.
LLAMA_CPP_TOLERANCE = 0.25

TRACKED = Path(__file__).parent / "data" / "demo" / "rwkv6-demo-Q8_0.gguf"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo():
    with rwkvfast.Model.demo() as m:
        yield m


def test_the_build_put_the_tracked_model_into_the_package():
    """demo_model_path() is the package's copy (what a wheel carries); it must be the model git
    keeps, byte for byte (a stale copy means the package was built from another model)."""
    p = demo_model_path()
    assert p.parent == Path(rwkvfast.__file__).parent / "data" / "demo"
    assert p.read_bytes() == TRACKED.read_bytes()
    with rwkvfast.Model.demo(n_threads=1) as m:
        assert Path(m.path) == p and m.info["n_layer"] == 6


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
    p = demo_model_path()
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


def test_it_has_the_layout_of_llama_cpps_own_q8_0():
    """Read with llama.cpp's gguf-py: the same metadata keys, tensor names and tensor types as
    llama-quantize's Q8_0 of the tiny fixture (which llama.cpp wrote and loads), layer for layer."""
    from gguf import GGUFReader
    ours, theirs = GGUFReader(demo_model_path()), GGUFReader(ROOT / "tests" / "data" / "tiny" / "gguf" / "tiny-Q8_0.gguf")

    def layout(r):
        return {(re.sub(r"^blk\.\d+\.", "blk.N.", t.name), t.tensor_type.name) for t in r.tensors}
    assert set(ours.fields) == set(theirs.fields)
    assert layout(ours) == layout(theirs)
    per_layer = sum(name.startswith("blk.N.") for name, _ in layout(theirs))
    outside = len(layout(theirs)) - per_layer  # embeddings, norms, head
    assert len(ours.tensors) == 6 * per_layer + outside  # every layer tensor in each of the 6 layers


_LLAMA_RUN = """
import json, sys, numpy as np, llama_cpp
default_params = llama_cpp.llama_model_default_params
def no_extra_buffers():  # llama.cpp's AMX Q8_0 path dies of SIGILL where the VM hides AMX
    p = default_params()
    p.use_extra_bufts = False
    return p
llama_cpp.llama_model_default_params = llama_cpp.llama.llama_cpp.llama_model_default_params = no_extra_buffers
llm = llama_cpp.Llama(sys.argv[1], n_threads=2, n_ctx=256, logits_all=True, verbose=False)
ids = llm.tokenize(sys.argv[2].encode(), add_bos=False)
llm.eval(ids)
np.save(sys.argv[3], np.asarray(llm.scores[:len(ids)]))
print(json.dumps(ids))
"""


def test_llama_cpp_runs_it_as_we_do(demo, tmp_path):
    """Where llama-cpp-python is installed: llama.cpp loads the demo, tokenizes a chat turn as we
    do and computes the same logits (in a child process, as in test_quantize: a crash of llama.cpp
    must not take the run down)."""
    pytest.importorskip("llama_cpp")
    prompt = 'User: What does "river" mean?\n\nAssistant: "river" means a large natural stream'
    r = subprocess.run([sys.executable, "-c", _LLAMA_RUN, str(demo_model_path()), prompt, str(tmp_path / "l.npy")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    ids = json.loads(r.stdout.splitlines()[-1])
    assert ids == demo.tokenizer.encode(prompt)
    ours, theirs = demo.forward(ids, demo.new_state(), all_logits=True), np.load(tmp_path / "l.npy")
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()
    assert np.abs(ours - theirs).max() < LLAMA_CPP_TOLERANCE


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
    assert answer.strip().startswith('"water" means') and answer.rstrip().endswith(".")


def _words(text: str) -> set[str]:
    return set(text.lower().replace(".", " ").replace(",", " ").replace('"', " ").split())


def test_it_knows_what_common_words_mean(demo):
    """The probe words that training watched (tools/demo_corpus.py PROBE_WORDS, all drilled), each
    with a word of its WordNet definition. Measured when it was trained: 18 of 20 exactly as
    taught (cat and teacher get another word's entry); the bound leaves room for a retrained model
    to differ by a word or two, and never for the wrong meaning of water, river or dog."""
    right = set()
    for word, key in COMMON_WORDS.items():
        chat = rwkvfast.Chat(demo, params=rwkvfast.SamplerParams(temperature=0.0), max_tokens=80)
        answer = "".join(chat.reply(f'What does "{word}" mean?'))
        if key in _words(answer) and f"{word} means" in answer.replace('"', ""):
            right.add(word)
    assert {"water", "river", "dog"} <= right and len(right) >= KNOWN_BOUND


def test_rwkvfast_chat_without_m_runs_the_demo():
    r = subprocess.run([sys.executable, "-m", "rwkvfast.cli.chat", "-no-cnv", "-p",
                        'User: What does "tree" mean?\\n\\nAssistant:', "-n", "30", "--temp", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "demo model" in r.stderr
    assert r.stdout.startswith('User: What does "tree" mean?\n\nAssistant:') and len(r.stdout) > 45


def test_rwkvfast_server_without_m_serves_the_demo():
    import httpx
    with live_server(None, "-np", "1") as (url, _):
        r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": 'What does "cat" mean?'}], "temperature": 0, "max_tokens": 60})
        assert r.status_code == 200
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["content"].strip()
        assert "rwkv6-demo" in httpx.get(f"{url}/v1/models").json()["data"][0]["id"]


def test_the_readme_first_run_chats_with_the_demo():
    """`rwkvfast-chat` alone, as the README's first command runs it (here fed from a pipe)."""
    r = subprocess.run([sys.executable, "-m", "rwkvfast.cli.chat", "--temp", "0"], input='What does "river" mean?\n',
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("demo model") == 1
    answer = r.stdout.strip()
    assert answer.startswith('"river" means a large natural stream') and answer.endswith(".") and "\n" not in answer


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\nimport rwkvfast\n") + len("```python\n")
    code = text[start:text.index("```", start)]
    assert "Model.demo(" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "chat.state").is_file()
    out = capsys.readouterr().out
    assert "avx" in out or "scalar" in out  # system_info() printed
    assert out.rstrip().endswith("6")  # the demo's block count
