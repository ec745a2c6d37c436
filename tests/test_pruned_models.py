"""Pruned models in every tool (issue 19, item 3).

A model pruned by ``prune_heads`` (or reloaded from ``save_pruned``) keeps the original ``(L, H)``
numbering everywhere: matrices have zeros at pruned heads (listed in ``params["_pruned_heads"]``),
no method returns NaN for an emptied layer, head importance equals the unpruned model's with those
heads masked, plans made on it extend its pruning, and ``--model <pruned dir>`` works in the CLI.
"""
import copy
import json

import pytest
import torch

import attrtools
from attrtools import adapters, architecture
from attrtools.methods import get, list_methods
from attrtools.methods.base import UnsupportedArchitecture
from attrtools.pruning.importance import STRATEGIES, head_importance, masked_copy
from attrtools.pruning.plan import make_plan, plan_size
from attrtools.pruning.prune import prune_heads, save_pruned
from attrtools.testing import planted_dataset

from conftest import SENTENCES

PLAN = {0: [1], 1: [0, 1, 2, 3]}  # layer 1 emptied


DECODER_PLAN = {0: [0, 1], 1: [0, 1, 2, 3]}  # one KV group of layer 0 (GQA), layer 1 emptied


def _pruned_pair(tiny_models, arch, plan):
    model, tokenizer = tiny_models[arch]
    pruned = copy.deepcopy(model)
    prune_heads(pruned, plan)
    return model, pruned, tokenizer


@pytest.fixture(scope="module")
def pair(tiny_models):
    return _pruned_pair(tiny_models, "bert", PLAN)


@pytest.fixture(scope="module")
def decoder_pair(tiny_models):
    return _pruned_pair(tiny_models, "llama", DECODER_PLAN)


@pytest.mark.parametrize("method", sorted(set(list_methods())))
def test_every_method_runs_on_a_pruned_model(pair, decoder_pair, method):
    model, pruned, tokenizer = pair
    plan = PLAN
    try:
        get(method).check_model(model)
    except UnsupportedArchitecture:  # a decoder-only method (ALTI-Logit): a pruned decoder classifier
        (model, pruned, tokenizer), plan = decoder_pair, DECODER_PLAN
    fast = {"attattr": {"steps": 3}, "ig_embed": {"steps": 3}}.get(method, {})
    results = attrtools.attribute(pruned, tokenizer, SENTENCES[:2], method=method, **fast)
    for a in results:
        assert torch.isfinite(a.scores).all(), f"{method}: non-finite scores on a pruned model"
        assert a.params["_pruned_heads"] == {str(l): hs for l, hs in plan.items()}
        if a.kind == "matrix":
            assert a.scores.shape[:2] == (2, 4)  # original numbering
            assert float(a.scores[0, 1].abs().sum()) == 0.0 and float(a.scores[1].abs().sum()) == 0.0
    masked = masked_copy(model, plan)  # the unpruned model with those heads masked (zero W_O columns)
    if method in ("attattr", "gradsam", "chefer_grad", "grad_input", "ig_embed", "alti", "alti_logit", "decompx",
                  "globenc", "chefer_lrp"):
        # methods that see a masked head only through its (zero) effect agree with the masked model
        reference = attrtools.attribute(masked, tokenizer, SENTENCES[:2], method=method, **fast)
        for a, r in zip(results, reference):
            scale = r.scores.abs().max().clamp(min=1e-12)
            if a.kind == "matrix":  # the masked model's pruned heads still attend; they attribute 0
                assert ((a.scores - r.scores).abs().max() / scale).item() < 1e-5, method
            elif method not in ("gradsam", "chefer_grad", "globenc", "chefer_lrp"):  # these average attention
                assert ((a.scores - r.scores).abs().max() / scale).item() < 1e-5, method


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_importance_of_pruned_equals_masked(pair, strategy):
    model, pruned, tokenizer = pair
    examples = [attrtools.Example(t, label=y) for t, y in planted_dataset(6, seed=3)]
    ours = head_importance(pruned, tokenizer, examples, strategy, steps=4)
    reference = head_importance(model, tokenizer, examples, strategy, steps=4, base_plan=PLAN)
    assert ours.shape == (2, 4) and not torch.isnan(ours).any()
    assert float(ours[0, 1]) == 0.0 and float(ours[1].abs().sum()) == 0.0
    assert (ours - reference).abs().max().item() <= 1e-6 * max(1.0, reference.abs().max().item())
    if strategy != "random":
        assert ours[0].abs().sum() > 0


def test_plan_on_a_pruned_model_extends_it(pair):
    model, pruned, tokenizer = pair
    examples = [attrtools.Example(t, label=y) for t, y in planted_dataset(6, seed=3)]
    table = head_importance(pruned, tokenizer, examples, "attention")
    already = architecture.pruned_heads(pruned)
    plan = make_plan(table, count=plan_size(already) + 1, already=already)
    new = {l: [h for h in hs if h not in already.get(l, [])] for l, hs in plan.items()}
    assert plan_size(new) == 1 and all(h in architecture.kept_heads(pruned, l) for l, hs in new.items() for h in hs)
    twice = copy.deepcopy(pruned)
    prune_heads(twice, new)
    assert sum(architecture.heads_per_layer(twice)) == sum(architecture.heads_per_layer(pruned)) - 1
    with pytest.warns(UserWarning, match="already pruned"):
        prune_heads(twice, PLAN)


def test_pruned_folder_without_marker_is_a_clean_error(pair, tmp_path):
    from attrtools.commands.common import load_model_or_fail
    from attrtools.models import CheckpointMismatchError

    _, pruned, tokenizer = pair
    directory = save_pruned(pruned, tokenizer, str(tmp_path / "p"))
    (tmp_path / "p" / "pruned_heads.json").unlink()
    with pytest.raises(CheckpointMismatchError, match="pruned_heads.json"):
        attrtools.load_model(directory)
    with pytest.raises(Exception, match="pruned_heads.json") as info:
        load_model_or_fail(directory)
    assert "Traceback" not in str(info.value)


def test_cli_commands_take_a_pruned_folder(pair, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    _, pruned, tokenizer = pair
    directory = save_pruned(pruned, tokenizer, str(tmp_path / "p"))
    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in planted_dataset(8, seed=5)))
    runs = {
        "attribute": ["attribute", "--model", directory, "--dataset", str(data), "--method", "raw"],
        "tree": ["tree", "--model", directory, "--dataset", str(data), "--limit", "2", "--steps", "2",
                 "--formats", "graphml", "--max-pictures", "0"],
        "evaluate": ["evaluate", "--model", directory, "--dataset", str(data), "--limit", "3",
                     "--methods", "raw,rollout"],
        "prune": ["prune", "--model", directory, "--dataset", str(data), "--num-examples", "4", "--steps", "2",
                  "--prune-count", "6", "--strategies", "attention", "--fractions", "0,1",
                  "--latency-repeats", "1"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        result = CliRunner().invoke(main, args + ["--output-dir", str(out)])
        assert result.exit_code == 0, f"{name}: {result.output}"
    summary = json.loads((tmp_path / "prune" / "summary.json").read_text())
    assert summary["plan"]["heads_pruned"] == 6 and summary["plan"]["masked_equals_pruned"]
    again, _ = attrtools.load_model(str(tmp_path / "prune" / "pruned_model"))
    assert sum(architecture.heads_per_layer(again)) == 8 - 6
    assert set(PLAN[0]) <= set(architecture.pruned_heads(again).get(0, []))
