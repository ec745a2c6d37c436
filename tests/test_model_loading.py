"""Models and targets as users hand them over (issue 23, found by the round-3 new-user trial): a
checkpoint without a classification head, a fine-tuning length past the model's position table, a
target list whose length does not match the inputs. A pruned folder without its marker, and
transformers' own load messages held back while attrtools loads."""
import json
import warnings

import pytest
from click.testing import CliRunner

import attrtools
from attrtools.cli import main
from attrtools.errors import ParameterError
from attrtools.models import NewHeadWarning
from attrtools.testing import build_tiny_model, planted_dataset

from helpers import run_cli as _cli


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


# ----------------------------------------------------------------------------- transformers' load messages
@pytest.fixture
def transformers_warnings():
    """What transformers logs at its default verbosity (the suite's conftest silences it below
    errors), as the messages its library root logger's handlers receive (whatever stream they write to)."""
    import logging

    import transformers
    from transformers.utils import logging as hf_logging

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    seen: list[str] = []
    root, handler = hf_logging.get_logger(), Collect()
    before = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    root.addHandler(handler)
    yield seen
    root.removeHandler(handler)
    transformers.logging.set_verbosity(before)


def test_pruned_folder_without_marker_fails_in_one_line_without_transformers_report(
        tiny_models, tmp_path, capfd, transformers_warnings):
    """transformers printed its multi-line LOAD REPORT (size mismatches) before attrtools' one line."""
    import copy

    from attrtools.models import CheckpointMismatchError
    from attrtools.pruning.prune import prune_heads, save_pruned

    model, tok = tiny_models["bert"]
    pruned = copy.deepcopy(model)
    prune_heads(pruned, {0: [1], 1: [0, 1]})
    folder = save_pruned(pruned, tok, str(tmp_path / "p"))
    (tmp_path / "p" / "pruned_heads.json").unlink()
    capfd.readouterr()
    with pytest.raises(CheckpointMismatchError, match="pruned_heads.json"):
        attrtools.load_model(folder)
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "MISMATCH" not in err, err
    assert not [m for m in transformers_warnings if "LOAD REPORT" in m], transformers_warnings
    result = _cli(["attribute", "--model", folder, "--text", "a good film", "--method", "raw",
                   "--output-dir", tmp_path / "run", "--no-cache"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: ") and "pruned_heads.json" in result.output


def test_held_transformers_logs_pass_on_unless_dropped(transformers_warnings):
    """transformers' messages during a load went straight to its handlers, before attrtools' own one-line
    error; now they are held while the load runs, passed on after it, and dropped where attrtools reports
    the failure itself."""
    from transformers.utils import logging as hf_logging

    from attrtools.models import held_transformers_logs

    # a logger of its own: one another test or library disabled (logging.config) would create no record
    logger = hf_logging.get_logger("transformers.attrtools_probe")
    with held_transformers_logs():
        logger.warning("kept for the user")
        assert transformers_warnings == []  # held while the load runs
    assert transformers_warnings == ["kept for the user"]  # then passed on to transformers' handlers
    with held_transformers_logs() as logs:
        logger.warning("replaced by our line")
        logs["drop"] = True
    assert transformers_warnings == ["kept for the user"]
