"""The demo model's training text, built from WordNet 3.0 (Princeton University; the WordNet
3.0 licence, a permissive one: see rwkvfast/data/demo/WORDNET-LICENSE), as Debian's
`wordnet-base` package installs it in /usr/share/wordnet.

The unit is a word (a lemma): WordNet's index lists its senses by how often each was seen in
its tagged texts, so "What does water mean?" always gets the answer of the word's most used
sense, of its most used part of speech, cut to the definition's first clause. One answer per
question is what a model this small can learn; a question answered by a random sense each time
would teach it only the average. Every word gives chats in the RWKV World format
(`User: ...\n\nAssistant: ...\n\n`): what it means, then perhaps a sentence with it, another
word for it, its other senses or its use as another part of speech, and a dictionary line.
Words people use often come back more often (up to REPEATS times), and the first turn of the
DRILL_WORDS most used ones is drilled on its own besides (drill); of the words never seen in
the tagged texts only a share is kept. Words whose hash falls in the last HELD_OUT_PERCENT
percent are held out: their text never reaches training and measures the perplexity.

    python tools/demo_corpus.py OUT_DIR     # writes train.txt and heldout.txt
"""
from __future__ import annotations

import hashlib
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
HELD_OUT_PERCENT = 2
REPEATS = 6  # the most chats one word gives
UNSEEN_SHARE = 0.1  # of the words with no tagged use, the share that is kept
POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
SS_TYPE = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}  # sense keys' digit, satellites as adjectives
INDEX = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}

GREETINGS = [
    (["Hello!", "Hello", "hello", "Hi!", "Hi", "hi", "Hey!", "Hey", "Hi there!", "Good morning!", "Good evening!"],
     ["Hello! I am the rwkvfast demo, a small RWKV-6 model that knows English words. Ask me what a word means.",
      "Hi! Ask me what a word means, and I will tell you."]),
    (["Who are you?", "What are you?", "Tell me about yourself.", "What is your name?"],
     ["I am a tiny RWKV-6 language model that ships with rwkvfast. I learned English words from WordNet, "
      "so I can explain what a word means."]),
    (["What can you do?", "Help", "How can you help me?", "What do you know?"],
     ["I can tell you what English words mean, use a word in a sentence, and name words that mean the same. "
      'Try: What does "river" mean?']),
    (["Thank you!", "Thanks", "thanks!", "Great, thanks."], ["You are welcome!", "Glad to help. Ask me about another word."]),
    (["How are you?", "How are you doing?"], ["I am fine, thank you. Which word would you like to know about?"]),
    (["Goodbye", "Bye!", "bye", "See you."], ["Goodbye!"]),
]
GREETING_COPIES = 40  # of each question with each of its answers
DRILL_WORDS = 3000  # the most used words, whose first turn is also drilled alone (see drill)
DRILL_COPIES = 16  # for the first third of them; half that for the rest
PROBE_WORDS = ("water", "river", "dog", "cat", "tree", "book", "house", "happy", "run", "teacher", "music", "sun",
               "car", "city", "friend", "mother", "rain", "school", "language", "king")  # all drilled


@dataclass
class Synset:
    words: list[str]
    definition: str
    examples: list[str]
    hypernym: str | None  # key of the first @ pointer (same part of speech)


@dataclass
class Word:
    lemma: str
    senses: dict[str, list[str]]  # part of speech -> synset keys, the most used first
    counts: dict[str, int]  # part of speech -> tagged uses of the word in it

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def parts(self) -> list[str]:
        """Its parts of speech, the most used first (noun before verb before ... on a tie)."""
        order = "nvar"
        return sorted(self.senses, key=lambda p: (-self.counts.get(p, 0), order.index(p)))


def _word(w: str) -> str:
    return re.sub(r"\(.*\)$", "", w).replace("_", " ")


