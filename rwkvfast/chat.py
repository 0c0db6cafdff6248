"""chat.py — a conversation with an RWKV World model, kept as one running state (CLI and server).

The RWKV World format: an optional `System: ...\\n\\n`, then `User: ...\\n\\nAssistant: ...\\n\\n`
turns. A turn feeds only its own text, `User: {message}\\n\\nAssistant:` (no trailing space),
into the state left by the previous turn, so the history is never processed again. Runs of
newlines inside a message are folded to one `\\n`, since a blank line would end the turn. The
answer stops where the decoded text contains `\\n\\n` (one token 261 or two 11s: the text is
what counts), its leading space is dropped, and the closing `\\n\\n` ends up in the state so
the state matches the transcript; an answer cut short (length, Ctrl-C) gets it fed explicitly.

RWKV-7 G1 models think first (reasoning.py): with reasoning on (the default for RWKV-7) a turn
ends `Assistant: <think`, the reply streams the reasoning as `Reasoning` pieces and then the
answer as plain text; off ends it `Assistant: <think></think` (answer at once); RWKV-6 turns are
plain. A reasoning budget closes the reasoning after that many tokens (feeding `</think>`).

A GGUF's `tokenizer.chat_template` is honoured when it is not the World template: rendered
with jinja2 if it is installed, each turn feeding the text the rendering adds to the previous
one (or the whole rendering from a fresh state when it does not extend it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

from rwkvfast.generate import Generation, GenerationResult, generate
from rwkvfast.reasoning import CLOSE, Reasoning, ThinkSplitter, think_prompt
from rwkvfast.sampler import RWKV_CHAT_DEFAULTS, Sampler, SamplerParams
from rwkvfast.state import State

__all__ = ["Chat", "format_message", "TURN_END", "Reasoning"]

TURN_END = "\n\n"


def format_message(text: str) -> str:
    """A message as one World-format paragraph: trimmed, newline runs folded to one."""
    return re.sub(r"\n+", "\n", text.replace("\r\n", "\n").replace("\r", "\n").strip())


def _is_world_template(t: str | None) -> bool:
    return t is None or ("User: " in t and "Assistant:" in t)


@dataclass
class _Turn:
    user: str
    reply: str = ""
    reasoning: str = ""
    state_before: State | None = None  # for /regen (kept for the last turn only)
    rendered_before: str = ""


@dataclass
class Chat:
    """One conversation. `reply(message)` streams the answer; `state` is always the transcript's."""
    model: object
    system: str | None = None
    params: SamplerParams = RWKV_CHAT_DEFAULTS
    seed: int = 0
    max_tokens: int = -1
    state: State | None = None  # a starting state (e.g. a state-tuning file), copied
    ban_eos: bool = True  # token 0 never ends an answer (ChatRWKV bans it in chat)
    reasoning: str = "auto"  # "on", "off", or "auto": on for RWKV-7 (G1 thinks), plain for RWKV-6
    reasoning_budget: int = -1  # reasoning tokens at most (-1: no limit; 0: off)
    turns: list[_Turn] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.reasoning not in ("auto", "on", "off"):
            raise ValueError(f"reasoning must be auto, on or off, got {self.reasoning!r}")
        thinks = self.model.info.get("architecture") == "rwkv7"
        mode = "off" if self.reasoning_budget == 0 else self.reasoning
        # RWKV-6 never learned the tags: its turns stay plain whatever is asked
        self.think = ("on" if mode in ("auto", "on") else "off") if thinks else "none"
        self.last_results: list[GenerationResult] = []
        self._initial = self.state.copy() if self.state is not None else self.model.new_state()
        self.state = self._initial.copy()
        self.sampler = Sampler(self.model.n_vocab, self.params, seed=self.seed, banned=(0,) if self.ban_eos else ())
        template = self.model.metadata["metadata"].get("tokenizer.chat_template")
        self._jinja = None
        self.template_note = None
        if not _is_world_template(template):
            try:
                import jinja2  # noqa: F401  (optional)
                self._jinja = jinja2.Environment().from_string(template)
            except ImportError:
                self.template_note = ("the model's chat template is not the RWKV World one and jinja2 is not "
                                      "installed: using the World format")
        self._rendered = ""  # jinja path: the conversation text in the state so far
        self._system_fed = False
        self.restarts = 0  # turns that had to feed the whole conversation again (jinja path)

    # -- the prompt of one turn --------------------------------------------
    def _messages(self) -> list[dict]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for t in self.turns:
            msgs += [{"role": "user", "content": t.user}, {"role": "assistant", "content": t.reply}]
        return msgs

    def _render(self, msgs: list[dict], generation_prompt: bool) -> str:
        return self._jinja.render(messages=msgs, add_generation_prompt=generation_prompt, bos_token="",
                                  eos_token="")

    def _turn_text(self, message: str) -> tuple[str, bool]:
        """(text to feed, whether the state must restart from the initial one)."""
        if self._jinja is None:
            head = ""
            if self.system and not self._system_fed:
                head = f"System: {format_message(self.system)}{TURN_END}"
            return f"{head}User: {format_message(message)}{TURN_END}Assistant:{think_prompt(self.think)}", False
        full = self._render(self._messages() + [{"role": "user", "content": message}], True)
        if full.startswith(self._rendered):
            return full[len(self._rendered):], False
        return full, True

    # -- turns ---------------------------------------------------------------
    def reply(self, message: str) -> Iterator[str]:
        """Stream the answer to `message`; the turn is recorded when the iterator ends or is closed."""
        text, restart = self._turn_text(message)
        turn = _Turn(message, state_before=self.state.copy(), rendered_before=self._rendered)
        if restart:  # the template re-wrote earlier turns: feed the whole conversation again
            self.state, self._rendered = self._initial.copy(), ""
            self.restarts += 1
        self.sampler.reset()  # penalties count the tokens of this reply only
        # a chat template of the model's own gets no tags added, but the model may still think
        jinja = self._jinja is not None
        split = ThinkSplitter(opened=self.think == "on" and not jinja, closed=self.think == "off" and not jinja,
                              detect=self.think != "none")
        g = generate(self.model, text, self.state, self.sampler, max_tokens=self.max_tokens, stop=[TURN_END])
        self.last, self.last_results = g, []
        budget = self.reasoning_budget if self.think == "on" and not jinja else -1
        try:
            while True:
                for piece in g:
                    yield from split.feed(piece)
                    if 0 <= budget <= len(g.result.tokens) and split.in_reasoning:
                        break  # reasoned enough: close the block and answer
                else:
                    break
                g.close()
                self.last_results.append(g.result)
                left = self.max_tokens - len(g.result.tokens) if self.max_tokens >= 0 else -1
                g = generate(self.model, f"\n{CLOSE}", self.state, self.sampler, max_tokens=left, stop=[TURN_END])
                self.last = g
                yield from split.feed(f"\n{CLOSE}")
                budget = -1
            yield from split.finish()
        finally:
            g.close()  # timings and the interrupted reason are final before the turn is recorded
            self.last_results.append(g.result)
            self._finish(g, turn, text, split)

    def _finish(self, g: Generation, turn: _Turn, fed: str, split: ThinkSplitter) -> None:
        r = g.result
        # text held back as a possible stop start was fed with its tokens: it is part of the reply
        text = r.text + g.pending
        split.feed(g.pending)
        split.finish()
        turn.reasoning, turn.reply = split.reasoning, split.content
        if self.turns:  # only the last answer can be regenerated: no state per turn kept
            self.turns[-1].state_before = None
        self.turns.append(turn)
        self._system_fed = True
        if self._jinja is None:
            if r.stop_reason != "stop":  # close the turn in the state as the transcript does
                self.model.forward(self.model.tokenizer.encode(TURN_END), self.state)
            return
        # the state holds what was rendered, fed and said; the template decides how a turn ends
        said = self._rendered + fed + text + (r.stop or "")
        done = self._render(self._messages(), False)
        if done.startswith(said):
            rest = done[len(said):]
            if rest:
                self.model.forward(self.model.tokenizer.encode(rest), self.state)
            self._rendered = done
        else:
            self._rendered = said  # the next turn restarts if the template disagrees with it

    def regenerate(self) -> Iterator[str]:
        """Answer the last message again, from the state before that answer."""
        if not self.turns:
            raise ValueError("nothing to regenerate: no turn yet")
        t = self.turns.pop()
        self.state, self._rendered = t.state_before, t.rendered_before
        self._system_fed = bool(self.turns)
        return self.reply(t.user)

    def load_state(self, state: State) -> None:
        """Continue from `state` (e.g. /load): the turns before it are not known, only its effect."""
        self.state = state.copy()
        self.turns.clear()
        self._system_fed = True
        self._rendered = ""

    def reset(self) -> None:
        """Forget the conversation (back to the starting state)."""
        self.state = self._initial.copy()
        self.turns.clear()
        self._rendered, self._system_fed = "", False
