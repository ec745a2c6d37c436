"""The committed planted model and the script that makes it.

The tests load the committed weights (tests/assets/planted) so that every machine sees the same
model; these tests check that the asset is what the script describes, and that the script still
trains a model that learns the planted rule.
"""
import json
import os

import torch

from attrtools.testing import planted_dataset, tiny_config, write_tokenizer

from conftest import PLANTED_ASSET


def _accuracy(model, tokenizer, rows):
    texts, labels = zip(*rows)
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1)
    return (pred == torch.tensor(labels)).float().mean().item()


def test_committed_planted_model_learned_the_rule(planted):
    model, tokenizer = planted
    # held-out: the training stream is seed 0; the script's own check uses seed 1; this is fresh data
    assert _accuracy(model, tokenizer, planted_dataset(300, seed=12345)) >= 0.98


def test_committed_planted_model_has_the_scripts_architecture(tmp_path):
    tokenizer = write_tokenizer(str(tmp_path / "tok"))
    expected = tiny_config("bert", len(tokenizer), layers=2, heads=4, hidden=48, pad_token_id=tokenizer.pad_token_id)
    with open(os.path.join(PLANTED_ASSET, "config.json")) as f:
        committed = json.load(f)
    for key in ("model_type", "num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size",
                "vocab_size", "max_position_embeddings", "num_labels" if "num_labels" in committed else "model_type"):
        assert committed[key] == getattr(expected, key), key
    with open(os.path.join(PLANTED_ASSET, "tokenizer.json")) as f:
        vocab = json.load(f)["model"]["vocab"]
    assert vocab == tokenizer.get_vocab()


def test_script_trains_a_model_that_learns_the_rule(tmp_path):
    """The script trains, saves a loadable model with shareable files, and reports its held-out
    accuracy truthfully. How well a retrained model learns depends on the machine's arithmetic (some
    seeds stall near 0.7 at 700 steps), so this asserts learning with margin, not the committed
    model's 1.0; the committed model's quality is checked above."""
    import importlib.util
    import re

    import attrtools

    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "make_planted_model.py")
    spec = importlib.util.spec_from_file_location("make_planted_model", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "planted"
    code = script.main(["--output-dir", str(out), "--steps", "300"])
    assert oct(os.stat(out / "model.safetensors").st_mode & 0o777) == oct(0o644)
    with open(out / "planted_task.txt") as f:
        reported = float(re.search(r"held-out accuracy ([0-9.]+)", f.read()).group(1))
    model, tokenizer = attrtools.load_model(str(out))
    measured = _accuracy(model, tokenizer, planted_dataset(400, seed=1))  # the script's held-out set
    assert abs(measured - reported) < 1e-4
    assert measured > 0.6                      # well above chance (0.5): it trained
    assert code == (0 if reported > 0.9 else 1)
