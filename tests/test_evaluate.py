"""Faithfulness harness: operators, bins, metrics on hand-computed toy cases, the runner and the CLI."""
import math
import os

import pytest
import torch

import attrtools
from attrtools.cache import AttributionCache
from attrtools.evaluate import metrics as M
from attrtools.evaluate.perturb import (PRESETS, Perturber, Predictor, curve_grid, get_bins, plan_example,
                                        rank_tokens, token_count)

from helpers import labelled_csv as _labelled_csv
from helpers import run_cli as _cli
from helpers import write_tsv as _write_tsv

CLS, SEP, MASK, PAD = 2, 3, 4, 0
IMPORTANT = {5, 6, 7}
IDS = [CLS, 5, 6, 9, 7, SEP]
TYPES = [0, 0, 0, 0, 0, 0]
SPECIAL = [1, 0, 0, 0, 0, 1]
GOOD = [0.0, 3.0, 2.0, 0.5, 1.0, 9.0]  # ranks 5 > 6 > 7 > 9; [SEP] scores high but is special


def toy_forward(seqs):
    """p(class 1) = 0.15 + 0.2 * (number of ids 5, 6, 7 still present): known for every input."""
    rows = []
    for ids, _ in seqs:
        s = 0.15 + 0.2 * sum(1 for t in ids if t in IMPORTANT)
        rows.append([1 - s, s])
    return torch.tensor(rows)


def toy_metrics(scores, operator="mask", preset="decompx", label=1):
    perturber = Perturber(operator, MASK, PAD)
    plan = plan_example(IDS, TYPES, SPECIAL, scores, get_bins(preset), perturber)
    predictor = Predictor(toy_forward, batch_tokens=16)
    predictor.run(list(plan.sequences()))
    return M.example_metrics(plan, predictor.memo, target=1, label=label), plan, predictor


