"""The quadrature module and steps='auto': nested rules, the adaptive driver, its error estimate."""
import math
import warnings

import numpy as np
import pytest
import torch

import attrtools
from attrtools.errors import ParameterError
from attrtools.methods import get
from attrtools.methods.integration import (LADDER, PRECISION_FLOORS, IntegrationWarning, composite_gausslegendre,
                                           first_level_from_history, integrate_adaptive, nested_levels,
                                           precision_floor, quadrature, relative_change)
from attrtools.testing import official_style_attattr

from conftest import PAIRS, SENTENCES


def _degree_of_exactness(alphas, weights):
    """Largest d such that the rule integrates every shifted Legendre polynomial up to degree d on [0, 1]."""
    x = 2 * np.asarray(alphas) - 1
    w = np.asarray(weights)
    degree = -1
    for d in range(0, 400):
        value = float(w @ np.polynomial.legendre.legval(x, [0] * d + [1]))
        if abs(value - (1.0 if d == 0 else 0.0)) > 1e-11:
            return degree
        degree = d
    return degree


def test_nested_levels_are_nested_and_exact():
    levels = nested_levels()
    assert [len(a) for a, _ in levels] == list(LADDER)
    for k, (alphas, weights) in enumerate(levels):
        assert all(0 < a < 1 for a in alphas) and all(w > 0 for w in weights)
        assert math.fsum(weights) == pytest.approx(1.0, abs=1e-13)
        if k:  # every node of the level below is kept, first, in order
            assert alphas[:LADDER[k - 1]] == levels[k - 1][0]
    # degrees: Gauss 1 and 3 (2m-1), Kronrod 7 (3*3+1, odd -> 11), Patterson 15 (3*7+1 -> 23), 31 (-> 47)
    assert [_degree_of_exactness(*lv) for lv in levels[:5]] == [1, 5, 11, 23, 47]
    assert _degree_of_exactness(*levels[5]) >= 95


def test_kronrod_and_gauss_tables():
    """Level 3 is Gauss-Legendre 3; level 7 is the Kronrod extension of QUADPACK's tables (qk15's
    G7/K15 are a different pair; K7 of G3: node 0.960491268708020283, weight 0.104656226026467265)."""
    a3, w3 = quadrature(3, "patterson")
    g3, gw3 = quadrature(3, "gausslegendre")
    assert sorted(a3) == pytest.approx(sorted(g3), abs=1e-15) and sorted(w3) == pytest.approx(sorted(gw3), abs=1e-15)
    a7, w7 = quadrature(7, "patterson")
    outer = max(range(7), key=lambda k: a7[k])
    assert 2 * a7[outer] - 1 == pytest.approx(0.960491268708020283, abs=1e-14)
    assert 2 * w7[outer] == pytest.approx(0.104656226026467265, abs=1e-14)


def test_fixed_rules_and_refusals():
    alphas, weights = quadrature(4)
    assert alphas == [0.0, 0.25, 0.5, 0.75] and sum(weights) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="patterson rule has"):
        quadrature(5, "patterson")
    with pytest.raises(ValueError, match="unknown steps_method"):
        quadrature(3, "simpson")
    impl = get("attattr")
    assert impl.params()["steps_method"] == "patterson" and impl.params()["tolerance"] == 1e-3
    official = impl.params(steps=20)
    assert official["steps_method"] == "riemann_left" and official["tolerance"] is None
    assert get("ig_embed").params(steps=20)["steps_method"] == "riemann_right"
    with pytest.raises(ParameterError, match="needs an integer steps"):
        impl.params(steps="auto", steps_method="riemann_left")
    with pytest.raises(ParameterError, match="'auto' or an integer"):
        impl.params(steps="many")
    with pytest.raises(ParameterError, match="tolerance"):
        impl.params(tolerance=0)


