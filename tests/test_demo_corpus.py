"""tools/demo_corpus.py: the demo model's training text from WordNet (Debian's wordnet-base,
which CI installs). What the model can learn depends on what this text promises: one answer
per question, the common words drilled, the held-out words never in training."""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import demo_corpus as dc  # noqa: E402

pytestmark = pytest.mark.skipif(not (dc.WORDNET / "index.noun").is_file(),
                                reason="WordNet is not installed (apt-get install wordnet-base)")


@pytest.fixture(scope="module")
def wordnet():
    return dc.read_synsets(), dc.read_words()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, wordnet):
    train, held = dc.build(tmp_path_factory.mktemp("corpus"))
    return train.read_text(encoding="utf-8"), held.read_text(encoding="utf-8")


def test_a_word_is_answered_with_its_most_used_sense_as_it_was_asked(wordnet):
    synsets, words = wordnet
    water = words["water"]
    assert water.parts()[0] == "n" and water.count > 100
    assert dc.probes(("water", "run", "happy")) == {
        "water": '"water" means binary compound that occurs at room temperature as a clear colorless odorless '
                 'tasteless liquid. It is a kind of binary compound.',
        "run": "To run means to move fast by using one's feet, with one foot off the ground at any given time.",
        "happy": '"happy" means enjoying or showing or marked by joy or pleasure.'}


def test_every_chat_about_a_word_gives_the_same_first_answer(wordnet):
    synsets, words = wordnet
    answers = set()
    for seed in range(20):
        first = dc.documents(words["river"], synsets, random.Random(seed))[0]
        assert first.startswith("User: ") and first.endswith("\n\n")
        answers.add(first.split("\n\nAssistant: ")[1].split("\n\n")[0])
    assert answers == {dc.probes(("river",))["river"]}


def test_the_most_used_words_are_drilled_mostly_in_the_canonical_phrasing(wordnet):
    synsets, words = wordnet
    docs = dc.drill(words, synsets, random.Random(0))
    asked = [re.match(r"User: (.*)\n\nAssistant: ", d).group(1) for d in docs]
    water = [q for q in asked if re.search(r"\bwater\b", q)]
    assert len(water) == dc.DRILL_COPIES  # "water" is among the first third of the drilled words
    assert sum(q == 'What does "water" mean?' for q in water) > len(water) // 2
    cat = [q for q in asked if re.search(r"\bcat\b", q)]
    assert len(cat) == dc.DRILL_COPIES // 2  # past the first third: half as often
    drilled = {m.group(1) for q in asked if (m := re.fullmatch(r'What does "(.+)" mean\?', q))}
    assert len(drilled) > 0.9 * dc.DRILL_WORDS and not any(dc._held_out(w) for w in drilled)


def test_held_out_words_never_reach_the_training_text(corpus, wordnet):
    train, held = corpus
    _, words = wordnet
    assert dc._held_out("apple") and "\napple (noun): " in "\n" + held
    assert "\napple (noun): " not in "\n" + train and 'What does "apple" mean?' not in train
    kept = [w for w in words if dc._held_out(w)]
    assert 0.01 < len(kept) / len(words) < 0.03
    assert len(held) > 100_000 and len(train) > 100 * len(held) // 5


def test_the_text_is_chats_and_dictionary_lines_in_the_world_format(corpus):
    train, _ = corpus
    docs = train.split("\n\n")[:-1]
    turns = [d for d in docs if d.startswith(("User: ", "Assistant: "))]
    lines = [d for d in docs if re.match(r"^[^\n]+ \((noun|verb|adjective|adverb)\): 1\. ", d)]
    assert len(turns) + len(lines) == len(docs)  # nothing else, and no document spans a blank line
    assert sum(d.startswith("User: ") for d in turns) == sum(d.startswith("Assistant: ") for d in turns)
    assert train.count('User: Hello!\n\nAssistant: Hello! I am the rwkvfast demo') >= dc.GREETING_COPIES
