"""Every TextAttack classification recipe: run offline on tiny stand-ins, or refused up front.

Stand-ins built here: a tiny masked LM from a config (BAE, BERT-Attack, CLARE), a small word-vector
file (TextFooler, A2T, the Alzantot family, IGA, Kuleshov, TextBugger), a tiny NLTK tagger (its
JSON files and a universal-tagset map: the part-of-speech constraint and CLARE's merge step), a
tiny encoder standing in for the sentence encoder, and a two-line homoglyph table. Recipes whose
resources have no local form here (WordNet, HowNet, flair NER) and HotFlip (TextAttack's own
models only) must be refused before anything is attacked, with the option to pass.
"""
import json
import os

import numpy as np
import pytest
import torch

from attrtools.testing import FILLER, planted_dataset, tiny_config, write_tokenizer
from attrtools.types import Example


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, ta):
    from transformers import BertForMaskedLM, BertModel

    root = tmp_path_factory.mktemp("resources")
    mlm = str(root / "mlm")
    tok = write_tokenizer(mlm)
    config = tiny_config("bert", len(tok), hidden=32)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(mlm)
    encoder = str(root / "encoder")
    write_tokenizer(encoder)
    BertModel(config).save_pretrained(encoder)
    # word vectors: "alpha" and "beta" are each other's nearest neighbours (so a swap can break
    # the planted rule); the filler words sit in pairs of close neighbours
    rng = np.random.default_rng(0)
    words = FILLER + ["alpha", "beta"]
    vectors = rng.normal(size=(len(words), 8)).astype(np.float32)
    for i in range(0, len(FILLER) - 1, 2):
        vectors[i + 1] = vectors[i] + 0.05 * rng.normal(size=8)
    vectors[-1] = vectors[-2] + 0.01 * rng.normal(size=8)
    embeddings = str(root / "vectors.txt")
    with open(embeddings, "w") as f:
        f.write(f"{len(words)} 8\n")  # word2vec header, skipped
        for w, v in zip(words, vectors):
            f.write(w + " " + " ".join(f"{x:.6f}" for x in v) + "\n")
    # a tiny NLTK tagger: tag dictionary only (JSON, as nltk >= 3.9 reads it) + the universal map
    nltk_data = root / "nltk_data"
    tagger = nltk_data / "taggers" / "averaged_perceptron_tagger_eng"
    tagger.mkdir(parents=True)
    ptb = {"the": "DT", "a": "DT", "this": "DT", "that": "DT", "was": "VBD", "is": "VBZ", "very": "RB",
           "quite": "RB", "and": "CC", "but": "CC", "it": "PRP", "not": "RB", "of": "IN", "to": "TO", "in": "IN",
           "with": "IN", "good": "JJ", "bad": "JJ", "great": "JJ", "dull": "JJ", "fun": "JJ", "boring": "JJ",
           "fine": "JJ", "long": "JJ", "short": "JJ", "funny": "JJ", "sad": "JJ"}
    for attr, obj in (("weights", {"bias": {"NN": 1.0}}), ("tagdict", ptb), ("classes", sorted(set(ptb.values()) | {"NN"}))):
        (tagger / f"averaged_perceptron_tagger_eng.{attr}.json").write_text(json.dumps(obj))
    universal = nltk_data / "taggers" / "universal_tagset"
    universal.mkdir(parents=True)
    (universal / "en-ptb.map").write_text("".join(f"{a}\t{b}\n" for a, b in [
        ("DT", "DET"), ("NN", "NOUN"), ("VBD", "VERB"), ("VBZ", "VERB"), ("RB", "ADV"), ("JJ", "ADJ"),
        ("CC", "CONJ"), ("PRP", "PRON"), ("IN", "ADP"), ("TO", "PRT")]))
    homoglyphs = str(root / "intentional.txt")
    with open(homoglyphs, "w", encoding="utf-8") as f:
        f.write("# test table\n0061 ;\t0251 #* ( a \u2192 \u0251 ) A \u2192 ALPHA\n"
                "006F ;\t043E #* ( o \u2192 \u043e ) O \u2192 CYRILLIC O\n")
    return {"mlm": mlm, "encoder": encoder, "embeddings": embeddings, "nltk_data": str(nltk_data),
            "homoglyphs": homoglyphs}


