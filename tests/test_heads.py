"""Heads with one output (``num_labels=1``, ``attrtools.heads``): no class probability to explain, so
probability targets and the tools built on them refuse it; logit targets explain the raw output."""
import pytest
import torch

import attrtools
from attrtools.engine import Engine
from attrtools.models import OneOutputError
from attrtools.testing import build_tiny_model


@pytest.fixture(scope="module")
def one_output(tmp_path_factory):
    return attrtools.load_model(build_tiny_model("bert", str(tmp_path_factory.mktemp("one")), num_labels=1))


def test_one_output_probability_targets_refuse_logit_targets_work(one_output):
    """On a num_labels=1 head AttAttr returned an all-zero attribution with probs [1.0]; now a probability
    target raises OneOutputError and a logit target explains the raw output (IG completeness per layer)."""
    model, tok = one_output
    engine = Engine(model, tok)
    with pytest.raises(OneOutputError, match="single output"):
        engine.attribute(["the movie was good"], method="attattr", steps=4)
    (att,) = engine.attribute(["the movie was good"], method="attattr", steps=64, target_kind="logit")
    assert att.scores.shape[:2] == (2, 4) and att.scores.abs().sum() > 0
    # IG completeness on the raw output, per layer: sum(Attr^l) ~ y(A) - y(A^l = 0), nonzero.
    from attrtools.capture import capture

    enc = engine.collate([engine.encode(attrtools.Example("the movie was good"))])
    with torch.no_grad():
        full = model(**enc).logits[0, 0]
        for layer in range(2):
            attention = None
            with capture(model, record="all") as rec:
                model(**enc)
            attention = rec.attention_list()[layer]
            with capture(model, override={layer: attention * 0}):
                zero = model(**enc).logits[0, 0]
            assert abs(float(att.scores[layer].sum()) - float(full - zero)) < 0.05 * max(1e-3, abs(float(full - zero)))
    for name in ("grad_input", "ig_embed", "gradsam"):
        (other,) = engine.attribute(["the movie was good"], method=name)
        assert other.scores.abs().sum() > 0, name
    with pytest.raises(OneOutputError):
        engine.attribute(["the movie was good"], method="ig_embed", target_kind="prob")


def test_one_output_tools_refuse_clearly(one_output, tmp_path):
    """On a one-output model evaluate reported AOPC 0.000 for every method and prune ranked heads on all-zero
    scores; now both refuse it with OneOutputError naming the tool's need."""
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.pruning.pipeline import run_pruning

    model, tok = one_output
    examples = [attrtools.Example("the movie was good", label=0), attrtools.Example("boring", label=0)]
    with pytest.raises(OneOutputError, match="faithfulness"):
        evaluate_methods(model, tok, examples, ["grad_input"])
    with pytest.raises(OneOutputError, match="head pruning"):
        run_pruning(model, tok, examples, str(tmp_path), strategies=["attattr"])
