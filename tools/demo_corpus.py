"""The demo model's training text, built from WordNet 3.0 (Princeton University; the WordNet
3.0 licence, a permissive one: see rwkvfast/data/demo/WORDNET-LICENSE), as Debian's
`wordnet-base` package installs it in /usr/share/wordnet.

Every synset gives a few documents: chats in the RWKV World format
(`User: ...\\n\\nAssistant: ...\\n\\n`) that ask what a word means, for a sentence with it,
for another word or the kind of thing it is, and plain dictionary lines. Words that people
use often (WordNet's sense counts) give more of them. Synsets whose offset hashes into the
last HELD_OUT_PERCENT percent are held out: their text never reaches training and measures
the perplexity.

    python tools/demo_corpus.py OUT_DIR     # writes train.txt and heldout.txt
"""
from __future__ import annotations

import hashlib
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
HELD_OUT_PERCENT = 2
POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
ARTICLE_POS = {"n"}

GREETINGS = [
    ("Hello!", "Hello! I am the rwkvfast demo, a small RWKV-6 model that knows English words. "
               "Ask me what a word means."),
    ("Hi", "Hi! Ask me what a word means, and I will tell you."),
    ("Who are you?", "I am a tiny RWKV-6 language model that ships with rwkvfast. I learned English words "
                     "from WordNet, so I can explain what a word means."),
    ("What can you do?", "I can tell you what English words mean, give an example of a word in use, "
                         "and name words that mean the same."),
    ("Thank you!", "You are welcome!"),
    ("Thanks", "Glad to help. Ask me about another word."),
    ("How are you?", "I am fine, thank you. Which word would you like to know about?"),
    ("Goodbye", "Goodbye!"),
]


@dataclass
class Synset:
    offset: str
    pos: str
    words: list[str]
    definition: str
    examples: list[str]
    hypernym: str | None  # offset of the first @ pointer (same part of speech)
    count: int = 0  # the sum of its words' sense counts
    kinds: list[str] = field(default_factory=list)


def _word(w: str) -> str:
    return re.sub(r"\(.*\)$", "", w).replace("_", " ")


def read_synsets(root: Path = WORDNET) -> dict[str, Synset]:
    out: dict[str, Synset] = {}
    for pos_file in ("noun", "verb", "adj", "adv"):
        for line in (root / f"data.{pos_file}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):  # the licence at the top of each file
                continue
            head, _, gloss = line.partition(" | ")
            f = head.split()
            offset, pos, n_words = f[0], f[2], int(f[3], 16)
            words = [_word(f[4 + 2 * i]) for i in range(n_words)]
            i = 4 + 2 * n_words
            n_ptr = int(f[i])
            ptrs = [f[i + 1 + 4 * j: i + 5 + 4 * j] for j in range(n_ptr)]
            hyper = next((p[1] for p in ptrs if p[0] in ("@", "@i") and p[2] == pos), None)
            parts = [p.strip() for p in gloss.strip().split(";")]
            definition = "; ".join(p for p in parts if p and not p.startswith('"'))
            examples = [p.strip('"').strip() for p in parts if p.startswith('"') and len(p) > 2]
            out[f"{pos}{offset}"] = Synset(offset, pos, words, definition, examples, hyper)
    # how often each lemma's senses were seen in WordNet's tagged texts (cntlist.rev: `key count`)
    counts: dict[str, int] = {}
    for line in (root / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _, n = line.split(" ")
        lemma = key.split("%")[0]
        counts[lemma] = counts.get(lemma, 0) + int(n)
    for s in out.values():
        s.count = sum(counts.get(w.replace(" ", "_").lower(), 0) for w in s.words)
    return out


def _held_out(s: Synset) -> bool:
    h = int(hashlib.sha256(f"{s.pos}{s.offset}".encode()).hexdigest()[:8], 16)
    return h % 100 >= 100 - HELD_OUT_PERCENT


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _chat(turns: list[tuple[str, str]]) -> str:
    return "".join(f"User: {q}\n\nAssistant: {a}\n\n" for q, a in turns)


def documents(s: Synset, synsets: dict[str, Synset], rng: random.Random) -> list[str]:
    w = s.words[0]
    pos = POS[s.pos]
    d = s.definition
    if not d:
        return []
    what = rng.choice([f'What does "{w}" mean?', f"What does {w} mean?", f"Define {w}.",
                       f'What is the meaning of "{w}"?', f"What is {_a(w)}?" if s.pos in ARTICLE_POS
                       else f'What does the word "{w}" mean?', f"Explain the word {w}."])
    if s.pos in ARTICLE_POS:
        answer = _sentence(f"{_a(w)} is {d}") if not d.startswith(("a ", "an ", "the ", "any ")) else \
            _sentence(f"{_a(w).capitalize()} is {d}")
    elif s.pos == "v":
        answer = _sentence(f'To {w} means to {d}' if not d.startswith("to ") else f"To {w} means {d}")
    else:
        answer = _sentence(f'"{w.capitalize()}" ({pos}) means {d}')
    hyper = synsets.get(f"{s.pos}{s.hypernym}") if s.hypernym else None
    if hyper and s.pos in ARTICLE_POS and rng.random() < 0.5:
        answer += f" It is a kind of {hyper.words[0]}."
    turns = [(what, answer)]
    if s.examples and rng.random() < 0.6:
        turns.append((rng.choice(["Use it in a sentence.", "Give me an example.", "Can you show it in a sentence?"]),
                      _sentence(rng.choice(s.examples))))
    if len(s.words) > 1 and rng.random() < 0.5:
        others = ", ".join(f'"{o}"' for o in s.words[1:4])
        turns.append((rng.choice(["Is there another word for it?", "What is a synonym?", "Any other words?"]),
                      f'Yes: {others} can mean the same.'))
    docs = [_chat(turns)]
    gloss = f"{w} ({pos}): {d}."
    if s.examples:
        gloss += " " + " ".join(_sentence(e) for e in s.examples[:2])
    docs.append(gloss + "\n\n")
    if s.examples and rng.random() < 0.4:
        docs.append(_chat([(f'Write a sentence with the word "{w}".', _sentence(rng.choice(s.examples)))]))
    return docs


def build(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    synsets = read_synsets()
    train: list[str] = []
    held: list[str] = []
    for s in synsets.values():
        # common words come back: once, plus up to 3 more for the most used senses
        repeats = 1 + min(3, s.count.bit_length() // 3)
        for _ in range(repeats):
            (held if _held_out(s) else train).extend(documents(s, synsets, rng))
    for q, a in GREETINGS:
        train.extend([_chat([(q, a)])] * 40)
    rng.shuffle(train)
    rng.shuffle(held)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr, ho = out_dir / "train.txt", out_dir / "heldout.txt"
    tr.write_text("".join(train), encoding="utf-8")
    ho.write_text("".join(held), encoding="utf-8")
    return tr, ho


if __name__ == "__main__":
    paths = build(Path(sys.argv[1] if len(sys.argv) > 1 else "build/demo"))
    for p in paths:
        print(p, p.stat().st_size, "bytes")
