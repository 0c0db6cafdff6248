"""reasoning.py — RWKV-7 G1 models think before they answer: the split of an answer's stream.

A G1 prompt that ends `Assistant: <think` asks the model to reason first: it completes the tag
with `>`, reasons, closes with `</think>` and then answers. `Assistant: <think></think` skips the
reasoning (the model completes the tag and answers at once), and a plain `Assistant:` leaves
the choice to the model, which may still open a `<think>` block itself. The chat CLI shows the
reasoning dimmed or hides it, and the server returns it as `reasoning_content` beside
`content` (what llama-server's --reasoning-format deepseek does); both split the stream here.

    >>> s = ThinkSplitter(opened=True)
    >>> [(type(p).__name__, p) for p in s.feed(">\\nhmm, 2+2</thi") + s.feed("nk>\\nIt is 4.") + s.finish()]
    [('Reasoning', 'hmm, 2+2'), ('str', 'It is 4.')]
"""
from __future__ import annotations

__all__ = ["Reasoning", "ThinkSplitter", "THINK_ON", "THINK_OFF", "think_prompt", "split_answer"]

OPEN, CLOSE = "<think>", "</think>"
THINK_ON = " <think"  # appended to "Assistant:": reason first
THINK_OFF = " <think></think"  # appended to "Assistant:": answer at once (G1's "fake think")


class Reasoning(str):
    """A piece of the model's reasoning (a str, so printing a stream shows it too)."""


def think_prompt(mode: str) -> str:
    """What follows `Assistant:` in a turn: "on" -> THINK_ON, "off" -> THINK_OFF, "none" -> ""."""
    try:
        return {"on": THINK_ON, "off": THINK_OFF, "none": ""}[mode]
    except KeyError:
        raise ValueError(f"reasoning mode must be on, off or none, got {mode!r}") from None


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Text pieces in, `Reasoning` and plain `str` pieces out, tags removed. `opened`: the prompt
    ended with `<think` (THINK_ON), so the stream begins inside the reasoning; `closed`: it ended
    with `<think></think` (THINK_OFF). Otherwise a stream that begins with `<think>` (after
    spaces) opens a reasoning block by itself. Text that might be the start of a tag is held
    back until it is decided; leading whitespace of the reasoning and of the answer is dropped.
    `detect=False` (a model that never learned the tags, RWKV-6): all of it is the answer."""

    def __init__(self, opened: bool = False, closed: bool = False, detect: bool = True) -> None:
        # phases: "tag" (the prompt's tag awaits its ">"), "start" (may open <think>), "reasoning",
        # "answer" (before its first visible character), "content"
        self._phase = "tag" if opened or closed else "start" if detect else "answer"
        self._after_tag = "reasoning" if opened and not closed else "answer"
        self._buf = ""
        self.reasoning = ""  # all of it, for the record
        self.content = ""

    @property
    def in_reasoning(self) -> bool:
        return self._phase == "reasoning" or (self._phase == "tag" and self._after_tag == "reasoning")

    def feed(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while self._buf:
            before = (self._phase, len(self._buf))
            self._step(out)
            if (self._phase, len(self._buf)) == before:
                break  # waiting for more text
        return out

    def finish(self) -> list[str]:
        """The end of the stream: whatever was held back is what it looked like."""
        out: list[str] = []
        rest, self._buf = self._buf, ""
        if self._phase == "tag":
            rest, self._phase = rest[1:] if rest.startswith(">") else rest, self._after_tag
        if self._phase == "reasoning":
            self._emit(out, (rest if self.reasoning else rest.lstrip()).rstrip(), "reasoning")
        elif self._phase == "content":
            self._emit(out, rest, "content")
        else:  # "start" (a tag that never completed is text) or "answer"
            self._emit(out, rest.lstrip(), "content")
        return out

    def _emit(self, out: list[str], text: str, kind: str) -> None:
        if not text:
            return
        if kind == "reasoning":
            self.reasoning += text
            out.append(Reasoning(text))
        else:
            self.content += text
            out.append(text)

    def _step(self, out: list[str]) -> None:
        b = self._buf
        if self._phase == "tag":  # complete "<think" / "<think></think" with its ">"
            if b.startswith(">"):
                self._buf = b[1:]
            self._phase = self._after_tag
        elif self._phase == "start":
            s = b.lstrip()
            if not s:
                return
            if s.startswith(OPEN):
                self._buf, self._phase = s[len(OPEN):], "reasoning"
            elif OPEN.startswith(s):
                return  # maybe the tag, not yet whole
            else:
                self._buf, self._phase = s, "content"
        elif self._phase == "reasoning":
            if not self.reasoning:
                b = self._buf = b.lstrip()
                if not b:
                    return
            i = b.find(CLOSE)
            if i >= 0:
                self._emit(out, b[:i].rstrip(), "reasoning")
                self._buf, self._phase = b[i + len(CLOSE):], "answer"
                return
            # hold back what may be the start of the closing tag, and trailing whitespace (the
            # reasoning's last line break is not shown)
            cut = len(b) - _partial_suffix(b, CLOSE)
            shown = b[:cut].rstrip()
            self._emit(out, shown, "reasoning")
            self._buf = b[len(shown):]
        elif self._phase == "answer":
            s = b.lstrip()
            self._buf = s
            if s:
                self._phase = "content"
        else:
            self._emit(out, b, "content")
            self._buf = ""


def split_answer(text: str, opened: bool = False, closed: bool = False) -> tuple[str, str]:
    """(reasoning, content) of a whole answer."""
    s = ThinkSplitter(opened, closed)
    s.feed(text)
    s.finish()
    return s.reasoning, s.content
