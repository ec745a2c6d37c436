"""Head pruning: masked == physically pruned, save/reload, plans, Taylor gates, AttAttr on the
planted task, the CLI end to end."""
import copy
import json
import os

import pytest
import torch

import attrtools
import attrtools.architecture
from attrtools.capture import capture
from attrtools.engine import Engine
from attrtools.pruning.curve import evaluate_masked, prepare_batches, pruning_curve
from attrtools.pruning.importance import ablation_importance, head_importance, masked_copy, taylor_gradients
from attrtools.pruning.plan import fraction_grid, iterative_plans, make_plan, plan_size, plan_to_mask
from attrtools.pruning.prune import count_parameters, kv_group_size, load_pruned, prune_heads, save_pruned
from attrtools.testing import planted_dataset
from attrtools.types import Example

from conftest import PAIRS, SENTENCES
from helpers import run_cli as _cli
from helpers import write_tsv as _write_tsv


def _plan_for(model):
    """Layer 0 fully pruned, layer 1 partly (whole key/value groups for GQA)."""
    group = kv_group_size(model)
    heads = model.config.num_attention_heads if hasattr(model.config, "num_attention_heads") else model.config.n_heads
    return {0: list(range(heads)), 1: list(range(heads - group, heads))}


def _inputs(model, tokenizer, texts=SENTENCES + PAIRS):
    engine = Engine(model, tokenizer)
    return engine.collate([engine.encode(Example.coerce(t)) for t in texts])


def _mask_logits(model, inputs, plan):
    L, H = attrtools.architecture.num_layers_heads(model)
    with torch.no_grad(), capture(model, head_mask=plan_to_mask(plan, L, H)) as cap:
        logits = model(**inputs).logits
    assert set(cap.calls) == set(range(L))  # the mask really went through attrtools attention
    return logits


def test_masked_equals_pruned(tiny, arch):
    model, tokenizer = tiny
    inputs = _inputs(model, tokenizer)
    plan = _plan_for(model)
    masked = _mask_logits(model, inputs, plan)
    pruned = copy.deepcopy(model)
    prune_heads(pruned, plan)
    with torch.no_grad():
        out = pruned(**inputs).logits
        full = model(**inputs).logits
    assert torch.allclose(out, masked, atol=1e-5)
    assert not torch.allclose(out, full, atol=1e-3)  # the pruning did something
    assert count_parameters(pruned) < count_parameters(model)
    assert attrtools.architecture.heads_per_layer(pruned) == [0, attrtools.architecture.num_layers_heads(model)[1]
                                                         - len(plan[1])]
    # the attrtools attention still runs on the pruned model and records in the original (L, H)
    # numbering: pruned heads read 0, exactly what the unpruned model records with them masked
    L, H = attrtools.architecture.num_layers_heads(model)
    with torch.no_grad(), capture(pruned, record="all") as cap:
        pruned(**inputs)
    with torch.no_grad(), capture(model, record="all", head_mask=plan_to_mask(plan, L, H)) as ref:
        model(**inputs)
    for l in range(L):
        assert cap.attentions[l].shape[1] == H
        torch.testing.assert_close(cap.attentions[l], ref.attentions[l], rtol=1e-5, atol=1e-6)
    assert float(cap.attentions[1][:, plan[1]].abs().sum()) == 0.0


def test_incremental_pruning_uses_original_indices(tiny_models):
    model, tokenizer = tiny_models["bert"]
    inputs = _inputs(model, tokenizer)
    twice = copy.deepcopy(model)
    prune_heads(twice, {1: [0]})
    with pytest.warns(UserWarning, match=r"already pruned, skipped: \{1: \[0\]\}"):
        prune_heads(twice, {1: [0, 2]})  # head 0 is already gone: only original head 2 goes now
    with torch.no_grad():
        out = twice(**inputs).logits
    assert torch.allclose(out, _mask_logits(model, inputs, {1: [0, 2]}), atol=1e-5)
    assert twice._attrtools_pruned_heads == {1: [0, 2]}


def test_gqa_partial_group_refused(tiny_models):
    model, _ = tiny_models["llama"]
    assert kv_group_size(model) == 2
    with pytest.raises(ValueError, match="key/value"):
        prune_heads(copy.deepcopy(model), {1: [0]})


def test_masked_copy_equals_mask(tiny, arch):
    model, tokenizer = tiny
    inputs = _inputs(model, tokenizer)
    plan = {1: [1]}
    with torch.no_grad():
        out = masked_copy(model, plan)(**inputs).logits
    assert torch.allclose(out, _mask_logits(model, inputs, plan), atol=1e-5)