def test_token_counts_and_presets():
    assert token_count(0.1, 30) == 3 and token_count(0.3, 10) == 3  # float noise does not round down
    assert token_count(0.1, 30, "ceil") == 3 and token_count(0.01, 4, "ceil") == 1
    assert token_count(0.9, 4) == 3 and token_count(1.0, 4) == 4 and token_count(0.0, 4) == 0
    assert PRESETS["decompx"].fractions[0] == 0.0 and len(PRESETS["decompx"].fractions) == 10
    assert PRESETS["ferret"].fractions[-1] == 1.0 and PRESETS["eraser"].rounding == "ceil"
    assert curve_grid(PRESETS["eraser"]) == (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
    with pytest.raises(ValueError, match="unknown bin preset"):
        get_bins("nope")


def test_ranking_ignores_special_tokens_and_breaks_ties_by_position():
    assert rank_tokens(GOOD, SPECIAL) == [1, 2, 4, 3]
    assert rank_tokens([5, 1, 1, 1, 5], [1, 0, 0, 0, 1]) == [1, 2, 3]


def test_operators():
    types = [0, 0, 0, 1, 1, 1]
    assert Perturber("delete").remove(IDS, types, [1, 3]) == ((CLS, 6, 7, SEP), (0, 0, 1, 1))
    assert Perturber("mask", MASK, PAD).remove(IDS, types, [1, 3]) == ((CLS, MASK, 6, MASK, 7, SEP), tuple(types))
    assert Perturber("pad", MASK, PAD).remove(IDS, types, [4]) == ((CLS, 5, 6, 9, PAD, SEP), tuple(types))
    with pytest.raises(ValueError, match="unknown perturbation operator"):
        Perturber("blur")
    with pytest.raises(ValueError, match="mask token"):
        Perturber("mask", None, PAD)


@pytest.mark.parametrize("operator", ["mask", "delete", "pad"])
def test_metrics_on_hand_computed_toy_case(operator):
    m, plan, _ = toy_metrics(GOOD, operator)
    # decompx bins 0..90 % of n=4 tokens (floor): k = 0,0,0,1,1,2,2,2,3,3
    assert [len([t for t in seq[0] if t in (MASK, PAD)]) if operator != "delete" else 6 - len(seq[0])
            for _, seq in plan.comprehensiveness] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert m["f0"] == pytest.approx(0.75)
    assert m["curves"]["comprehensiveness"] == pytest.approx([.75, .75, .75, .55, .55, .35, .35, .35, .15, .15])
    assert m["aopc_comp"] == pytest.approx(0.28)  # (0+0+0+.2+.2+.4+.4+.4+.6+.6)/10
    assert m["aopc_suff"] == pytest.approx(0.32)  # (.6+.6+.6+.4+.4+.2+.2+.2+0+0)/10
    assert m["deletion_auc"] == pytest.approx(0.44)  # grid 0..1 step .1, last point = all removed (.15)
    assert m["insertion_auc"] == pytest.approx(0.46)
    expected_lo = (2 * math.log(.55 / .75) + 3 * math.log(.35 / .75) + 2 * math.log(.15 / .75)) / 9
    assert m["log_odds"] == pytest.approx(expected_lo)
    assert m["accuracy"] == pytest.approx(0.5)  # predicted class 1 while p > .5: 5 of 10 bins
    assert m["curves"]["accuracy"] == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_good_ranking_beats_reversed_ranking():
    good, _, _ = toy_metrics(GOOD)
    bad, _, _ = toy_metrics([-s for s in GOOD])
    assert good["aopc_comp"] > bad["aopc_comp"] and good["aopc_suff"] < bad["aopc_suff"]
    assert good["deletion_auc"] < bad["deletion_auc"] and good["insertion_auc"] > bad["insertion_auc"]
    assert good["log_odds"] < bad["log_odds"]


def test_eraser_bins_toy_case():
    m, plan, _ = toy_metrics(GOOD, "delete", "eraser")
    # ceil(p*4) for 1, 5, 10, 20, 50 % = 1, 1, 1, 1, 2 tokens removed
    assert m["curves"]["comprehensiveness"] == pytest.approx([.55, .55, .55, .55, .35])
    assert m["aopc_comp"] == pytest.approx((4 * .2 + .4) / 5)
    assert m["aopc_suff"] == pytest.approx((4 * .4 + .2) / 5)


def test_metric_functions_hand_computed():
    assert M.aopc(1.0, [0.5, 0.25]) == pytest.approx(0.625)
    assert M.trapezoid_auc([0, 0.5, 1], [1, 0, 1]) == pytest.approx(0.5)
    assert M.trapezoid_auc([0, 2], [1, 3]) == pytest.approx(2.0)
    assert M.log_odds(0.5, [0.25, 0.5]) == pytest.approx(math.log(0.5) / 2)
    assert M.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert M.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))  # tie-averaged ranks
    assert math.isnan(M.spearman([1, 1, 1], [1, 2, 3]))
    assert M.ranks([3, 1, 3, 2]) == [3.5, 1, 3.5, 2]


def test_predictor_memoises_and_batches_like_single_passes(planted):
    model, tok = planted
    enc = tok(["the alpha movie beta", "beta was alpha very good fun", "alpha"], add_special_tokens=True)
    seqs = [(tuple(ids), tuple([0] * len(ids))) for ids in enc["input_ids"]]
    batched = Predictor.for_model(model, tok, True, batch_tokens=4096)
    single = Predictor.for_model(model, tok, True, batch_tokens=1)
    out_b, out_s = batched(seqs + seqs), single(seqs)
    assert batched.evaluated == 3  # duplicates computed once
    torch.testing.assert_close(torch.tensor(out_b[:3]), torch.tensor(out_s), atol=1e-5, rtol=1e-4)


def _dataset(tmp_path, count=10):
    from attrtools.testing import planted_dataset

    path = tmp_path / "planted.tsv"
    rows = planted_dataset(count, seed=3)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return str(path), rows


