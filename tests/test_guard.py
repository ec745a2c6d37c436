"""Refusals on load (``attrtools.guard``): a model folder without tokenizer files or config.json, a
tokenizer that does not fit the model, input that is mostly unknown tokens, a folder's own Python or
pickled weights, a device the machine lacks: each one line naming the cause, nothing run."""
import json
import os
import re

import pytest
import torch
from click.testing import CliRunner

import attrtools
from attrtools.cli import main as cli

from helpers import copy_model as _copy_model
from helpers import one_line as _one_line


# ------------------------------------------------------------------------------ model folders
def test_folder_without_tokenizer_files_is_refused_naming_it(planted_dir, tmp_path):
    """A model folder without its tokenizer files ran on the 5-token tokenizer transformers builds (every word
    [UNK], exit 0); now it is refused in one line naming the folder, in Python and on the CLI."""
    from attrtools.guard import ModelFolderError

    folder = _copy_model(planted_dir, tmp_path / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if os.path.exists(os.path.join(folder, name)):
            os.unlink(os.path.join(folder, name))
    with pytest.raises(ModelFolderError, match="no tokenizer files") as info:
        attrtools.load_model(folder)
    assert folder in str(info.value)
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and _one_line(result.output) and folder in result.output, result.output


def test_tiny_tokenizer_against_a_large_vocabulary_is_refused(planted_dir, tmp_path):
    """A tokenizer far smaller than the model's vocabulary was used as it was; now it is refused, saying both
    sizes."""
    from transformers import BertTokenizer

    from attrtools.guard import ModelFolderError

    folder = _copy_model(planted_dir, tmp_path / "tiny-tokenizer")
    os.unlink(os.path.join(folder, "tokenizer.json"))
    BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}).save_pretrained(folder)
    with pytest.raises(ModelFolderError, match=r"tokenizer has \d+ tokens but the model's vocabulary has"):
        attrtools.load_model(folder)


def test_input_that_is_mostly_unknown_tokens_is_refused(planted):
    """Input that tokenized almost entirely to [UNK] was attributed as if read; now it is refused naming the
    share (a few unknown words are fine)."""
    from attrtools.guard import VocabularyError

    model, tok = planted
    with pytest.raises(VocabularyError, match=r"100% of the 9 input tokens are '\[UNK\]'"):
        attrtools.attribute(model, tok, ["zork quux blarg fnord xyzzy plugh wibble wobble frob"], method="raw")
    assert len(attrtools.attribute(model, tok, ["alpha zork beta the"], method="raw")) == 1  # a few are fine


def test_folder_without_config_json(planted_dir, tmp_path):
    """A folder with no config.json ended in a message about sentencepiece; now one line says so, and a file
    given as --model is one line too."""
    folder = _copy_model(planted_dir, tmp_path / "no-config")
    os.unlink(os.path.join(folder, "config.json"))
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "r1")])
    assert result.exit_code == 1 and _one_line(result.output) and "no config.json" in result.output, result.output
    file_model = tmp_path / "model.txt"
    file_model.write_text("x")
    result = CliRunner().invoke(cli, ["attribute", "--model", str(file_model), "--text", "alpha", "--no-cache",
                                      "--output-dir", str(tmp_path / "r2")])
    assert result.exit_code == 1 and _one_line(result.output) and "is a file" in result.output, result.output


# ------------------------------------------------------------------------------ remote code and pickles
EVIL_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("the folder's Python ran")
from transformers import BertConfig as _Base
class EvilConfig(_Base):
    model_type = "evil-bert"
"""


def test_remote_code_is_never_run(planted_dir, tmp_path):
    """A folder whose config points at its own Python (auto_map): refused for an unknown
    model_type; for a known one the built-in class loads. The folder's code never runs."""
    marker = tmp_path / "ran.txt"
    folder = _copy_model(planted_dir, tmp_path / "remote")
    with open(os.path.join(folder, "configuration_evil.py"), "w") as f:
        f.write(EVIL_MODULE.format(marker=str(marker)))
    config_path = os.path.join(folder, "config.json")
    config = json.load(open(config_path))
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForSequenceClassification": "configuration_evil.EvilConfig"}
    known = dict(config)
    config["model_type"] = "evil-bert"
    json.dump(config, open(config_path, "w"))
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "run")], input="y\ny\ny\n")
    assert result.exit_code == 1 and _one_line(result.output), result.output
    assert "custom code" in result.output and "trust_remote_code=False" in result.output
    json.dump(known, open(config_path, "w"))
    model, _ = attrtools.load_model(folder)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not marker.exists()


def test_every_from_pretrained_pins_trust_remote_code_false():
    """attrtools never passed trust_remote_code=False, so transformers could ask on a terminal whether to run
    a folder's Python (and 'y' ran it); now every from_pretrained call in the package pins it."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "attrtools")
    calls = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            text = open(os.path.join(dirpath, name), encoding="utf-8").read()
            for match in re.finditer(r"\.from_pretrained\(", text):
                line_end = text.index("\n", match.end())
                call = text[match.end(): text.index(")", match.end()) + 1] if ")" in text[match.end(): line_end + 200] else ""
                if text[match.start() - 1] == "`" or "``" in text[text.rindex("\n", 0, match.start()): match.start()]:
                    continue  # prose in a docstring
                calls += 1
                assert "trust_remote_code=False" in call or "**model_kwargs" in call, (name, call)
    assert calls >= 4


def test_pickle_weights_refused_in_one_line(planted_dir, tmp_path):
    """A pytorch_model.bin holding more than tensors: transformers refuses it (weights_only);
    attrtools says so in one line, and the payload never runs."""
    from safetensors.torch import load_file

    marker = tmp_path / "unpickled.txt"
    folder = _copy_model(planted_dir, tmp_path / "pickled")
    weights = os.path.join(folder, "model.safetensors")
    state = load_file(weights)
    os.unlink(weights)

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state["payload"] = Payload()
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and _one_line(result.output), result.output
    assert "pickle" in result.output and folder in result.output
    assert not marker.exists()


# ------------------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["banana", "cuda:7", "tpu"])
def test_bad_device_is_a_usage_error(planted_dir, device, monkeypatch, tmp_path):
    """``--device banana`` and ``--device cuda:7`` on a machine without it ended in tracebacks; now a usage
    error (exit 2) in one line naming the device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(cli, ["attribute", "--model", planted_dir, "--text", "alpha beta", "--no-cache",
                                      "--device", device, "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and _one_line(result.output) and device in result.output, result.output
