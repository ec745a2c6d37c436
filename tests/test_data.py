"""Loading real data through `datasets` (skips cleanly where ../shared/data is absent)."""
import os

from attrtools.data import load_examples


def test_sst2_dev_loads_through_datasets(sst2_dir):
    examples = load_examples(os.path.join(sst2_dir, "dev.tsv"))
    assert len(examples) == 872
    assert {e.label for e in examples} == {0, 1}
    assert examples[0].text.startswith("it 's a charming and often affecting journey")
    assert all(e.text_pair is None for e in examples)


def test_generated_sentiment_data_matches_its_generator(tmp_path):
    """data/ holds exactly what scripts/make_sentiment_data.py writes (no hand-edited data)."""
    from attrtools.sentiment_data import write_dataset

    paths = write_dataset(str(tmp_path))
    repo_data = os.path.join(os.path.dirname(__file__), "..", "data")
    for split in ("train", "dev"):
        with open(paths[split]) as fresh, open(os.path.join(repo_data, f"sentiment_{split}.tsv")) as committed:
            assert fresh.read() == committed.read()
    assert len(load_examples(paths["dev"])) == 400
