"""rwkvfast.generate and rwkvfast.chat: stop strings and UTF-8 across tokens, state kept aligned."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast
from rwkvfast.chat import Chat, format_message
from rwkvfast.generate import generate

from conftest import fixture_path


@pytest.fixture(scope="module")
def model():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf"), n_threads=1) as m:
        yield m


class Scripted:
    """A sampler that emits a fixed list of token ids (the tiny vocabulary: id = byte + 1)."""

    def __init__(self, ids):
        self.ids, self.accepted = list(ids), []

    def sample(self, logits):
        return self.ids[len(self.accepted)] if len(self.accepted) < len(self.ids) else 0

    def accept(self, t):
        self.accepted.append(t)


def byte_ids(b: bytes):
    return [c + 1 for c in b]


def test_stop_string_split_across_tokens_is_not_emitted(model):
    ids = byte_ids(b"ab\n") + byte_ids(b"\nc")
    st = model.new_state()
    g = generate(model, "x", st, Scripted(ids), stop=["\n\n"])
    pieces = list(g)
    assert "".join(pieces) == "ab" and g.result.stop_reason == "stop" and g.result.stop == "\n\n"
    assert "\n" not in "".join(pieces)
    # every generated token is in the state: the same ids fed from scratch give the same state
    ref = model.new_state()
    model.forward(model.tokenizer.encode("x") + g.result.tokens, ref)
    np.testing.assert_array_equal(st.wkv, ref.wkv)
    assert g.result.tokens == ids[:4]


def test_held_back_prefix_is_released_when_it_does_not_complete(model):
    ids = byte_ids(b"a\nb")
    g = generate(model, "x", model.new_state(), Scripted(ids), stop=["\n\n"], max_tokens=3)
    assert list(g) == ["a", "\nb"] and g.result.stop_reason == "length"


def test_utf8_split_across_tokens_streams_whole_characters(model):
    text = "中文😀"
    g = generate(model, "x", model.new_state(), Scripted(byte_ids(text.encode())), max_tokens=len(text.encode()))
    pieces = list(g)
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)
    assert all(p for p in pieces) and len(pieces) == 3


def test_eos_and_length(model):
    g = generate(model, "x", model.new_state(), Scripted(byte_ids(b"hi")))
    assert "".join(g) == "hi" and g.result.stop_reason == "eos"
    g = generate(model, "x", model.new_state(), rwkvfast.Sampler(model.n_vocab, seed=1), max_tokens=5)
    list(g)
    assert len(g.result.tokens) == 5 and g.result.stop_reason == "length"
    assert g.result.prompt_tokens == 1 and g.result.gen_tokens_per_s > 0


def test_format_message_folds_newlines():
    assert format_message("  a\n\n\nb\r\n\r\nc  ") == "a\nb\nc"


def test_a_second_turn_feeds_only_its_new_text(model):
    chat = Chat(model, system="You are helpful.", seed=3, max_tokens=12)
    first = "".join(chat.reply("Hello there"))
    t1 = chat.last.result
    before = model.n_tokens_processed
    "".join(chat.reply("And\n\n\nthen?"))
    t2 = chat.last.result
    closing = 0 if t2.stop_reason == "stop" else len(model.tokenizer.encode(TURN_END_TEXT))
    new_prompt = model.tokenizer.encode("User: And\nthen?\n\nAssistant:")
    assert model.n_tokens_processed - before == len(new_prompt) + len(t2.tokens) + closing
    assert chat.turns[0].reply == first.lstrip(" ")
    # the state is exactly the transcript's tokens fed from the start
    ref = model.new_state()
    ids = model.tokenizer.encode("System: You are helpful.\n\nUser: Hello there\n\nAssistant:") + t1.tokens
    if t1.stop_reason != "stop":
        ids += model.tokenizer.encode(TURN_END_TEXT)
    ids += new_prompt + t2.tokens
    if t2.stop_reason != "stop":
        ids += model.tokenizer.encode(TURN_END_TEXT)
    model.forward(ids, ref)
    np.testing.assert_array_equal(chat.state.wkv, ref.wkv)


TURN_END_TEXT = "\n\n"


def test_regenerate_starts_from_the_state_before_the_answer(model):
    chat = Chat(model, seed=5, max_tokens=6)
    "".join(chat.reply("Hi"))
    before = chat.turns[0].state_before.wkv.copy()
    "".join(chat.regenerate())
    assert len(chat.turns) == 1
    np.testing.assert_array_equal(chat.turns[0].state_before.wkv, before)
    with pytest.raises(ValueError):
        Chat(model).regenerate()


def test_interrupt_with_held_back_text_counts_it_as_said(model):
    chat = Chat(model, max_tokens=20)
    ids = byte_ids(b"ok") + [265]  # token 265 is " \n": " " is shown, "\n" held back (it may start "\n\n")
    chat.sampler = Scripted(ids + byte_ids(b"more"))
    chat.sampler.reset = lambda: None
    it = chat.reply("Hi")
    assert [next(it), next(it), next(it)] == ["o", "k", " "]
    it.close()
    assert chat.turns[0].reply == "ok \n"
    ref = model.new_state()
    model.forward(model.tokenizer.encode("User: Hi\n\nAssistant:") + ids + model.tokenizer.encode(TURN_END_TEXT), ref)
    np.testing.assert_array_equal(chat.state.wkv, ref.wkv)


def test_interrupted_answer_keeps_the_state_consistent(model):
    chat = Chat(model, seed=2, max_tokens=20)
    it = chat.reply("Tell me")
    next(it)
    it.close()  # as Ctrl-C in the CLI closes the stream
    r = chat.last.result
    assert r.stop_reason == "interrupted" and len(chat.turns) == 1
    ref = model.new_state()
    model.forward(model.tokenizer.encode("User: Tell me\n\nAssistant:") + r.tokens
                  + model.tokenizer.encode(TURN_END_TEXT), ref)
    np.testing.assert_array_equal(chat.state.wkv, ref.wkv)


def _with_template(tmp_path, template):
    from rwkvfast.gguf_reader import read_gguf
    from rwkvfast.gguf_writer import write_gguf
    g = read_gguf(fixture_path("tiny/gguf/tiny-F32.gguf"))
    meta = [(k, (template if k == "tokenizer.chat_template" else v)) for k, v in g.metadata.items()]
    return write_gguf(tmp_path / "t.gguf", meta, [(t.name, t.type, t.ne, t.data) for t in g.tensors])


def test_a_gguf_chat_template_is_rendered_and_fed_incrementally(tmp_path):
    pytest.importorskip("jinja2")
    template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endfor %}"
                "{% if add_generation_prompt %}<assistant>{% endif %}")
    with rwkvfast.Model(_with_template(tmp_path, template), n_threads=1) as m:
        chat = Chat(m, system="Be brief", seed=1, max_tokens=6)
        assert chat.template_note is None and chat._jinja is not None
        first_prompt = chat._turn_text("Hi")[0]
        assert first_prompt == "<system>Be brief</system>\n<user>Hi</user>\n<assistant>"
        "".join(chat.reply("Hi"))
        second, restart = chat._turn_text("More")
        assert not restart and second == "<user>More</user>\n<assistant>"
        "".join(chat.reply("More"))
        assert chat.restarts == 0
        # the conversation text in the state is the template's own rendering of it
        assert chat._rendered.startswith("<system>Be brief</system>\n<user>Hi</user>\n<assistant>")
        assert chat._rendered.endswith("</assistant>\n")


def test_without_jinja2_a_foreign_template_falls_back_to_the_world_format(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "jinja2"
                        else real(name, *a, **k))
    with rwkvfast.Model(_with_template(tmp_path, "{{ messages }}"), n_threads=1) as m:
        chat = Chat(m)
        assert "jinja2 is not installed" in chat.template_note
        assert chat._turn_text("Hi")[0] == "User: Hi\n\nAssistant:"