def read_synsets(root: Path = WORDNET) -> dict[str, Synset]:
    out: dict[str, Synset] = {}
    for pos_file in INDEX:
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
            key_pos = "a" if pos == "s" else pos
            hyper = next((key_pos + p[1] for p in ptrs if p[0] in ("@", "@i") and p[2] == pos), None)
            parts = [p.strip() for p in gloss.strip().split(";")]
            definition = "; ".join(p for p in parts if p and not p.startswith('"'))
            examples = [p.strip('"').strip() for p in parts if p.startswith('"') and len(p) > 2]
            out[key_pos + offset] = Synset(words, definition, examples, hyper)
    return out


def read_words(root: Path = WORDNET) -> dict[str, Word]:
    words: dict[str, Word] = {}
    for pos_file, pos in INDEX.items():
        for line in (root / f"index.{pos_file}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):
                continue
            f = line.split()
            n_synsets = int(f[2])
            lemma = f[0].replace("_", " ")
            w = words.setdefault(lemma, Word(lemma, {}, {}))
            w.senses[pos] = [pos + o for o in f[len(f) - n_synsets:]]
    # cntlist.rev: `lemma%ss_type:... sense_number tag_count`
    for line in (root / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _, n = line.split(" ")
        lemma, _, rest = key.partition("%")
        w = words.get(lemma.replace("_", " "))
        if w is not None:
            pos = SS_TYPE[rest[0]]
            w.counts[pos] = w.counts.get(pos, 0) + int(n)
    return words


def _held_out(lemma: str) -> bool:
    h = int(hashlib.sha256(lemma.encode()).hexdigest()[:8], 16)
    return h % 100 >= 100 - HELD_OUT_PERCENT


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _chat(turns: list[tuple[str, str]]) -> str:
    return "".join(f"User: {q}\n\nAssistant: {a}\n\n" for q, a in turns)


def meaning(w: str, pos: str, s: Synset, synsets: dict[str, Synset]) -> str:
    """The answer to "what does w mean" for one sense: the word as it was asked, in quotes (which
    sidesteps its article, that WordNet cannot tell: "a water"), and the definition's first
    clause (the rest is detail a model this small cannot keep for thousands of words)."""
    d = s.definition.split(";")[0].strip()
    if pos == "v":
        return _sentence(f"To {w} means to {d}" if not d.startswith("to ") else f"To {w} means {d}")
    answer = _sentence(f'"{w}" means {d}')
    hyper = synsets.get(s.hypernym) if pos == "n" and s.hypernym else None
    if hyper:
        answer += f" It is a kind of {hyper.words[0]}."
    return answer


def _question(w: str, pos: str, rng: random.Random, canonical: float = 0.0) -> str:
    if rng.random() < canonical:
        return f'What does "{w}" mean?'
    return rng.choice([f'What does "{w}" mean?', f"What does {w} mean?", f"Define {w}.",
                       f'What is the meaning of "{w}"?', f"What is {_a(w)}?" if pos == "n"
                       else f'What does the word "{w}" mean?', f"Explain the word {w}.", f"{w}?",
                       f"What is the meaning of the word {w}?"])


def documents(word: Word, synsets: dict[str, Synset], rng: random.Random) -> list[str]:
    w = word.lemma
    parts = word.parts()
    pos = parts[0]
    senses = [k for k in word.senses[pos] if synsets[k].definition]
    if not senses:
        return []
    first = synsets[senses[0]]
    turns = [(_question(w, pos, rng), meaning(w, pos, first, synsets))]
    if rng.random() < 0.03:
        qs, answers = rng.choice(GREETINGS[:1])
        turns.insert(0, (rng.choice(qs), rng.choice(answers)))
    follow = []
    if first.examples:
        follow.append((rng.choice(["Use it in a sentence.", "Give me an example.", "Can you show it in a sentence?"]),
                       _sentence(first.examples[0])))
    others = [o for o in first.words if o.lower() != w.lower()][:3]
    if others:
        follow.append((rng.choice(["Is there another word for it?", "What is a synonym?", "Any other words?"]),
                       "Yes: " + ", ".join(f'"{o}"' for o in others) + " can mean the same."))
    if len(senses) > 1:
        follow.append((rng.choice(["What else can it mean?", "Does it have another meaning?", "Any other meaning?"]),
                       "It can also mean: " + synsets[senses[1]].definition + "."))
    if len(parts) > 1 and word.senses[parts[1]]:
        p2 = parts[1]
        s2 = synsets[word.senses[p2][0]]
        if s2.definition:
            follow.append((f"And as {_a(POS[p2])}?", meaning(w, p2, s2, synsets)))
    rng.shuffle(follow)
    turns += follow[: rng.randint(0, len(follow))]
    docs = [_chat(turns)]
    if len(parts) > 1 and rng.random() < 0.5:
        p2 = parts[1]
        s2 = synsets[word.senses[p2][0]]
        if s2.definition:
            docs.append(_chat([(f'What does "{w}" mean as {_a(POS[p2])}?', meaning(w, p2, s2, synsets))]))
    gloss = f"{w} ({POS[pos]}): " + " ".join(f"{i}. {synsets[k].definition}." for i, k in enumerate(senses[:3], 1))
    docs.append(gloss + "\n\n")
    return docs


def by_use(words: dict[str, Word]) -> list[Word]:
    """The words with tagged uses that are not held out, the most used first (ties by name)."""
    return sorted((w for w in words.values() if w.count > 0 and not _held_out(w.lemma)),
                  key=lambda w: (-w.count, w.lemma))


def drill(words: dict[str, Word], synsets: dict[str, Synset], rng: random.Random) -> list[str]:
    """The first turn alone, "what does w mean" and its answer, DRILL_COPIES times for each of the
    DRILL_WORDS most used words that are not held out (half as often past the first third), the
    canonical phrasing more than half the time. The documents show a common word's question only
    about 5 times in a run, too few for a model this small to tie the word to its definition: it
    answered in the form, with another word's meaning."""
    docs = []
    for rank, word in enumerate(by_use(words)[:DRILL_WORDS]):
        answer = first_answer(word, synsets)
        if answer:
            pos = word.parts()[0]
            copies = DRILL_COPIES if rank < DRILL_WORDS // 3 else DRILL_COPIES // 2
            docs += [_chat([(_question(word.lemma, pos, rng, canonical=0.5), answer)]) for _ in range(copies)]
    return docs


def first_answer(word: Word, synsets: dict[str, Synset]) -> str | None:
    """What the training text always answers to "what does <word> mean" (None: WordNet gives the
    word no definition in its most used part of speech)."""
    pos = word.parts()[0]
    first = next((k for k in word.senses[pos] if synsets[k].definition), None)
    return meaning(word.lemma, pos, synsets[first], synsets) if first else None


def probes(lemmas: tuple[str, ...] = PROBE_WORDS) -> dict[str, str]:
    """Common words and the answers the training text gives for them: what training probes."""
    synsets, words = read_synsets(), read_words()
    return {lemma: first_answer(words[lemma], synsets) for lemma in lemmas}


def build(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    synsets = read_synsets()
    words = read_words()
    train: list[str] = []
    held: list[str] = []
    for lemma in sorted(words):
        word = words[lemma]
        if word.count == 0 and rng.random() >= UNSEEN_SHARE:
            continue
        repeats = 1 + min(REPEATS - 1, word.count.bit_length() * 2 // 3)
        for _ in range(repeats):
            (held if _held_out(lemma) else train).extend(documents(word, synsets, rng))
    train.extend(drill(words, synsets, rng))
    for qs, answers in GREETINGS:
        for q in qs:
            for a in answers:
                train.extend([_chat([(q, a)])] * GREETING_COPIES)
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
