#!/usr/bin/env python
"""Write attrtools' own small sentiment dataset into data/ (generated from templates; no copied data).

Sentences combine a subject, an optional intensifier and an evaluative word, with negation and
contrast ("but") so that a classifier must look at word interactions, not single words:

    "the acting was really wonderful"                 -> 1
    "the plot was not good"                           -> 0
    "the music was dull but the ending was superb"    -> 1   (the clause after "but" decides)

    python scripts/make_sentiment_data.py            # writes data/sentiment_{train,dev}.tsv
"""
import os
import random

POSITIVE = ["good", "great", "wonderful", "superb", "charming", "moving", "funny", "brilliant", "delightful",
            "engaging", "beautiful", "touching", "clever", "fresh", "gripping", "lovely", "smart", "witty"]
NEGATIVE = ["bad", "dull", "boring", "awful", "tedious", "clumsy", "weak", "bland", "predictable", "messy",
            "lifeless", "painful", "shallow", "forgettable", "tiresome", "flat", "silly", "stale"]
SUBJECTS = ["the movie", "the film", "the acting", "the plot", "the script", "the music", "the ending", "the cast",
            "the story", "the dialogue", "the direction", "the pacing", "the humor", "this picture", "the score"]
VERBS = ["was", "is", "felt", "seemed", "remains"]
INTENSIFIERS = ["", "", "very ", "really ", "quite ", "truly ", "rather ", "so "]


def clause(rng, polarity: int, allow_negation: bool = True):
    """A clause of the given polarity; sometimes built by negating the opposite word."""
    negate = allow_negation and rng.random() < 0.25
    words = (NEGATIVE if polarity else POSITIVE) if negate else (POSITIVE if polarity else NEGATIVE)
    verb = rng.choice(VERBS)
    middle = "not " if negate else rng.choice(INTENSIFIERS)
    return f"{rng.choice(SUBJECTS)} {verb} {middle}{rng.choice(words)}"


def example(rng):
    label = rng.randint(0, 1)
    shape = rng.random()
    if shape < 0.6:
        text = clause(rng, label)
    elif shape < 0.85:  # contrast: the clause after "but" decides
        text = f"{clause(rng, 1 - label, False)} but {clause(rng, label)}"
    else:  # agreement
        text = f"{clause(rng, label)} and {clause(rng, label)}"
    return text, label


def write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for text, label in rows:
            f.write(f"{text}\t{label}\n")
    os.replace(tmp, path)


def main(out_dir=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"), train=2000, dev=400,
         seed=13):
    rng = random.Random(seed)
    seen, rows = set(), []
    while len(rows) < train + dev:
        text, label = example(rng)
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    os.makedirs(out_dir, exist_ok=True)
    write(os.path.join(out_dir, "sentiment_train.tsv"), rows[:train])
    write(os.path.join(out_dir, "sentiment_dev.tsv"), rows[train:])
    print(f"wrote {train} train and {dev} dev sentences to {os.path.abspath(out_dir)}")


if __name__ == "__main__":
    main()