def _resources(stand_ins, **overrides):
    from attrtools.adversarial.resources import AttackResources

    kwargs = dict(word_embeddings=stand_ins["embeddings"], mlm=stand_ins["mlm"], nltk_data=stand_ins["nltk_data"],
                  sentence_encoder=stand_ins["encoder"], homoglyphs=stand_ins["homoglyphs"],
                  no_lm_constraint=True, allow_downloads=False)
    kwargs.update(overrides)
    return AttackResources(**kwargs)


def _dev(n=4, seed=31):
    return [Example(t, label=l) for t, l in planted_dataset(n, seed=seed)]


# ------------------------------------------------------------------------------------ the list
ISSUE_RECIPES = ["textfooler", "pwws", "bae", "bert-attack", "a2t", "textbugger", "deepwordbug", "pruthi", "checklist",
                 "kuleshov", "alzantot", "faster-alzantot", "iga", "pso", "clare", "input-reduction", "hotflip"]
RUN_OFFLINE = ["deepwordbug", "pruthi", "input-reduction", "bad-characters", "textfooler", "a2t", "alzantot",
               "faster-alzantot", "iga", "kuleshov", "textbugger", "bae", "bert-attack", "clare"]
REFUSED_OFFLINE = {"pwws": "--nltk-data", "leap": "--nltk-data", "pso": "HowNet", "checklist": "flair",
                   "hotflip": "LSTM/CNN"}


def test_every_textattack_classification_recipe_is_known(ta):
    from textattack.attack_args import ATTACK_RECIPE_NAMES

    from attrtools.adversarial.recipes import OWN_RECIPES, RECIPES

    classification = {k: v.rsplit(".", 1)[1] for k, v in ATTACK_RECIPE_NAMES.items()
                      if k not in ("morpheus", "seq2sick")}   # seq2seq goals, not classifiers
    assert {n: r.textattack for n, r in RECIPES.items() if r.textattack} == classification
    assert set(ISSUE_RECIPES) <= set(RECIPES) and set(OWN_RECIPES) == {"triggers", "wir-delete", "wir-attribution"}
    # every recipe is either run below or refused below: none is silently skipped
    assert set(RUN_OFFLINE) | set(REFUSED_OFFLINE) | set(OWN_RECIPES) == set(RECIPES)
    # one builder per TextAttack recipe (issue 29: was one branch of a 134-line if-chain); none for ours
    assert sorted(n for n, r in RECIPES.items() if r.textattack and not r.refuse and not callable(r.build)) == []
    assert [n for n in OWN_RECIPES if RECIPES[n].build is not None] == []


# ------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("name", sorted(REFUSED_OFFLINE))
def test_refused_up_front_with_the_option(ta, planted, stand_ins, tmp_path, name):
    from attrtools.adversarial.audit import run_audit
    from attrtools.adversarial.resources import RecipeError

    model, tok = planted
    with pytest.raises(RecipeError) as err:
        run_audit(model, tok, _dev(2), str(tmp_path), recipes=("deepwordbug", name),
                  resources=_resources(stand_ins), progress=False)
    message = str(err.value)
    assert REFUSED_OFFLINE[name] in message and f"{name}:" in message
    assert "Runnable with what is available now:" in message and "deepwordbug" in message.split("Runnable")[1]
    assert not os.path.exists(tmp_path / "results.csv")   # nothing attacked, not even deepwordbug


def test_bad_characters_refuses_a_query_budget(ta, planted, stand_ins, tmp_path):
    from attrtools.adversarial.audit import run_audit
    from attrtools.adversarial.resources import RecipeError

    model, tok = planted
    with pytest.raises(RecipeError, match="without --query-budget"):
        run_audit(model, tok, _dev(2), str(tmp_path), recipes=("bad-characters",),
                  resources=_resources(stand_ins), query_budget=10, progress=False)


