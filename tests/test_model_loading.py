"""Models and targets as users hand them over (issue 23, found by the round-3 new-user trial): a
checkpoint without a classification head, a fine-tuning length past the model's position table, a
target list whose length does not match the inputs."""
import json
import warnings

import pytest
from click.testing import CliRunner

import attrtools
from attrtools.cli import main
from attrtools.errors import ParameterError
from attrtools.models import NewHeadWarning
from attrtools.testing import build_tiny_model, planted_dataset


def test_a_checkpoint_without_a_classification_head_is_said(tmp_path):
    """Before: a sentence encoder's ``BertModel`` checkpoint loaded with a random head, and every
    command explained that random head with exit 0 (only transformers' load report said MISSING)."""
    from transformers import AutoModel

    folder = build_tiny_model("bert", str(tmp_path / "clf"))
    AutoModel.from_pretrained(folder).save_pretrained(str(tmp_path / "encoder"))  # the encoder alone
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        src = tmp_path / "clf" / name
        if src.exists():
            (tmp_path / "encoder" / name).write_bytes(src.read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attrtools.load_model(str(tmp_path / "encoder"))
        attrtools.load_model(folder)
    said = [str(w.message) for w in caught if issubclass(w.category, NewHeadWarning)]
    assert len(said) == 1 and "classifier.weight" in said[0] and "random head" in said[0]


def test_a_target_list_of_another_length_is_refused(tiny_models):
    """Before: too few targets raised a bare IndexError; too many were silently cut."""
    model, tok = tiny_models["bert"]
    for target in ([0], [0, 1, 1]):
        with pytest.raises(ParameterError, match=f"target lists {len(target)} target\\(s\\) for 2 example"):
            attrtools.attribute(model, tok, ["a fine film", "a dull film"], method="grad_input", target=target)
    assert [a.target for a in attrtools.attribute(model, tok, ["a fine film", "a dull film"], method="grad_input",
                                                  target=[1, 0])] == [1, 0]


def test_finetune_length_never_passes_the_position_table(tmp_path):
    """Before: the default --max-length 128 on a model of 64 positions ended in a RuntimeError
    traceback; now the one truncation rule caps it, and training.json records the length used."""
    base = build_tiny_model("bert", str(tmp_path / "base"), max_positions=30)
    rows = planted_dataset(16, seed=5)
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{' '.join([text] * 6)},{label}\n" for text, label in rows))
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["finetune", "--model", base, "--dataset", str(data), "--batch-size", "8",
                                       "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "training.json").read_text())
    assert report["max_length"] == 32
