"""RWKV-7 G1 reasoning (rwkvfast/reasoning.py, and its use in Chat and rwkvfast-chat): the prompt
of a turn, the split of the streamed answer into reasoning and content at any piece boundary,
the budget, and the CLI's display."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import rwkvfast
from rwkvfast import Chat
from rwkvfast.reasoning import Reasoning, ThinkSplitter, split_answer, think_prompt
from rwkvfast.sampler import SamplerParams

from conftest import fixture_path

GREEDY = SamplerParams(temperature=0.0)

CASES = [
    (">\nhmm, 2+2 is\nfour\n</think>\nIt is 4.", True, False, ("hmm, 2+2 is\nfour", "It is 4.")),
    (">\nIt is 4.", True, True, ("", "It is 4.")),
    (" <think>\nplan\n</think> Done", False, False, ("plan", "Done")),
    (" Hello there", False, False, ("", "Hello there")),
    (" <thin", False, False, ("", "<thin")),
    (">think forever", True, False, ("think forever", "")),
    ("> a < b </think>x", True, False, ("a < b", "x")),
    ("", True, False, ("", "")),
]


@pytest.mark.parametrize("text,opened,closed,want", CASES)
def test_the_split_is_the_same_at_every_pair_of_piece_boundaries(text, opened, closed, want):
    assert split_answer(text, opened, closed) == want
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            s = ThinkSplitter(opened, closed)
            parts = s.feed(text[:i]) + s.feed(text[i:j]) + s.feed(text[j:]) + s.finish()
            got = ("".join(p for p in parts if isinstance(p, Reasoning)),
                   "".join(p for p in parts if not isinstance(p, Reasoning)))
            assert got == want == (s.reasoning, s.content), (i, j)


def test_think_prompts():
    assert (think_prompt("on"), think_prompt("off"), think_prompt("none")) == (" <think", " <think></think", "")
    with pytest.raises(ValueError):
        think_prompt("maybe")


class Scripted:
    """A real model whose logits are replaced so that greedy sampling says `script`: token by
    token, advancing when the previous scripted token is fed back (a prompt leaves it in place).
    The prompts it was fed are kept, as text."""

    def __init__(self, model, script: str) -> None:
        self.m, self.ids, self.pos, self.prompts = model, model.tokenizer.encode(script), 0, []

    def __getattr__(self, name):
        return getattr(self.m, name)

    def forward(self, tokens, state, all_logits=False):
        ids = [int(t) for t in np.atleast_1d(tokens)]
        self.m.forward(ids, state)  # the state advances for real
        if ids == self.ids[self.pos:self.pos + len(ids)] and len(ids) == 1:
            self.pos += 1
        else:
            self.prompts.append(self.m.tokenizer.decode(ids))
        out = np.full(self.m.n_vocab, -1e9, np.float32)
        out[self.ids[self.pos] if self.pos < len(self.ids) else 0] = 0.0
        return out


@pytest.fixture(scope="module")
def seven():
    with rwkvfast.Model(fixture_path("rwkv7/tiny7/gguf/tiny7-Q8_0.gguf"), n_threads=2) as m:
        yield m


@pytest.fixture(scope="module")
def six():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-Q8_0.gguf"), n_threads=2) as m:
        yield m


def test_an_rwkv7_chat_thinks_then_answers(seven):
    m = Scripted(seven, ">\nThe user greets me.\n</think>\nHello!\n\n")
    chat = Chat(m, params=GREEDY)
    parts = list(chat.reply("Hi"))
    assert m.prompts[0] == "User: Hi\n\nAssistant: <think"
    assert "".join(p for p in parts if isinstance(p, Reasoning)) == "The user greets me."
    assert "".join(p for p in parts if not isinstance(p, Reasoning)) == "Hello!"
    t = chat.turns[-1]
    assert (t.reasoning, t.reply) == ("The user greets me.", "Hello!")
    assert chat.last.result.stop_reason == "stop"


def test_reasoning_off_asks_for_the_answer_at_once(seven):
    m = Scripted(seven, ">\nHello!\n\n")
    chat = Chat(m, params=GREEDY, reasoning="off")
    parts = list(chat.reply("Hi"))
    assert m.prompts[0] == "User: Hi\n\nAssistant: <think></think"
    assert "".join(parts) == "Hello!" and not any(isinstance(p, Reasoning) for p in parts)
    assert Chat(seven, reasoning_budget=0).think == "off"


def test_a_reasoning_budget_closes_the_block_and_the_model_answers(seven):
    m = Scripted(seven, ">\nfirst second third fourth fifth sixth seventh eighth\n\n")
    chat = Chat(m, params=GREEDY, reasoning_budget=4)
    parts = list(chat.reply("Hi"))
    reasoning = "".join(p for p in parts if isinstance(p, Reasoning))
    assert 0 < len(seven.tokenizer.encode(reasoning)) <= 4
    assert m.prompts[1] == "\n</think>"  # fed as if said: the state holds a closed block
    assert chat.turns[-1].reply and len(chat.last_results) == 2


def test_rwkv6_chats_stay_plain(six):
    m = Scripted(six, " Hello!\n\n")
    chat = Chat(m, params=GREEDY, reasoning="on")
    assert "".join(chat.reply("Hi")) == "Hello!" and m.prompts[0] == "User: Hi\n\nAssistant:"
    with pytest.raises(ValueError, match="reasoning must be"):
        Chat(six, reasoning="sometimes")


def _cli(*args, stdin="Hello\n"):
    p = subprocess.run([sys.executable, "-m", "rwkvfast.cli.chat", *args], input=stdin, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_the_cli_frames_dims_or_hides_the_reasoning():
    path = str(fixture_path("rwkv7/tiny7/gguf/tiny7-Q8_0.gguf"))
    flags = ("-m", path, "-n", "10", "-t", "1", "--temp", "0")
    framed = _cli(*flags)
    assert framed.startswith("<think>\n") and "\n</think>\n" in framed  # not a terminal: the model's own tags
    assert "<think>" not in _cli(*flags, "--hide-reasoning")
    budget = _cli(*flags, "--reasoning-budget", "2")
    assert budget.startswith("<think>\n") and budget.index("</think>") < 40
    assert "<think>" not in _cli(*flags, "--reasoning", "off")
    p = subprocess.run([sys.executable, "-m", "rwkvfast.cli.chat", *flags, "--reasoning-budget", "-2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--reasoning-budget" in p.stderr


def test_a_model_without_the_tags_keeps_them_as_text():
    s = ThinkSplitter(detect=False)
    assert s.feed(" <think>no</think> Hi") + s.finish() == ["<think>no</think> Hi"]
    assert not any(isinstance(p, Reasoning) for p in s.feed("x"))
