"""attrtools' own small sentiment dataset, generated from templates (no copied data).

Sentences combine a subject, an optional intensifier and an evaluative word, with negation and
contrast ("but") so that a classifier must use word interactions, not single words:

    "the acting was really wonderful"                 -> 1
    "the plot was not good"                           -> 0
    "the music was dull but the ending was superb"    -> 1   (the clause after "but" decides)

The committed copies live in ``data/sentiment_{train,dev}.tsv`` (``scripts/make_sentiment_data.py``).
"""
import os
import random

from .io import atomic_path

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
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            for text, label in rows:
                f.write(f"{text}\t{label}\n")


def generate(train: int = 2000, dev: int = 400, seed: int = 13):
    """(train_rows, dev_rows) of (sentence, label), distinct sentences, deterministic."""
    rng = random.Random(seed)
    seen, rows = set(), []
    while len(rows) < train + dev:
        text, label = example(rng)
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    return rows[:train], rows[train:]


def write_dataset(out_dir: str, train: int = 2000, dev: int = 400, seed: int = 13) -> dict:
    """Write ``sentiment_train.tsv`` and ``sentiment_dev.tsv`` into ``out_dir``; return their paths."""
    train_rows, dev_rows = generate(train, dev, seed)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"train": os.path.join(out_dir, "sentiment_train.tsv"), "dev": os.path.join(out_dir, "sentiment_dev.tsv")}
    write(paths["train"], train_rows)
    write(paths["dev"], dev_rows)
    return paths