def test_save_and_reload(tiny_dirs, arch, tmp_path):
    model, tokenizer = attrtools.load_model(tiny_dirs[arch])  # own copy: fixtures are shared
    plan = _plan_for(model)
    inputs = _inputs(model, tokenizer)
    prune_heads(model, plan)
    with torch.no_grad():
        before = model(**inputs).logits
    directory = save_pruned(model, tokenizer, str(tmp_path / "pruned"))
    saved = json.load(open(os.path.join(directory, "pruned_heads.json")))
    assert {int(k): v for k, v in saved["pruned_heads"].items()} == plan
    reloaded, tok = attrtools.load_pruned(directory)
    via_load_model, _ = attrtools.load_model(directory)  # recognised by its pruned_heads.json
    assert attrtools.architecture.pruned_heads(via_load_model) == plan
    with torch.no_grad():
        after = reloaded(**_inputs(reloaded, tok)).logits
    assert torch.allclose(after, before, atol=1e-6)
    assert count_parameters(reloaded) == count_parameters(model) < count_parameters(attrtools.load_model(
        tiny_dirs[arch])[0])
    assert attrtools.capture.is_installed(reloaded)


def test_load_pruned_rejects_plain_dir(tiny_dirs):
    with pytest.raises(ValueError, match="pruned_heads.json"):
        load_pruned(tiny_dirs["bert"])


# ------------------------------------------------------------------------------------ plans
def test_plans():
    table = torch.tensor([[5.0, 1.0, 3.0, 8.0],
                          [0.5, 0.7, 9.0, 0.2]])
    assert make_plan(table, count=3) == {1: [0, 1, 3]}
    assert make_plan(table, count=4) == {0: [1], 1: [0, 1, 3]}
    assert make_plan(table, fraction=0.5) == make_plan(table, count=4)  # int(0.5 * 8)
    assert make_plan(table, fraction=0.3) == make_plan(table, count=2)  # int(2.4): official rounding
    # per layer: the same number of heads per layer, lowest within each layer
    assert make_plan(table, count=4, per_layer=True) == {0: [1, 2], 1: [0, 3]}
    # keep one per layer: never empties a layer
    kept = make_plan(table, count=8, keep_one_per_layer=True)
    assert plan_size(kept) == 6 and all(len(h) == 3 for h in kept.values())
    assert plan_size(make_plan(table, count=8)) == 8
    # groups of 2 (GQA): group importance = sum; whole groups only
    assert make_plan(table, count=3, group_size=2) == {1: [0, 1]}
    # nested: already-chosen heads stay
    assert make_plan(table, count=3, already={0: [3]}) == {0: [3], 1: [0, 3]}
    assert fraction_grid(0.25) == [0.0, 0.25, 0.5, 0.75, 1.0] and len(fraction_grid(0.1)) == 11
    with pytest.raises(ValueError):
        make_plan(table, count=9)
    with pytest.raises(ValueError):
        make_plan(table, count=2, fraction=0.1)


def test_iterative_rescoring():
    calls = []

    def score(plan):
        calls.append(plan_size(plan))
        table = torch.arange(8, dtype=torch.float64).view(2, 4)
        if plan:  # once something is pruned, layer 1 becomes the least important
            table[1] -= 100
        return table

    plans = iterative_plans(score, [0, 2, 4, 6])
    assert calls == [0, 2, 4]
    assert plans[2] == {0: [0, 1]}
    assert plans[4] == {0: [0, 1], 1: [0, 1]}  # re-scored: not heads 0.2, 0.3 as one-shot would pick
    assert make_plan(score({}), count=4) == {0: [0, 1, 2, 3]}
    for small, big in [(0, 2), (2, 4), (4, 6)]:
        for layer, heads in plans[small].items():
            assert set(heads) <= set(plans[big][layer])


# ------------------------------------------------------------------------------------ importance
def test_taylor_per_example_matches_gate_gradient(tiny, arch):
    model, tokenizer = tiny
    engine = Engine(model, tokenizer)
    examples = [Example(t, label=i % 2) for i, t in enumerate(SENTENCES)]
    (inputs, labels), = prepare_batches(engine, examples, batch_size=8)
    L, H = attrtools.architecture.num_layers_heads(model)
    per_example, gate_grad = taylor_gradients(model, inputs, labels, torch.ones(L, H))
    assert per_example.shape == (len(examples), L, H)
    assert torch.allclose(per_example.sum(0), gate_grad, atol=1e-5, rtol=1e-4)
    assert gate_grad.abs().sum() > 0
    # batch of one == row of the batch
    (one_inputs, one_labels), = prepare_batches(engine, examples[:1], batch_size=8)
    single, _ = taylor_gradients(model, one_inputs, one_labels, torch.ones(L, H))
    row = [i for i, e in enumerate(sorted(examples, key=lambda e: len(engine.encode(e).input_ids)))
           if e is examples[0]][0]
    assert torch.allclose(single[0], per_example[row], atol=1e-5, rtol=1e-4)
    taylor = head_importance(model, tokenizer, examples, "taylor")
    assert torch.allclose(taylor.norm(dim=1), torch.ones(L, dtype=torch.float64), atol=1e-6)  # per-layer L2