@pytest.mark.parametrize("scale", [1.0, 6.0, 25.0])
def test_adaptive_driver_meets_tolerance_on_known_integrals(scale):
    """g(α) = vector of smooth functions with a sharpening knee (logistic of scale * (α - 0.3));
    the driver stops at the first level that meets the tolerance; its estimate bounds the error."""
    centers = torch.tensor([0.3, 0.5, 0.8], dtype=torch.float64)

    def g(alpha):
        return torch.sigmoid(scale * (alpha - centers)) * scale

    exact = torch.log1p(torch.exp(scale * (1 - centers))) - torch.log1p(torch.exp(-scale * centers))
    calls = []

    def evaluate(pairs):
        calls.append(len(pairs))
        return [g(torch.tensor(a, dtype=torch.float64)) for _, a in pairs]

    for tolerance in (1e-2, 1e-4, 1e-5):
        calls.clear()
        done = integrate_adaptive(["x"], evaluate, lambda item, q: q, tolerance)
        value, record, _ = done["x"]
        true = relative_change(value, exact)
        assert record["met"] and record["error_estimate"] <= tolerance
        assert true <= tolerance
        assert record["error_estimate"] * 2 >= true  # never below the true error by more than 2x
        assert sum(calls) == record["passes"]  # nested: each node evaluated once


def test_precision_floor_stops_a_noisy_integrand():
    """An integrand with rounding noise of 1e-2 (a reduced-precision forward): with a floor the driver
    stops where the estimate meets it and the record says so; without, it spends every pass."""
    def run(floor):
        rng = np.random.default_rng(0)

        def evaluate(pairs):
            return [np.array([math.cos(a), 1 + a]) * (1 + 1e-2 * rng.standard_normal()) for _, a in pairs]

        return integrate_adaptive(["x"], evaluate, lambda item, q: q, 1e-6, floor=floor)["x"][1]

    floored, unfloored = run(3e-2), run(None)
    assert floored["floor"] == 3e-2 and floored["tolerance"] == 1e-6 and floored["met"]
    assert 1e-6 < floored["error_estimate"] <= 3e-2 and floored["passes"] <= 7
    assert unfloored["floor"] is None and not unfloored["met"] and unfloored["passes"] > 200
    assert run(1e-7)["floor"] is None  # a floor below the tolerance plays no part
    assert precision_floor(torch.bfloat16) == PRECISION_FLOORS["bfloat16"] == precision_floor("bfloat16")
    assert precision_floor(torch.float16) == PRECISION_FLOORS["float16"] and precision_floor(torch.float32) is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_auto_stops_at_the_floor(tiny_models, dtype):
    """A bf16/fp16 model under steps='auto', tolerance=1e-4: every integral meets the tolerance or
    stops at the dtype's floor (records: floor, met) in few passes instead of 255, within a few floors
    of the fp32 integral, and the call says so in one IntegrationWarning."""
    model, tokenizer = tiny_models["bert"]
    texts = SENTENCES[:2]
    reference = attrtools.attribute(model, tokenizer, texts, method="attattr", steps=31,
                                    steps_method="gausslegendre", cache=None)
    half = model.to(dtype)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = attrtools.attribute(half, tokenizer, texts, method="attattr", tolerance=1e-4, cache=None)
    finally:
        model.to(torch.float32)
    floor = PRECISION_FLOORS[str(dtype).replace("torch.", "")]
    for ours, ref in zip(results, reference):
        record = ours.completeness
        assert set(record["floor"]) <= {None, floor} and all(record["met"]) and max(record["passes"]) <= 31
        assert all(e <= (1e-4 if f is None else floor) for e, f in zip(record["error_estimate"], record["floor"]))
        assert relative_change(ours.scores.double(), ref.scores.double()) < 3 * floor
    floored = sum(floor in r.completeness["floor"] for r in results)
    said = [w for w in caught if issubclass(w.category, IntegrationWarning)]
    assert floored and len(said) == 1 and f"{floored} of 2" in str(said[0].message)
    assert f"floor {floor:g}" in str(said[0].message) and said[0].filename == __file__