def test_one_message_per_missing_resource(ta):
    from attrtools.adversarial.recipes import resource_report
    from attrtools.adversarial.resources import AttackResources

    report = resource_report(["textfooler", "bae", "bert-attack", "a2t", "deepwordbug"],
                             AttackResources(allow_downloads=False))
    lines = [l for l in report.splitlines() if l.strip().startswith("- ")]
    by_option = {opt: [l for l in lines if opt in l] for opt in ("--word-embeddings PATH", "--mlm PATH_OR_ID",
                                                                  "--sentence-encoder PATH_OR_ID", "--nltk-data PATH")}
    assert all(len(v) == 1 for v in by_option.values()), lines
    assert len(lines) == 4
    mlm_line = by_option["--mlm PATH_OR_ID"][0]
    assert mlm_line.strip().startswith("- bae, bert-attack:")
    # a short list: the runnable recipes are named once, not once per resource (issue 29)
    assert report.count("Runnable") == 1 and "deepwordbug" in report.split("Runnable")[1]
    assert max(len(l) for l in report.splitlines()) < 200 and len(report) < 1000
    assert "--no-use-constraint" in by_option["--sentence-encoder PATH_OR_ID"][0]


def test_cli_refuses_before_loading_anything(ta, planted_dir, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    data = tmp_path / "dev.csv"
    data.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in planted_dataset(3, seed=1)))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["audit", "--model", planted_dir, "--dataset", str(data), "--no-triggers",
                                       "--recipes", "textfooler,pwws", "--output-dir", str(out)])
    assert result.exit_code != 0
    assert "--word-embeddings PATH" in result.output and "--nltk-data PATH" in result.output
    assert "Traceback" not in result.output and not out.exists()
    result = CliRunner().invoke(main, ["audit", "--model", planted_dir, "--dataset", str(data), "--no-triggers",
                                       "--recipes", "textfool"])
    assert result.exit_code != 0 and "unknown recipe(s) textfool" in result.output


# ------------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("name", RUN_OFFLINE)
def test_recipe_runs_offline_on_stand_ins(ta, planted, stand_ins, tmp_path, name):
    from attrtools.adversarial.audit import TEXTATTACK_COLUMNS, read_rows, run_audit

    model, tok = planted
    dev = _dev(3)
    budget = None if name == "bad-characters" else 60   # its search fails on a spent budget (refused, below)
    summary = run_audit(model, tok, dev, str(tmp_path), recipes=(name,), resources=_resources(stand_ins),
                        query_budget=budget, progress=False)
    rows = read_rows(str(tmp_path / "results.csv"))
    assert len(rows) == 3 and all(set(TEXTATTACK_COLUMNS) <= set(r) for r in rows)
    s = summary["recipes"][name]
    if name == "input-reduction":   # summarised in its own terms (it never changes a prediction)
        assert s["kind"] == "input-reduction" and s["total"] == 3
    else:
        assert s["total"] == 3 and s["successful_attacks"] + s["failed_attacks"] + s["skipped_attacks"] == 3
    assert s["this_session"]["queries_per_second"] > 0
    assert s["this_session"]["model_inputs"] >= 3
    expected_drop = ["language-model"] if name in ("alzantot", "faster-alzantot", "kuleshov") else []
    assert s["dropped_constraints"] == expected_drop