def test_attention_importance_is_summed_max_attention(tiny_models):
    model, tokenizer = tiny_models["roberta"]
    ours = head_importance(model, tokenizer, SENTENCES, "attention")
    expected = 0
    for text in SENTENCES:
        with torch.no_grad(), capture(model, record="all") as cap:
            model(**_inputs(model, tokenizer, [text]))
        expected = expected + torch.stack([a[0].flatten(1).amax(-1) for a in cap.attention_list()]).double()
    assert torch.allclose(ours, expected, atol=1e-6)


def test_random_is_seeded(tiny_models):
    model, tokenizer = tiny_models["bert"]
    a = head_importance(model, tokenizer, SENTENCES, "random", seed=3)
    assert torch.equal(a, head_importance(model, tokenizer, SENTENCES, "random", seed=3))
    assert not torch.equal(a, head_importance(model, tokenizer, SENTENCES, "random", seed=4))


def test_attattr_ranks_rule_heads_first(planted):
    """On the planted task (label = "alpha" before "beta"), the heads that carry the rule, defined
    independently as those whose single-head ablation costs the most accuracy, rank on top by AttAttr."""
    model, tokenizer = planted
    examples = [Example(t, label=y) for t, y in planted_dataset(160, seed=11)]
    engine = Engine(model, tokenizer)
    drop = ablation_importance(model, prepare_batches(engine, examples), torch.ones(2, 4), metric="accuracy")
    attattr = head_importance(model, tokenizer, examples[:24], "attattr", engine=engine)
    order = attattr.flatten().argsort(descending=True)
    flat_drop = drop.flatten()
    top2, bottom4 = order[:2], order[4:]
    assert flat_drop.max() > 0.1  # some head does carry the rule
    assert set(top2.tolist()) & set(flat_drop.argsort(descending=True)[:2].tolist())
    assert flat_drop[top2].mean() > flat_drop[bottom4].mean() + 0.05
    assert int(order[0]) == int(flat_drop.argmax()) or int(order[1]) == int(flat_drop.argmax())


def test_curve_end_points(planted):
    model, tokenizer = planted
    examples = [Example(t, label=y) for t, y in planted_dataset(64, seed=2)]
    batches = prepare_batches(Engine(model, tokenizer), examples)
    table = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    plans = {"x": {0.0: {}, 0.5: make_plan(table, fraction=0.5), 1.0: make_plan(table, fraction=1.0)}}
    rows = pruning_curve(model, batches, plans)
    assert [r["heads_pruned"] for r in rows] == [0, 4, 8]
    assert rows[0]["accuracy"] == evaluate_masked(model, batches)["accuracy"] > 0.9
    everything = copy.deepcopy(model)
    prune_heads(everything, plans["x"][1.0])  # no attention at all: still runs, same as all masked
    assert abs(evaluate_masked(everything, batches)["loss"] - rows[2]["loss"]) < 1e-5


# ------------------------------------------------------------------------------------ CLI
def test_cli_end_to_end(planted_dir, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    data = tmp_path / "planted.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in planted_dataset(48, seed=7)))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data),
                                       "--num-examples", "12", "--steps", "4", "--prune-fraction", "0.5",
                                       "--strategies", "attattr,ablation,random", "--fractions", "0,0.5,1",
                                       "--latency-repeats", "2", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    for name in ["head_importance.csv", "pruning_curve.csv", "pruning_curve.png", "pruned_heads.json",
                 "summary.json", "run_config.json", "pruned_model/pruned_heads.json", "report.html"]:
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"]["heads_pruned"] == 4 and summary["plan"]["masked_equals_pruned"]
    assert summary["parameters"]["after"] < summary["parameters"]["before"]
    curve = (out / "pruning_curve.csv").read_text().splitlines()
    assert len(curve) == 1 + 3 * 3  # 3 strategies x (0, 50, 100 %)
    assert len((out / "head_importance.csv").read_text().splitlines()) == 1 + 3 * 8
    model, _ = attrtools.load_pruned(str(out / "pruned_model"))
    assert attrtools.architecture.heads_per_layer(model) != [4, 4]

    bad = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data), "--strategies",
                                    "magic", "--output-dir", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "unknown strategy" in bad.output
    both = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data), "--prune-count", "2",
                                     "--prune-fraction", "0.3", "--output-dir", str(tmp_path / "bad2")])
    assert both.exit_code != 0 and "either" in both.output


