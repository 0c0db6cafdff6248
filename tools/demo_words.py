"""How many words a demo model defines as it was taught: it is asked `What does "w" mean?` in a
fresh chat, greedily, and its whole answer is compared with the training text's (the card's
"How good it is" numbers).

    python tools/demo_words.py MODEL.gguf [--first 0] [--last 3000] [-n 100] [--seed 1] [-v]

--first/--last pick the words by rank (by WordNet's tagged uses, held-out words left out):
0..3000 are the drilled ones (demo_corpus.DRILL_WORDS); -n of them are drawn with --seed.
The probe words (demo_corpus.PROBE_WORDS) are always asked too.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_corpus as dc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=dc.DRILL_WORDS)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every answer")
    args = ap.parse_args()

    import rwkvfast
    synsets, words = dc.read_synsets(), dc.read_words()
    drawn = [w.lemma for w in random.Random(args.seed).sample(dc.by_use(words)[args.first:args.last], args.n)]
    with rwkvfast.Model(args.model) as m:
        for name, lemmas in (("probe words", list(dc.PROBE_WORDS)), (f"words {args.first}..{args.last}", drawn)):
            right = 0
            for lemma in lemmas:
                chat = rwkvfast.Chat(m, params=rwkvfast.SamplerParams(temperature=0.0), max_tokens=80)
                answer = "".join(chat.reply(f'What does "{lemma}" mean?')).strip()
                ok = answer == dc.first_answer(words[lemma], synsets)
                right += ok
                if args.verbose:
                    print(("right  " if ok else "wrong  ") + answer)
            print(f"{name}: {right} of {len(lemmas)} exactly as taught", flush=True)


if __name__ == "__main__":
    main()