def test_recipes_use_the_given_resources(ta, planted, stand_ins):
    from attrtools.adversarial.recipes import build_recipe
    from attrtools.adversarial.resources import LoadedResources
    from attrtools.adversarial.wrapper import AttrtoolsModelWrapper

    model, tok = planted
    wrapper = AttrtoolsModelWrapper(model, tok)
    res = _resources(stand_ins)
    parts = LoadedResources(res)
    fooler = build_recipe("textfooler", wrapper, res, parts)
    assert fooler.transformation.embedding is parts.embedding()
    assert fooler.transformation.embedding.nearest_neighbours("alpha", 1) == \
        [fooler.transformation.embedding.word2index("beta")]
    names = [type(c).__name__ for c in fooler.constraints]
    assert "PartOfSpeech" in names and "TransformersSentenceEncoder" in names and "WordEmbeddingDistance" in names
    bae = build_recipe("bae", wrapper, res, parts)
    assert bae.transformation._language_model is parts.mlm("x")[0]
    assert bae.transformation.max_length <= model.config.max_position_embeddings
    dropped = build_recipe("bert-attack", wrapper, _resources(stand_ins, sentence_encoder=None,
                                                               no_use_constraint=True))
    assert not any("SentenceEncoder" in type(c).__name__ for c in dropped.constraints)


def test_textfooler_breaks_the_planted_rule(ta, planted, stand_ins, tmp_path):
    """With "alpha" and "beta" as each other's neighbours, TextFooler's swaps flip planted predictions."""
    from attrtools.adversarial.audit import run_audit

    model, tok = planted
    summary = run_audit(model, tok, _dev(6, seed=5), str(tmp_path), recipes=("textfooler",),
                        resources=_resources(stand_ins, sentence_encoder=None, no_use_constraint=True),
                        progress=False)
    s = summary["recipes"]["textfooler"]
    assert s["successful_attacks"] >= 1, s
    assert s["dropped_constraints"] == ["sentence-encoder"]


def test_dropped_constraint_recorded_in_report(ta, planted, stand_ins, tmp_path):
    from attrtools.adversarial.pipeline import run
    from attrtools.engine import Engine

    model, tok = planted
    res = _resources(stand_ins, sentence_encoder=None, no_use_constraint=True)
    summary = run(Engine(model, tok), _dev(2), None, str(tmp_path), recipes=("bert-attack",), use_triggers=False,
                  resources=res, query_budget=30, progress=False)
    assert summary["resources"]["no_use_constraint"] is True
    html = (tmp_path / "report.html").read_text()
    assert "constraints dropped by request" in html and "bert-attack: sentence-encoder" in html


def test_python_hook_equals_the_recipe(ta, planted, tmp_path):
    from attrtools.adversarial.audit import read_rows, run_audit

    model, tok = planted
    dev = _dev(3)
    run_audit(model, tok, dev, str(tmp_path / "a"), recipes=("deepwordbug",), progress=False)
    hooked = run_audit(model, tok, dev, str(tmp_path / "b"), recipes=("mine",),
                       attacks={"mine": ta.attack_recipes.DeepWordBugGao2018.build}, progress=False)
    assert hooked["recipes"]["mine"]["hook"] is True
    strip = lambda rows: [{k: v for k, v in r.items() if k != "recipe"} for r in rows]  # noqa: E731
    assert strip(read_rows(str(tmp_path / "a" / "results.csv"))) == strip(read_rows(str(tmp_path / "b" / "results.csv")))


# ------------------------------------------------------------------------------------ comparison
def _masked_variant(model, tok):
    from attrtools.adversarial.compare import AuditedModel, plan_mask
    from attrtools.architecture import num_layers_heads

    L, H = num_layers_heads(model)
    return AuditedModel("pruned-half", model, tok, plan_mask({0: [0, 1], 1: [2, 3]}, L, H))