def test_curve_points_come_back_from_the_cache(planted, tmp_path, monkeypatch):
    """Masked evaluations are cached by model fingerprint, mask and inputs: a second curve reads
    every point back (same numbers, no forward pass); other inputs, masks or weights miss."""
    from attrtools.cache import AttributionCache
    from attrtools.pruning import curve

    model, tokenizer = planted
    engine = Engine(model, tokenizer)
    examples = [Example(t, label=y) for t, y in planted_dataset(24, seed=5)]
    batches = prepare_batches(engine, examples, batch_size=8)
    plans = {"a": {0.0: {}, 0.5: {0: [0, 1], 1: [2]}}, "b": {0.0: {}, 0.5: {1: [0, 3]}}}
    cache = AttributionCache(str(tmp_path / "cache"))
    first = pruning_curve(model, batches, plans, cache=cache)
    assert first == pruning_curve(model, batches, plans)  # cached run == plain run
    runs = []
    real = curve._evaluate
    monkeypatch.setattr(curve, "_evaluate", lambda *args: runs.append(args) or real(*args))
    fresh = AttributionCache(str(tmp_path / "cache"))  # a new process: disk tier only
    second = pruning_curve(model, batches, plans, cache=fresh)
    assert second == first and runs == []
    # other inputs, another mask, other weights: computed
    pruning_curve(model, batches[:1], plans, cache=fresh)
    assert len(runs) == 3
    mask = torch.ones(2, 4)
    mask[0, 3] = 0
    evaluate_masked(model, batches, mask, cache=fresh)
    assert len(runs) == 4
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    evaluate_masked(changed, batches, None, cache=fresh)
    assert len(runs) == 5


# ------------------------------------------------------------------------ checked before the run directory
def test_prune_count_beyond_the_config_heads_is_refused_before_the_run_dir(planted_dir, tmp_path):
    """An out-of-range --prune-count was found only after the model loaded, with the run directory
    already written."""
    from attrtools.architecture import config_head_count
    from attrtools.models import load_config

    heads = config_head_count(load_config(planted_dir))
    assert heads == 8
    data = _write_tsv(tmp_path / "d.tsv", [("alpha the movie beta", 1), ("beta was alpha", 0)])
    out = tmp_path / "run"
    result = _cli(["prune", "--model", planted_dir, "--dataset", data, "--prune-count", str(heads + 1),
                   "--strategies", "attention", "--output-dir", out, "--no-cache"])
    assert result.exit_code == 2 and f"--prune-count must be in 0..{heads}" in result.output, result.output
    assert not out.exists()
    negative = _cli(["prune", "--model", planted_dir, "--dataset", data, "--prune-count", "-1",
                     "--output-dir", out, "--no-cache"])
    assert negative.exit_code == 2 and "--prune-count" in negative.output and not out.exists()
    from attrtools.errors import ParameterError
    from attrtools.pruning.cli import prune_command

    with pytest.raises(ParameterError, match=r"PruneConfig.prune_count \(--prune-count\) must be a whole number >= 0"):
        prune_command(planted_dir, str(data), strategies="attention", num_examples=4, prune_count=-1,
                      no_cache=True, output_dir=str(out))  # the Python entry point too (its options are keywords)
    assert not out.exists()


# ------------------------------------------------------------------------------ saved atomically
def test_save_pruned_is_atomic(planted, planted_dir, tmp_path, monkeypatch):
    """save_pruned wrote into the final folder, so a crash (a full disk) could leave a folder that does not
    load; now it builds aside and renames: the old folder stays whole and a new one appears only complete."""
    from attrtools.pruning import prune as P

    model, tok = attrtools.load_model(planted_dir)
    final = str(tmp_path / "pruned")
    P.prune_heads(model, {0: [0]})
    P.save_pruned(model, tok, final)
    reference, _ = P.load_pruned(final)
    original = P._write_pruned

    def crash(model, tokenizer, directory, extra=None):
        original(model, tokenizer, directory, extra)
        os.unlink(os.path.join(directory, "model.safetensors"))  # half written ...
        raise OSError(28, "No space left on device")  # ... when the disk fills

    monkeypatch.setattr(P, "_write_pruned", crash)
    with pytest.raises(OSError):
        P.save_pruned(model, tok, final)
    reloaded, _ = P.load_pruned(final)  # the old folder is still there, whole
    assert P.pruned_heads_of(reloaded) == P.pruned_heads_of(reference)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")] == []
    with pytest.raises(OSError):
        P.save_pruned(model, tok, str(tmp_path / "fresh"))
    assert not os.path.exists(tmp_path / "fresh")  # never a folder that does not load