@pytest.mark.parametrize("first_level", [2, 3])
def test_prefetching_a_level_changes_no_result(first_level):
    """first_level: the first evaluation fetches that level's nodes in one batch; every item's value,
    record and integral equal those of the level-by-level run, with fewer evaluate calls, and every
    node is still evaluated once (the early ones only for items that needed them or were in that batch)."""
    scales = {"flat": 0.5, "knee": 8.0, "sharp": 40.0}  # stop at 3, around 7-15, and in bisection

    def g(item, alpha):
        centers = torch.tensor([0.3, 0.5, 0.8], dtype=torch.float64)
        return torch.sigmoid(scales[item] * (torch.tensor(alpha, dtype=torch.float64) - centers)) * scales[item]

    def run(level):
        calls = []

        def evaluate(pairs):
            calls.append(sorted(pairs))
            return [g(item, a) for item, a in pairs]

        done = integrate_adaptive(list(scales), evaluate, lambda item, q: q, 1e-6, first_level=level)
        return done, calls

    plain, plain_calls = run(1)
    early, early_calls = run(first_level)
    assert {item: plain[item][1]["passes"] for item in scales} != {item: 3 for item in scales}
    for item in scales:
        assert torch.equal(early[item][0], plain[item][0]) and torch.equal(early[item][2], plain[item][2])
        assert early[item][1] == plain[item][1]
    fetched = LADDER[first_level]
    assert len(early_calls[0]) == len(scales) * fetched  # the first batch holds the whole level
    assert len(early_calls) == len(plain_calls) - (first_level - 1)  # one call fewer per merged level
    for calls in (plain_calls, early_calls):  # no (item, node) pair evaluated twice
        flat = [pair for call in calls for pair in call]
        assert len(flat) == len(set(flat))


def test_first_level_from_history():
    assert first_level_from_history([]) == 1  # no history: Gauss 3
    assert first_level_from_history([3, 3, 7]) == 1  # most stopped at 3
    assert first_level_from_history([3, 7, 7]) == 2  # most needed 7
    assert first_level_from_history([7, 15, 31, 255]) == 2  # never beyond `highest` (7 nodes)
    assert first_level_from_history([7, 15, 31, 255], highest=3) == 3
    assert first_level_from_history([3, 7]) == 1  # half is not most