def test_comparison_equals_separate_single_model_audits(ta, planted, tiny_models, stand_ins, tmp_path):
    """Per-model, per-recipe numbers of the comparison table = separate audits of the same examples."""
    from attrtools.adversarial.audit import read_rows, run_audit
    from attrtools.adversarial.compare import AuditedModel, run_comparison

    model, tok = planted
    other, other_tok = tiny_models["bert"]   # same vocabulary, random weights
    variant = _masked_variant(model, tok)
    models = [AuditedModel("planted", model, tok), variant, AuditedModel("random", other, other_tok)]
    dev = _dev(4, seed=8)
    recipes = ("deepwordbug", "textfooler")
    res = _resources(stand_ins, sentence_encoder=None, no_use_constraint=True)
    result = run_comparison(models, dev, str(tmp_path / "cmp"), recipes=recipes, use_triggers=False, resources=res,
                            query_budget=80, progress=False)
    table = {(r["model"], r["recipe"]): r for r in result["table"]}
    assert len(table) == 6
    for m in models:
        single = run_audit(m.model, m.tokenizer, dev, str(tmp_path / m.label), recipes=recipes, resources=res,
                           query_budget=80, head_mask=m.head_mask, progress=False)
        for recipe in recipes:
            s, row = single["recipes"][recipe], table[(m.label, recipe)]
            assert (row["clean_accuracy"], row["accuracy_under_attack"], row["attack_success_rate"],
                    row["avg_queries"], row["avg_words_perturbed"]) == \
                (s["original_accuracy"], s["attack_accuracy_perc"], s["attack_success_rate"], s["avg_num_queries"],
                 s["avg_words_perturbed"]), (m.label, recipe)
        assert read_rows(str(tmp_path / m.label / "results.csv")) == \
            read_rows(str(tmp_path / "cmp" / "models" / m.label / "results.csv"))
    # the masked variant is a different model: its clean predictions differ from the planted model's somewhere
    assert read_rows(str(tmp_path / "planted" / "results.csv")) != read_rows(str(tmp_path / "pruned-half" / "results.csv"))
    for name in ("comparison.csv", "comparison.png", "comparison.json", "comparison.html"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    import pandas as pd

    csv = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(csv["model"]) == ["planted"] * 2 + ["pruned-half"] * 2 + ["random"] * 2
    assert set(csv["dropped_constraints"].dropna()) == {"sentence-encoder"}
    page = (tmp_path / "cmp" / "comparison.html").read_text(encoding="utf-8")
    assert "<table" in page and "data:image/png;base64," in page and "Constraints left out by request" in page
    for label in ("planted", "pruned-half", "random"):
        assert f"href='models/{label}/report.html'" in page and (tmp_path / "cmp" / "models" / label / "report.html").exists()


def test_masked_wrapper_equals_physically_pruned_model(ta, planted):
    from attrtools.adversarial.compare import plan_mask
    from attrtools.adversarial.wrapper import AttrtoolsModelWrapper
    from attrtools.pruning.prune import prune_heads
    import copy

    model, tok = planted
    plan = {0: [0, 1], 1: [3]}
    pruned = copy.deepcopy(model)
    prune_heads(pruned, plan)
    texts = [t for t, _ in planted_dataset(5, seed=4)]
    masked = AttrtoolsModelWrapper(model, tok, head_mask=plan_mask(plan, 2, 4))(texts)
    physical = AttrtoolsModelWrapper(pruned, tok)(texts)
    assert torch.allclose(masked, physical, atol=1e-5)
    assert not torch.allclose(masked, AttrtoolsModelWrapper(model, tok)(texts), atol=1e-3)


def test_prune_run_directory_gives_each_strategy_plan(tmp_path, planted):
    from attrtools.adversarial.compare import prune_run_variants, read_prune_run

    run = tmp_path / "prune-run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"command": "prune", "model": "some/model"}))
    (run / "pruned_heads.json").write_text(json.dumps({
        "strategy": "attattr", "heads_total": 8, "pruned_heads": {"0": [1]},
        "all_strategies": {"attattr": {"0": [1]}, "random": {"0": [2], "1": [0, 3]}}}))
    assert read_prune_run(str(run))["model"] == "some/model"
    model, tok = planted
    variants = prune_run_variants(model, tok, str(run))
    assert [v.label for v in variants] == ["attattr-12pct", "random-38pct"]
    assert variants[1].head_mask.tolist() == [[1, 1, 0, 1], [0, 1, 1, 0]]
    with pytest.raises(ValueError, match="not an attrtools prune run"):
        read_prune_run(str(tmp_path))


def test_cli_compares_models_and_prune_runs(ta, planted_dir, tiny_dirs, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    data = tmp_path / "dev.csv"
    data.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in planted_dataset(3, seed=2)))
    run = tmp_path / "prune-run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"command": "prune", "model": planted_dir}))
    (run / "pruned_heads.json").write_text(json.dumps({"strategy": "attattr", "heads_total": 8,
                                                       "all_strategies": {"attattr": {"0": [1]}, "random": {"1": [2]}}}))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["audit", "--prune-run", str(run), "--compare-model", tiny_dirs["bert"],
                                       "--dataset", str(data), "--no-triggers", "--recipes", "deepwordbug",
                                       "--query-budget", "40", "--output-dir", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out / "comparison.csv")
    assert list(table["model"]) == [os.path.basename(planted_dir), "bert", "attattr-12pct", "random-12pct"]
    assert "queries/s" in result.output
    config = json.loads((out / "run_config.json").read_text())
    assert config["prune_runs"] == [str(run)] and config["resources"]["no_use_constraint"] is False