def test_runner_on_planted_model_uses_cache_and_adds_random(planted, tmp_path):
    from attrtools.cache import AttributionCache
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.testing import planted_dataset
    from attrtools.types import Example

    model, tok = planted
    examples = [Example(t, label=y) for t, y in planted_dataset(16, seed=5)]
    cache = AttributionCache(str(tmp_path / "cache"))
    methods = ["decompx", "alti", "not_a_method"]
    first = evaluate_methods(model, tok, examples, methods, cache=cache, reference="decompx")
    names = [r.name for r in first.results]
    assert names == ["random"] + methods
    by = {r.name: r for r in first.results}
    assert by["not_a_method"].status == "skipped" and "not a registered method" in by["not_a_method"].reason
    for name in ("decompx", "alti", "random"):
        s = by[name].summary
        assert by[name].status == "ok" and by[name].n_examples == 16
        for key in M.SCALARS:
            assert math.isfinite(s[key]), (name, key)
        assert -1 <= s["aopc_comp"] <= 1 and 0 <= s["deletion_auc"] <= 1
    assert by["decompx"].spearman == pytest.approx(1.0)  # the reference against itself
    for name in ("decompx", "random"):  # table values are the means of the per-example values
        per = by[name].per_example
        assert by[name].summary["aopc_comp"] == pytest.approx(sum(m["aopc_comp"] for m in per) / len(per))
        assert by[name].summary["curves"]["deletion"][0] == pytest.approx(sum(m["f0"] for m in per) / len(per))
    second = evaluate_methods(model, tok, examples, ["decompx"], cache=cache, reference=None,
                              method_limits={"decompx": 8})
    again = {r.name: r for r in second.results}["decompx"]
    assert again.from_cache == 8 and again.n_examples == 8
    assert [m["aopc_comp"] for m in again.per_example] == pytest.approx(
        [m["aopc_comp"] for m in by["decompx"].per_example[:8]])
    # the random row is seeded: identical across runs
    assert second.results[0].summary["aopc_comp"] == pytest.approx(by["random"].summary["aopc_comp"])


def test_method_refusing_the_architecture_is_a_skipped_row(tiny_models):
    from attrtools.evaluate.run import evaluate_methods

    model, tok = tiny_models["llama"]
    result = evaluate_methods(model, tok, ["the movie was good", "boring"], ["globenc", "raw"], operator="pad",
                              reference=None)
    by = {r.name: r for r in result.results}
    assert by["globenc"].status == "skipped" and "pre-LN" in by["globenc"].reason
    assert by["raw"].status == "ok" and by["random"].status == "ok"