def test_attattr_prefetch_equals_level_by_level(tiny, monkeypatch):
    """AttAttr with steps='auto' starting every layer's ladder at Kronrod 7 (one batch) gives the
    scores and records of the level-by-level run (batched == unbatched, to fp32 rounding)."""
    from attrtools.methods import attattr as module

    model, tokenizer = tiny
    batch = _padded_batch(model, tokenizer, SENTENCES + PAIRS)
    runs = {}
    for level in (1, 2):
        monkeypatch.setattr(module, "first_level_from_history", lambda passes, level=level: level)
        records, zero = {}, {}
        scores = module.attattr_layers(model, batch, steps="auto", records=records, baseline_scores=zero)
        runs[level] = scores, records, zero
    (plain, plain_records, plain_zero), (early, early_records, early_zero) = runs[1], runs[2]
    for layer in plain_records:  # the same decisions; estimates equal to fp32 rounding
        for ours, theirs in zip(early_records[layer], plain_records[layer]):
            assert {k: v for k, v in ours.items() if k != "error_estimate"} == \
                {k: v for k, v in theirs.items() if k != "error_estimate"}
            assert ours["error_estimate"] == pytest.approx(theirs["error_estimate"], rel=1e-3, abs=1e-9)
    for layer in plain:
        scale = plain[layer].abs().max()
        assert (early[layer] - plain[layer]).abs().max() <= 1e-5 * scale
        torch.testing.assert_close(early_zero[layer], plain_zero[layer], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ AttAttr and ig_embed on tiny models
FLOOR = 5e-5
REFERENCE = composite_gausslegendre(512, 2)  # 1024 nodes; converges on the kink of a ReLU head too (h² ~ 4e-6)


def _padded_batch(model, tokenizer, texts):
    from attrtools.engine import Engine
    from attrtools.methods.base import Batch

    engine = Engine(model, tokenizer)
    encoded = [engine.encode(attrtools.Example(*t) if isinstance(t, tuple) else attrtools.Example(t)) for t in texts]
    inputs = engine.collate(encoded)
    with torch.no_grad():
        logits = model(**inputs).logits
    return Batch(inputs=inputs, lengths=[e.length for e in encoded], targets=logits.argmax(-1), logits=logits)


def test_auto_meets_tolerance_on_every_family(tiny):
    """steps='auto' (the default): each (example, layer) within its tolerance of a 1024-node composite
    Gauss-Legendre reference, and the recorded estimate never below that true error by more than 2x
    (tiny DistilBERT's ReLU head puts a kink in the last layer's integrand: bisection handles it)."""
    from attrtools.methods.attattr import attattr_layers

    model, tokenizer = tiny
    batch = _padded_batch(model, tokenizer, SENTENCES + PAIRS)
    reference = attattr_layers(model, batch, steps=len(REFERENCE[0]), steps_method=REFERENCE, internal_batch_size=256)
    for tolerance in (1e-2, 1e-3):  # below ~1e-4 DistilBERT's ReLU jumps can hide (docs: limits)
        records = {}
        ours = attattr_layers(model, batch, steps="auto", tolerance=tolerance, internal_batch_size=9, records=records)
        for layer, scores in ours.items():
            for b in range(batch.size):
                record = records[layer][b]
                true = relative_change(scores[b].double(), reference[layer][b].double())
                assert record["rule"].startswith("patterson") and record["met"], record
                assert record["error_estimate"] <= tolerance
                assert true <= max(tolerance, 2e-5), (layer, b, true, record)  # fp32 floor of the reference
                # FLOOR: a jump of the gradient (ReLU head) between every node the estimates use goes
                # unseen by all of them; on these models it is worth at most ~3e-5 (docs: limits)
                assert 2 * record["error_estimate"] >= true or true <= FLOOR, (layer, b, true, record)


def test_engine_records_the_rule(tiny_models):
    model, tokenizer = tiny_models["bert"]
    (a,) = attrtools.attribute(model, tokenizer, ["the movie was very good"], method="attattr")
    record = a.completeness
    assert a.params["steps"] == "auto" and a.params["steps_method"] == "patterson" and a.params["tolerance"] == 1e-3
    assert all(p >= 3 for p in record["passes"]) and all(e <= 1e-3 for e in record["error_estimate"])
    assert record["met"] == [True] * a.scores.shape[0]
    assert max(record["relative_gap"]) < 1e-2  # the completeness gap (its α = 0 end rides with level 1)


def test_official_protocol_equals_official_loop(tiny):
    """steps=20 (what protocol='official' passes) is the official code's left Riemann sum to 1e-5."""
    model, tokenizer = tiny
    inputs = SENTENCES[:2] + PAIRS[:1]
    ours = attrtools.attribute(model, tokenizer, inputs, method="attattr", steps=20, batch_size=3)
    for example, attribution in zip(inputs, ours):
        reference = official_style_attattr(model, tokenizer, example, steps=20, chunk=10, pad_to=40)
        err = ((attribution.scores - reference).abs().max() / reference.abs().max()).item()
        assert err < 1e-5
        assert attribution.params["steps_method"] == "riemann_left" and attribution.completeness["passes"][0] == 20


def _ig_embed_reference(model, tokenizer, text, rule):
    """Integrated gradients on the word embeddings, written out (zero baseline, target logit)."""
    from attrtools.engine import Engine
    from attrtools.methods.ig_embed import word_embeddings_replaced

    engine = Engine(model, tokenizer)
    inputs = engine.collate([engine.encode(attrtools.Example(text))])
    with torch.no_grad(), word_embeddings_replaced(model) as rec:
        target = int(model(**inputs).logits.argmax(-1))
    emb = rec.original.float()[0]
    total = torch.zeros_like(emb)
    alphas, weights = rule
    for start in range(0, len(alphas), 128):
        a = torch.tensor(alphas[start:start + 128]).view(-1, 1, 1)
        w = torch.tensor(weights[start:start + 128])
        path = (a * emb).requires_grad_(True)
        with word_embeddings_replaced(model, lambda out: path):
            logits = model(**{k: v.expand(len(a), -1) for k, v in inputs.items()}).logits
        (grad,) = torch.autograd.grad((logits[:, target] * w).sum(), path)
        total += grad.sum(0)
    return (emb * total).sum(-1)


def test_ig_embed_auto_against_reference(tiny):
    model, tokenizer = tiny
    for text in SENTENCES[:2]:
        reference = _ig_embed_reference(model, tokenizer, text, REFERENCE)
        (a,) = attrtools.attribute(model, tokenizer, [text], method="ig_embed", tolerance=1e-3)
        (met,), (estimate,) = a.completeness["met"], a.completeness["error_estimate"]
        true = relative_change(a.scores.double(), reference.double())
        if met:
            assert estimate <= 1e-3 and true <= 1e-3 + 2e-5 and 2 * estimate >= true - 2e-5, (true, estimate)
        else:  # said in the result (and in one IntegrationWarning, tested below)
            assert estimate > 1e-3 and a.completeness["passes"][0] > 200


def test_unmet_tolerance_is_said_once(tiny_models):
    """Where the bisection's 255 passes cannot meet the tolerance, the result says met=False and the
    call gives one IntegrationWarning at the caller's line naming the Python keyword."""
    model, tokenizer = tiny_models["llama"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = attrtools.attribute(model, tokenizer, SENTENCES[:2], method="ig_embed", tolerance=1e-9)
    unmet = [r for r in results if r.completeness["met"] == [False]]
    said = [w for w in caught if issubclass(w.category, IntegrationWarning)]
    assert unmet and len(said) == 1
    assert f"{len(unmet)} of 2" in str(said[0].message) and "tolerance=" in str(said[0].message)
    assert said[0].filename == __file__


# ------------------------------------------------------------------ CLI: --protocol, --steps, run_config
def test_cli_protocol_sets_the_rule_and_is_recorded(planted_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from attrtools.cli import main

    runner = CliRunner()
    text = ["--model", planted_dir, "--text", "the alpha film was beta fun", "--formats", "json", "--no-cache"]
    runs = {}
    for name, extra in (("default", []), ("official", ["--protocol", "official"]),
                        ("explicit", ["--protocol", "official", "--steps", "5"])):
        out = tmp_path / name
        result = runner.invoke(main, ["tree", *text, *extra, "--output-dir", str(out)])
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((out / "run_config.json").read_text())
        tree = json.loads((out / "trees" / "000000.json").read_text())
        runs[name]["tree_steps"] = tree["graph"]["steps"]
    assert (runs["default"]["protocol"], runs["default"]["steps"], runs["default"]["tree_steps"]) == \
        ("converged", "auto", "auto")
    assert (runs["official"]["protocol"], runs["official"]["steps"]) == ("official", 64)  # the official tree code's m
    assert runs["explicit"]["steps"] == 5
    bad = runner.invoke(main, ["tree", *text, "--steps", "many", "--output-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--steps must be 'auto' or a whole number" in bad.output


def test_cli_warning_names_the_command_and_its_own_option(planted_dir, tmp_path):
    """Under the CLI a completeness warning names the command (not click's frame) and the command's
    own option; the demo's hint names no option at all."""
    import warnings

    import click

    from attrtools.engine import precision_hint
    from attrtools.notices import cli_command, warn
    from attrtools.cli import main

    for command, expect, absent in (("tree", "--protocol", "--param"), ("attribute", "--param tolerance=", "--steps"),
                                    ("demo", None, "--")):
        with click.Context(main, info_name="attrtools") as root, \
                click.Context(main.get_command(root, command), parent=root, info_name=command):
            assert cli_command() == command
            hint = precision_hint()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                warn("example", UserWarning)
        assert caught[0].filename == f"attrtools {command}"
        assert (expect in hint) if expect else hint == ""
        assert absent not in hint
    assert cli_command() is None and "tolerance=" in precision_hint() and "--" not in precision_hint()