def test_prune_with_audit_compares_each_strategy_plan(ta, planted_dir, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    data = tmp_path / "dev.csv"
    data.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in planted_dataset(8, seed=12)))
    out = tmp_path / "prune"
    bad = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data), "--audit", "pwws",
                                    "--output-dir", str(out)])
    assert bad.exit_code != 0 and "--nltk-data PATH" in bad.output and not out.exists()   # refused before pruning
    result = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data), "--num-examples", "4",
                                       "--steps", "2", "--prune-fraction", "0.5", "--strategies", "attattr,random",
                                       "--fractions", "0,0.5", "--latency-repeats", "1", "--no-save-model",
                                       "--audit", "deepwordbug", "--audit-examples", "3",
                                       "--audit-query-budget", "30", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out / "audit" / "comparison.csv")
    assert list(table["model"]) == ["unpruned", "attattr-50pct", "random-50pct"]
    assert (table["examples"] == 3).all()
    plans = json.loads((out / "pruned_heads.json").read_text())["all_strategies"]
    assert json.loads((out / "audit" / "comparison.json").read_text())["models"]["random-50pct"]["heads_pruned"] == \
        sum(len(h) for h in plans["random"].values()) == 4


def test_candidates_batched_per_forward_pass_same_results(ta, planted, tmp_path):
    """--batch-size sets how many candidates go through one padded forward pass; results do not change."""
    from attrtools.adversarial.audit import read_rows, run_audit

    model, tok = planted
    dev = _dev(3, seed=14)
    passes = []
    handle = model.register_forward_hook(lambda m, args, kwargs_out: passes.append(1))
    try:
        counts = {}
        for size in (2, 64):
            passes.clear()
            summary = run_audit(model, tok, dev, str(tmp_path / str(size)), recipes=("deepwordbug",),
                                batch_size=size, progress=False)
            counts[size] = (len(passes), summary["recipes"]["deepwordbug"]["this_session"]["model_inputs"])
    finally:
        handle.remove()
    (small, inputs_small), (large, inputs_large) = counts[2], counts[64]
    assert inputs_small == inputs_large and inputs_small > 10
    assert small >= inputs_small / 2 > large
    assert read_rows(str(tmp_path / "2" / "results.csv")) == read_rows(str(tmp_path / "64" / "results.csv"))


def test_importing_textattack_keeps_the_loggers_that_existed(ta):
    """TextAttack's import runs ``logging.config.dictConfig`` with ``disable_existing_loggers`` on:
    attrtools' cache notes and a user's own loggers went silent after an audit. A fresh interpreter,
    since the suite may have imported TextAttack already."""
    import subprocess
    import sys

    code = ("import logging; a = logging.getLogger('attrtools.cache'); u = logging.getLogger('user.app'); "
            "from attrtools.adversarial.textattack_compat import load_textattack; load_textattack(); "
            "print(a.disabled, u.disabled)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "False"]