def test_cli_writes_every_output(planted_dir, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    data, _ = _dataset(tmp_path)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["evaluate", "--model", planted_dir, "--dataset", data, "--methods",
                                       "decompx,alti", "--preset", "eraser", "--operator", "delete", "--limit", "6",
                                       "--reference", "alti", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("faithfulness.csv", "faithfulness.md", "curves.csv", "per_example.csv", "faithfulness_curves.png",
                 "run_config.json"):
        assert os.path.getsize(out / name) > 0, name
    table = (out / "faithfulness.csv").read_text().splitlines()
    assert table[0].startswith("method,status,n_examples,aopc_comp")
    assert {line.split(",")[0] for line in table[1:]} == {"decompx", "alti", "random"}
    assert "| decompx | 6 |" in (out / "faithfulness.md").read_text()


def test_cli_rejects_bad_input(planted_dir, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    data, _ = _dataset(tmp_path)
    runner = CliRunner()
    bad_method = runner.invoke(main, ["evaluate", "--model", planted_dir, "--dataset", data, "--methods", "nope",
                                      "--output-dir", str(tmp_path / "x")])
    assert bad_method.exit_code != 0 and "unknown method" in bad_method.output
    bad_limit = runner.invoke(main, ["evaluate", "--model", planted_dir, "--dataset", data, "--method-limit", "flow",
                                     "--output-dir", str(tmp_path / "y")])
    assert bad_limit.exit_code != 0 and "METHOD=N" in bad_limit.output
    missing = runner.invoke(main, ["evaluate", "--model", planted_dir, "--dataset", str(tmp_path / "none.tsv"),
                                   "--output-dir", str(tmp_path / "z")])
    assert missing.exit_code != 0 and "not found" in missing.output


# ---------------------------------------------------------------------- parameters, the reference's column
def test_evaluate_param_for_a_method_not_chosen_is_a_usage_error(planted_dir, tmp_path):
    """``--methods grad_input,raw --param attattr:steps=3`` was accepted and the parameter ignored."""
    data = _write_tsv(tmp_path / "d.tsv", [("a good film", 1), ("a bad film", 0)])
    out = tmp_path / "run"
    result = _cli(["evaluate", "--model", planted_dir, "--dataset", data, "--methods", "grad_input,raw",
                   "--param", "attattr:steps=3", "--output-dir", out, "--no-cache"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "attattr:steps=3" in lines[0] and "'attattr' is not among" in lines[0], lines
    assert not out.exists()  # refused before anything ran
    from attrtools.cli_kit import UserError, parse_params

    assert parse_params(["attattr:steps=3"], ["attattr", "raw"]) == {"attattr": {"steps": 3}}
    with pytest.raises(UserError, match="ig_embed"):
        parse_params(["ig_embed:steps=3"], ["attattr", "raw"])


def test_agreement_column_does_not_mark_the_reference_itself_best():
    """grad_input's ρ = 1 with itself was marked the best of the agreement column."""
    from attrtools.evaluate.report import html_report, markdown
    from attrtools.evaluate.run import Evaluation, MethodResult

    def result(name, comp, rho):
        return MethodResult(name, n_examples=2, summary={"aopc_comp": comp, "aopc_suff": 0.1, "deletion_auc": 0.2,
                                                          "insertion_auc": 0.3, "log_odds": -0.1, "accuracy": 0.5},
                            spearman=rho, spearman_std=0.0)

    evaluation = Evaluation("eraser", "delete", "grad_input", 2, 1.0,
                            [result("grad_input", 0.3, 1.0), result("attattr", 0.5, 0.6), result("raw", 0.2, 0.4)])
    rows = {line.split("|")[1].strip(): line for line in markdown(evaluation).splitlines() if line.startswith("| ")}
    assert "**1.000 ±" not in rows["grad_input"] and "1.000 ±" in rows["grad_input"]
    assert "**0.600 ±" in rows["attattr"] and "**0.400" not in rows["raw"]
    report = html_report(evaluation)
    table = [b for s in report.sections for b in s.blocks if getattr(b, "best", None) is not None][0]
    rho_column = table.columns.index("ρ vs G×I ↑")
    marked = {table.rows[r][0] for r, c in table.best if c == rho_column}
    assert marked == {"attattr"}
    assert not math.isnan(evaluation.results[0].spearman)


# ------------------------------------------------------------------------- rows without content, operators
def test_evaluate_skips_contentless_rows_instead_of_averaging_zeros(planted):
    """evaluate averaged a whitespace-only row in as all zeros; now the row is skipped with its reason and the
    scores equal those of the data without it."""
    from attrtools.evaluate.report import markdown
    from attrtools.evaluate.run import evaluate_methods

    model, tok = planted
    good = [attrtools.Example("alpha the movie beta", label=1, id="g1"),
            attrtools.Example("beta was alpha", label=0, id="g2")]
    with_blank = [good[0], attrtools.Example("   ", label=0, id="blank"), good[1]]
    clean = evaluate_methods(model, tok, good, ["grad_input"], reference=None, preset="eraser")
    mixed = evaluate_methods(model, tok, with_blank, ["grad_input"], reference=None, preset="eraser")
    assert mixed.n_examples == 2 and mixed.example_ids == ["g1", "g2"]
    assert [r["id"] for r in mixed.skipped_rows] == ["blank"] and "whitespace-only" in mixed.skipped_rows[0]["reason"]
    for a, b in zip(clean.results, mixed.results):
        assert a.summary["aopc_comp"] == pytest.approx(b.summary["aopc_comp"]) and len(b.per_example) == 2
    assert "1 row(s) without content skipped, 3 rows read" in markdown(mixed)


@pytest.fixture(scope="module")
def nomask_dir(tmp_path_factory):
    """The planted model with a tokenizer that has no mask token (as most decoders')."""
    import json
    import shutil

    from conftest import PLANTED_ASSET

    directory = str(tmp_path_factory.mktemp("nomask") / "model")
    shutil.copytree(PLANTED_ASSET, directory)
    path = os.path.join(directory, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    values["mask_token"] = None
    with open(path, "w", encoding="utf-8") as f:
        json.dump(values, f)
    return directory


def test_evaluate_operator_checked_before_the_model_and_the_run_dir(nomask_dir, tmp_path, monkeypatch):
    """The new-user trial: --operator mask on a tokenizer without [MASK] failed after the model had
    loaded and left run_config.json behind, so the corrected rerun into the same folder was refused."""
    import attrtools.evaluate.cli as evaluate_cli

    data = _labelled_csv(tmp_path)
    out = tmp_path / "run"
    loads = []
    real = evaluate_cli.load_model_or_fail
    monkeypatch.setattr(evaluate_cli, "load_model_or_fail", lambda *a, **k: loads.append(a) or real(*a, **k))
    refused = _cli(["evaluate", "--model", nomask_dir, "--dataset", data, "--methods", "grad_input",
                    "--reference", "none", "--operator", "mask", "--output-dir", out])
    assert refused.exit_code == 2, refused.output
    assert refused.output.strip() == ("Error: --operator mask: this tokenizer has no mask token; use --operator "
                                      "delete or pad")
    assert loads == [] and not (out / "run_config.json").exists()
    fixed = _cli(["evaluate", "--model", nomask_dir, "--dataset", data, "--methods", "grad_input",
                  "--reference", "none", "--operator", "pad", "--output-dir", out])  # no --overwrite needed
    assert fixed.exit_code == 0, fixed.output
    assert len(loads) == 1 and (out / "faithfulness.csv").exists()


# ------------------------------------------------------------------------------ resumes after a kill
def test_evaluate_rerun_after_a_kill_redoes_no_finished_forwards(planted, tmp_path):
    """A kill after the second method: the rerun takes the finished methods' perturbed forwards
    (and the clean ones) from the cache, and its table equals an uninterrupted run's."""
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.testing import planted_dataset
    from attrtools.types import Example

    model, tok = planted
    examples = [Example(t, label=y) for t, y in planted_dataset(12, seed=9)]
    methods_ = ["grad_input", "raw", "rollout"]
    plain = evaluate_methods(model, tok, examples, methods_, cache=None, reference=None)
    cache = AttributionCache(tmp_path / "c")

    class Killed(Exception):
        pass

    def kill_after_two(evaluation):
        if len(evaluation.results) == 3:  # random, grad_input, raw finished
            raise Killed

    with pytest.raises(Killed):
        evaluate_methods(model, tok, examples, methods_, cache=cache, reference=None, on_result=kill_after_two)
    rerun = evaluate_methods(model, tok, examples, methods_, cache=AttributionCache(tmp_path / "c"), reference=None)
    unfinished = evaluate_methods(model, tok, examples, ["rollout"], cache=None, reference=None)
    # Only what the killed run had not reached is computed again: rollout's perturbations that no
    # finished method shared (an uninterrupted rollout-only run computes those plus the clean pass).
    assert rerun.forwards < plain.forwards and rerun.forwards <= unfinished.forwards - len(examples)
    assert rerun.forwards_reused > 0
    for a, b in zip(rerun.results, plain.results):
        assert a.name == b.name and a.summary["aopc_comp"] == pytest.approx(b.summary["aopc_comp"], abs=1e-9)
    again = evaluate_methods(model, tok, examples, methods_, cache=AttributionCache(tmp_path / "c"), reference=None)
    assert again.forwards == 0  # everything, clean pass included, from the cache
    print(f"evaluate rerun after kill: {rerun.forwards} forwards (uninterrupted: {plain.forwards}); "
          f"complete rerun: {again.forwards}")
