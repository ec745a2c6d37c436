"""Adversarial triggers (Hao et al. 2021 §6) and the TextAttack audit.

Pure trigger logic runs without TextAttack; tests needing it skip when the extra is absent.
On the planted model (label 1 iff "alpha" precedes "beta") the extracted triggers must be the
planted tokens and inserting them must flip predictions.
"""
import json
import os
import random

import pytest
import torch

import attrtools
from attrtools.adversarial import triggers as T
from attrtools.testing import planted_dataset
from attrtools.types import Example

from helpers import MIXED
from helpers import run_cli as _cli
from helpers import summary_line as _line
from helpers import textattack_or_skip as _textattack
from helpers import write_tsv as _write_tsv


# ------------------------------------------------------------------------------------ pure logic
def _hand_made(n=6, L=2, H=3):
    scores = torch.zeros(L, H, n, n)
    scores[1, 2, 3, 1] = 0.5      # top-1 of the strongest head: (3, 1)
    scores[1, 2, 4, 2] = 0.2      # top-2 (v2/v1 = 0.4 >= 0.2): (4, 2)
    scores[0, 0, 2, 2] = 0.3      # another head, smaller max: ignored
    scores[1, 2, 0, 3] = 0.1      # involves [CLS]
    return scores


def test_pattern_picks_max_head_top_pairs_and_drops_specials():
    tokens = ["[CLS]", "a", "b", "c", "d", "[SEP]"]
    p = T.pattern_from_matrix(_hand_made(), tokens, [1, 0, 0, 0, 0, 1], target=1)
    assert (p.layer, p.head) == (1, 2)
    assert p.top1 == (3, 1) and p.top2 == (4, 2)
    assert p.values == pytest.approx((0.5, 0.2))
    assert p.positions == [1, 2, 3, 4]
    assert p.seg_pos == 5
    # v2/v1 below the ratio: only the top-1 pair
    assert T.select_positions(p, {0, 5}, top2_ratio=0.5) == [1, 3]
    assert T.select_positions(p, {0, 5}, top2_ratio=0.5, use_all=True) == [1, 2, 3, 4]


def test_special_positions_removed():
    scores = torch.zeros(1, 1, 4, 4)
    scores[0, 0, 0, 3] = 1.0   # ([CLS], [SEP])
    scores[0, 0, 1, 0] = 0.1   # (tok, [CLS]), ratio 0.1 < 0.2
    p = T.pattern_from_matrix(scores, ["[CLS]", "x", "y", "[SEP]"], [1, 0, 0, 1])
    assert p.positions == []
    assert T.rank_patterns([p]) == []  # nothing left to insert


def test_threshold_ranking_and_grouping():
    def mk(v1, v2, target):
        p = T.Pattern("e", target, target, 0, 0, (1, 1), (1, 1), (v1, v2), ["[CLS]", "w", "[SEP]"], 2, [1],
                      [T.TriggerWord(f"w{v1}", 0, 1.0)])
        return p
    ps = [mk(0.01, 0.005, 0), mk(0.3, 0.1, 1), mk(0.05, 0.0, 0), mk(0.02, 0.0, 1)]
    ranked = T.rank_patterns(ps, 0.02)
    assert [p.score for p in ranked] == pytest.approx([0.4, 0.05, 0.02])
    groups = T.group_by_class(ranked)
    assert [p.score for p in groups[1]] == pytest.approx([0.4, 0.02]) and len(groups[0]) == 1


def test_words_merge_wordpieces_with_relative_positions():
    tokens = ["[CLS]", "un", "##believ", "##able", "film", "[SEP]", "so", "good", "[SEP]"]
    from attrtools.words import merge_wordpieces as _merge_wordpieces  # the slow-tokenizer word alignment

    word_ids, segments, texts = _merge_wordpieces(tokens, [1, 0, 0, 0, 0, 1, 0, 0, 1],
                                                 [0, 0, 0, 0, 0, 0, 1, 1, 1])
    assert texts[(0, 0)] == "unbelievable" and texts[(1, 1)] == "good"
    words = T.words_for_positions([2, 3, 7], word_ids, segments, texts)
    assert [(w.word, w.segment, w.relative) for w in words] == [("unbelievable", 0, 0.5), ("good", 1, 1.0)]


def test_insertion_slots_follow_official_rule():
    # 4 words + 1 inserted, r = 0.5 -> 1-based slot round(5 * 0.5) = 3 (banker's rounding avoided: 2.5 -> 3)
    assert T.insertion_slots(4, [0.5]) == [2]
    # collision bumps by one
    assert T.insertion_slots(4, [0.5, 0.5]) == [2, 3]
    assert T.insert_words(["a", "b", "c", "d"], [("X", 0.5)]) == ["a", "b", "X", "c", "d"]
    # collision at the end of the segment: nearest free slot before it
    assert T.insert_words(["a", "b"], [("X", 1.0), ("Y", 1.0)]) == ["a", "b", "Y", "X"]
    out = T.insert_words(list("abcdefgh"), [("X", 0.1), ("Y", 0.9)])
    assert sorted(out) == sorted(list("abcdefgh") + ["X", "Y"])
    assert out.index("X") < 3 and out.index("Y") > 6
    # original order is kept
    assert [w for w in out if w not in "XY"] == list("abcdefgh")


def test_pattern_json_roundtrip(tmp_path):
    p = T.pattern_from_matrix(_hand_made(), ["[CLS]", "a", "b", "c", "d", "[SEP]"], [1, 0, 0, 0, 0, 1], target=1)
    p.words = [T.TriggerWord("a", 0, 0.25), T.TriggerWord("c", 0, 0.75)]
    path = T.save_triggers(str(tmp_path / "triggers.json"), [p], {"steps": 3})
    loaded, config = T.load_triggers(path)
    assert loaded[0].to_dict() == p.to_dict() and config == {"steps": 3}
    assert json.load(open(path))["by_class"] == {"1": [0]}


# ------------------------------------------------------------------------------------ planted model
@pytest.fixture(scope="module")
def planted_triggers(planted):
    model, tok = planted
    train = [Example(t, label=l, id=str(i)) for i, (t, l) in enumerate(planted_dataset(40, seed=11))]
    patterns, stats = T.extract_triggers(model, tok, train, num_examples=24, steps=6, progress=False)
    return patterns, stats


def test_extracted_triggers_are_the_planted_tokens(planted_triggers):
    patterns, stats = planted_triggers
    assert stats["correct_used"] == 24 and patterns
    top = T.unique_triggers(patterns)[:3]
    words = [w.word for p in top for w in p.words]
    planted_share = sum(w in ("alpha", "beta") for w in words) / len(words)
    assert planted_share >= 0.5, [p.trigger for p in top]
    assert any(set(p.trigger) & {"alpha", "beta"} for p in top[:1])
    assert all(0 < w.relative <= 1 for p in patterns for w in p.words)


def test_inserting_planted_order_flips_predictions(planted):
    """Inserting the class-0 order ("beta" first, "alpha" last) into class-1 sentences flips them,
    and inserting two filler words at the same places flips none.

    The words go to the two ends of the sentence, so the inserted order is the first and the last
    planted order in the text. The sentence then holds two alphas and two betas, which training
    never showed: how many flip is a property of the trained model (7 of 20 on the committed one),
    so the bound leaves margin and the control shows the flips come from the planted words."""
    model, tok = planted
    data = [(t, l) for t, l in planted_dataset(60, seed=3) if l == 1][:20]
    examples = [Example(t, label=l) for t, l in data]
    before = T.predict(model, tok, examples)

    def flips(first, last):
        pattern = T.Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [],
                            [T.TriggerWord(first, 0, 0.01), T.TriggerWord(last, 0, 1.0)])
        after = T.predict(model, tok, [Example(*T.apply_pattern(e.text, None, pattern), label=e.label)
                                       for e in examples])
        return sum(b == 1 and a == 0 for b, a in zip(before, after))

    assert sum(b == 1 for b in before) >= 17
    assert flips("beta", "alpha") >= 5
    assert flips("movie", "plot") == 0


def test_per_class_table(planted, planted_triggers):
    model, tok = planted
    patterns, _ = planted_triggers
    dev = [Example(t, label=l) for t, l in planted_dataset(40, seed=21)]
    rows = T.per_class_accuracy(model, tok, dev, patterns, top_k=2)
    assert {r["gold_class"] for r in rows} == {"0", "1"}
    base = {r["gold_class"]: r for r in rows if r["trigger_rank"] == 0}
    assert sum(r["n"] for r in base.values()) == 40
    for r in rows:
        assert r["accuracy_drop"] == pytest.approx(base[r["gold_class"]]["accuracy"] - r["accuracy"], abs=1e-4)
    assert max(r["accuracy_drop"] for r in rows) > 0.2   # the planted triggers hurt one class


# ------------------------------------------------------------------------------------ TextAttack
@pytest.fixture(scope="module")
def ta():
    # The shims must be in place before the import (a bare import fails on the missing flair).
    from attrtools.adversarial.textattack_compat import TextAttackUnavailable, load_textattack

    try:
        load_textattack()
    except TextAttackUnavailable:
        pass
    return pytest.importorskip("textattack")


def test_import_keeps_environment(ta, monkeypatch):
    from attrtools.adversarial import textattack_compat as compat

    assert "TA_CACHE_DIR" not in os.environ or os.environ.get("HF_HOME") != os.environ["TA_CACHE_DIR"]
    import nltk.corpus

    words = nltk.corpus.stopwords.words("english")
    assert "the" in words and "not" not in compat.ENGLISH_STOPWORDS


def test_wrapper_pads_dynamically_and_matches_model(ta, planted):
    from attrtools.adversarial.wrapper import AttrtoolsModelWrapper

    model, tok = planted
    wrapper = AttrtoolsModelWrapper(model, tok, batch_size=3)
    texts = [t for t, _ in planted_dataset(5, seed=2)]
    out = wrapper(texts)
    with torch.no_grad():
        for i, t in enumerate(texts):
            enc = tok(t, return_tensors="pt")
            assert torch.allclose(out[i], model(**enc).logits[0].float(), atol=1e-5)


def test_trigger_transformation_inserts_words(ta):
    from attrtools.adversarial.transformation import APPLIED, TriggerInsertion

    text = ta.shared.AttackedText("the film was good and fun")
    p = T.Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [], [T.TriggerWord("beta", 0, 0.5)])
    q = T.Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [], [T.TriggerWord("alpha", 0, 1.0)])
    out = TriggerInsertion([p, q])(text)
    assert [o.words for o in out] == [["the", "film", "was", "beta", "good", "and", "fun"],
                                      ["the", "film", "was", "good", "and", "fun", "alpha"]]
    assert out[0].attack_attrs[APPLIED] == (0,)
    again = TriggerInsertion([p, q])(out[0])
    assert len(again) == 1 and again[0].attack_attrs[APPLIED] == (0, 1)


def test_audit_on_planted_model(ta, planted, planted_triggers, tmp_path):
    import pandas as pd

    from attrtools.adversarial.audit import TEXTATTACK_COLUMNS, run_audit

    model, tok = planted
    patterns, _ = planted_triggers
    # Candidates: the extracted triggers as found, plus each extracted word placed at the very start
    # (the position that decides the planted rule): the greedy search composes them.
    words = sorted({w.word for p in T.unique_triggers(patterns)[:4] for w in p.words})
    assert set(words) & {"alpha", "beta"}
    front = [T.Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [], [T.TriggerWord(w, 0, 0.01)])
             for w in words]
    candidates = T.unique_triggers(patterns)[:4] + front
    dev = [Example(t, label=l) for t, l in planted_dataset(6, seed=31)]
    out = str(tmp_path / "audit")
    summary = run_audit(model, tok, dev, out, recipes=("triggers", "wir-delete", "wir-attribution"),
                        patterns=candidates, rank_method="grad_input", chunk_size=4, progress=False)
    df = pd.read_csv(os.path.join(out, "results.csv"))
    assert list(df.columns[:len(TEXTATTACK_COLUMNS)]) == TEXTATTACK_COLUMNS
    assert len(df) == 18 and set(df["recipe"]) == {"triggers", "wir-delete", "wir-attribution"}
    trig = summary["recipes"]["triggers"]
    assert trig["successful_attacks"] >= 1   # the planted triggers flip some predictions
    for name, s in summary["recipes"].items():
        ta_metrics = s["this_session"]["textattack_metrics"]
        for key in ("attack_success_rate", "attack_accuracy_perc", "original_accuracy", "avg_num_queries"):
            assert s[key] == pytest.approx(ta_metrics[key]), (name, key)
    ranking = summary["recipes"]["wir-attribution"]["this_session"]["ranking"]
    assert ranking["ranked"] >= 1
    # resume: nothing is attacked again, rows stay the same
    summary2 = run_audit(model, tok, dev, out, recipes=("triggers", "wir-delete", "wir-attribution"),
                         patterns=candidates, rank_method="grad_input", progress=False)
    assert len(pd.read_csv(os.path.join(out, "results.csv"))) == 18
    assert "this_session" not in summary2["recipes"]["triggers"]
    assert summary2["recipes"]["triggers"]["attack_success_rate"] == trig["attack_success_rate"]
    from attrtools.adversarial.audit import read_rows
    from attrtools.adversarial.report import render_report

    html = render_report(summary, read_rows(os.path.join(out, "results.csv")))
    assert "triggers" in html and "http" not in html.split("<body>")[1]
    first_table = html.split("<tbody>")[1].split("</tbody>")[0]
    assert first_table.count("<tr>") == 3  # one row per attack, TextAttack's metrics in the columns
    assert "data:image/png;base64," in html  # the accuracy-under-attack chart


def test_audit_results_depend_on_neither_chunks_nor_resume_point(ta, planted, tmp_path):
    """Each example is attacked from the same seeded state with empty caches: a randomized recipe
    gives the same rows whatever the chunking, and a resumed run the rows of an uninterrupted one
    (what lets the ranks of a distributed audit split the examples)."""
    from attrtools.adversarial.audit import run_audit

    model, tok = planted
    dev = [Example(t, label=l) for t, l in planted_dataset(5, seed=33)]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_audit(model, tok, dev, str(whole), recipes=("deepwordbug",), chunk_size=5, progress=False)
    run_audit(model, tok, dev, str(parts), recipes=("deepwordbug",), chunk_size=2, progress=False)
    assert (whole / "results.csv").read_bytes() == (parts / "results.csv").read_bytes()
    lines = (parts / "results.csv").read_text().splitlines(keepends=True)
    (parts / "results.csv").write_text("".join(lines[:3]))  # killed after two examples
    summary = run_audit(model, tok, dev, str(parts), recipes=("deepwordbug",), chunk_size=3, progress=False)
    assert summary["recipes"]["deepwordbug"]["this_session"]["examples"] == 3
    assert (whole / "results.csv").read_bytes() == (parts / "results.csv").read_bytes()


# ----------------------------------------------------------------------- the audit's train file and config
def test_audit_reads_a_train_file_with_its_own_column_names(planted_dir, tmp_path):
    """``audit`` had no --train-*-column options: a training file whose columns differ from the dev
    data's could be read only by the guess (and here, not at all)."""
    _textattack()
    from attrtools.testing import planted_dataset

    dev = _write_tsv(tmp_path / "dev.tsv", planted_dataset(4, seed=3), header=("sentence", "label"))
    train = _write_tsv(tmp_path / "train.tsv", planted_dataset(30, seed=11), header=("phrase", "y"))
    common = ["audit", "--model", planted_dir, "--dataset", dev, "--text-column", "sentence", "--label-column",
              "label", "--train-dataset", train, "--recipes", "wir-delete", "--num-examples", "2",
              "--num-train-examples", "12", "--steps", "2", "--no-cache"]
    refused = _cli(common + ["--output-dir", tmp_path / "guess"])
    assert refused.exit_code != 0 and "--train-dataset" in refused.output and "'sentence' not found" in refused.output
    result = _cli(common + ["--train-text-column", "phrase", "--train-label-column", "y",
                            "--output-dir", tmp_path / "run"])
    assert result.exit_code == 0, result.output
    import json

    meta = json.loads((tmp_path / "run" / "triggers.json").read_text())["config"]
    assert meta["scanned"] == 30 and meta["correct_used"] == 12 and meta["patterns"] > 0  # the train file's rows
    from attrtools.cli_kit import train_columns

    assert train_columns((None, None, "y"), ("sentence", None, "label")) == ("sentence", None, "y")


def test_run_comparison_resolves_its_config_once(monkeypatch, tmp_path):
    """run_comparison resolved its config, then resolved the result again to drop 'triggers'."""
    from attrtools import config as config_module
    from attrtools.adversarial.compare import AuditedModel, run_comparison
    from attrtools.adversarial.recipes import RecipeError

    _textattack()
    resolved = []
    real = config_module.resolve_config

    def counting(cls, config=None, options=None):
        resolved.append(real(cls, config, options))
        return resolved[-1]

    monkeypatch.setattr(config_module, "resolve_config", counting)
    with pytest.raises(RecipeError):  # an unknown recipe: refused right after the config is resolved
        run_comparison([AuditedModel("a", None, None)], [], str(tmp_path / "cmp"),
                       recipes=("triggers", "no-such-recipe"), use_triggers=False)
    assert len(resolved) == 1 and resolved[0].recipes == ("no-such-recipe",)


# ------------------------------------------------------------------------------ trigger insertion slots
BOUNDARY_TEXTS = ["it 's a charming and often affecting journey .", "it's a charming film", "a well-made , witty film",
                  'good, "great" fun.', "(good) movie -- really", "don't", "state-of-the-art"]


def _regex_words(text):
    import re

    return re.findall(r"[\w'-]+", text)


def _rebuild(text, words, replacements):
    """``text`` with each word replaced in order, the text between words kept (as TextAttack does)."""
    out, pos = [], 0
    for word, new in zip(words, replacements):
        start = text.find(word, pos)
        out += [text[pos:start], new]
        pos = start + len(word)
    return "".join(out) + text[pos:]


@pytest.mark.parametrize("text", BOUNDARY_TEXTS)
def test_trigger_words_only_at_word_boundaries(text):
    """On SST-2 a trigger was inserted between 'it' and ''s' (``it '[[little]] s a charming ...``); now
    insertion slots are at word boundaries only, across contractions, hyphens and punctuation."""
    from attrtools.adversarial.triggers import insert_at_word_boundaries

    for r1 in [i / 10 for i in range(1, 11)]:
        for triggers in ([("little", r1)], [("little", r1), ("big", min(1.0, r1 + 0.1))]):
            words = _regex_words(text)
            new = _rebuild(text, words, insert_at_word_boundaries(text, words, triggers))
            chunks = new.split()
            assert [c for c in chunks if c not in ("little", "big")] == text.split(), (text, triggers, new)
            assert sorted(c for c in chunks if c in ("little", "big")) == sorted(w for w, _ in triggers), new


def test_trigger_insertion_in_textattack_keeps_contractions(planted):
    """TextAttack's trigger transformation split contractions (``it '[[little]] s``); now the inserted word
    lands between whole words at every relative position."""
    ta = _textattack()
    from attrtools.adversarial.transformation import TriggerInsertion
    from attrtools.adversarial.triggers import Pattern, TriggerWord

    for text in BOUNDARY_TEXTS:
        attacked = ta.shared.AttackedText(text)
        for r in [i / 10 for i in range(1, 11)]:
            pattern = Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [], [TriggerWord("little", 0, r)])
            (candidate,) = TriggerInsertion([pattern])._get_transformations(attacked, set(range(len(attacked.words))))
            chunks = candidate.text.split()
            assert [c for c in chunks if c != "little"] == text.split(), (text, r, candidate.text)
            assert "little" in chunks
    # The SST-2 case of the issue: never "it '[[little]] s".
    sst = ta.shared.AttackedText("it 's a charming and often affecting journey .")
    pattern = Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [], [TriggerWord("little", 0, 0.2)])
    (candidate,) = TriggerInsertion([pattern])._get_transformations(sst, set(range(len(sst.words))))
    assert "'little" not in candidate.text and " 's " in candidate.text


def test_per_class_table_lists_empty_classes(planted):
    """per_class.csv dropped a class with no examples; now it is listed with n = 0."""
    from attrtools.adversarial.triggers import Pattern, TriggerWord, per_class_accuracy

    model, tok = planted
    dev = [attrtools.Example("the alpha movie was beta", label=1), attrtools.Example("alpha then beta", label=1)]
    trig = Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [], [TriggerWord("beta", 0, 0.01)])
    rows = per_class_accuracy(model, tok, dev, [trig], top_k=1)
    base = {r["gold_class"]: r for r in rows if r["trigger_rank"] == 0}
    assert set(base) == {"0", "1"} and base["0"]["n"] == 0 and base["0"]["accuracy"] == ""
    assert base["1"]["n"] == 2
    assert [r["n"] for r in rows if r["trigger_rank"] == 1 and r["gold_class"] == "0"] == [0]


# ------------------------------------------------------------------------------ audit bookkeeping
def test_audit_skips_rows_textattack_cannot_read(planted, tmp_path):
    """A row like '12345' aborted the whole audit with TextAttack's 'LangDetectException: No features in
    text', and --num-examples above the rows was capped silently; now such rows are skipped and listed, the
    cap is noted and the class mix lists empty classes."""
    _textattack()
    from attrtools.adversarial.audit import read_rows, run_audit
    from attrtools.adversarial.report import render_report

    model, tok = planted
    dev = [attrtools.Example("12345", label=0), attrtools.Example("...", label=0),
           attrtools.Example("\U0001F600", label=1), attrtools.Example("   ", label=1),
           attrtools.Example("the alpha movie was beta", label=1)]
    out = str(tmp_path / "audit")
    summary = run_audit(model, tok, dev, out, recipes=("deepwordbug",), progress=False, num_requested=50)
    assert summary["num_examples"] == 1 and summary["num_rows"] == 5 and len(summary["skipped_rows"]) == 4
    assert summary["recipes"]["deepwordbug"]["total"] == 1
    assert summary["num_examples"] + len(summary["skipped_rows"]) == summary["num_rows"]
    assert any("50 examples were asked for" in n for n in summary["notes"])
    assert summary["class_mix"] == {"0": 0, "1": 1}  # the empty class is listed with 0
    html = render_report(summary, read_rows(os.path.join(out, "results.csv")))
    assert "Rows without content" in html and "no letters" in html and "gold classes: 0: 0, 1: 1" in html


def test_input_reduction_reported_in_its_own_terms(planted, tmp_path):
    """InputReduction was reported as '100 % success, 0 % accuracy under attack' beside real attacks although
    it never changes a prediction; now it is reported as a reduction (words kept, prediction kept)."""
    _textattack()
    from attrtools.adversarial.audit import read_rows, run_audit, summarize_reduction
    from attrtools.adversarial.report import render_report

    rows = [{"result_type": "Maximized", "perturbed_text": "[[beta]]", "num_words": 4, "num_queries": 10},
            {"result_type": "Maximized", "perturbed_text": "alpha [[the]] beta", "num_words": 4, "num_queries": 6},
            {"result_type": "Failed", "perturbed_text": "alpha the beta", "num_words": 3, "num_queries": 3},
            {"result_type": "Skipped", "perturbed_text": "x y", "num_words": 2, "num_queries": 0}]
    s = summarize_reduction(rows)
    assert s["attack_success_rate"] is None and s["attack_accuracy_perc"] is None
    assert (s["reduced"], s["reached_target"], s["not_reduced"], s["skipped_attacks"]) == (2, 1, 1, 1)
    assert s["avg_words_kept_perc"] == pytest.approx((25.0 + 75.0) / 2)
    # words as TextAttack splits them (num_words' own rule): the "'" left of a removed "'s" is no word
    left = summarize_reduction([{"result_type": "Maximized", "perturbed_text": "' charming and affecting . ",
                                 "num_words": 8, "num_queries": 9}])
    assert left["avg_words_kept_perc"] == pytest.approx(100.0 * 3 / 8) and left["reached_target"] == 0
    model, tok = planted
    dev = [attrtools.Example("the alpha movie was beta", label=1), attrtools.Example("beta and alpha", label=0)]
    out = str(tmp_path / "audit")
    summary = run_audit(model, tok, dev, out, recipes=("input-reduction",), progress=False)
    red = summary["recipes"]["input-reduction"]
    assert red["kind"] == "input-reduction" and red["attack_success_rate"] is None
    assert red["reduced"] + red["not_reduced"] + red["skipped_attacks"] == red["total"] == 2
    assert red["prediction_kept_perc"] == 100.0 and 0 < red["avg_words_kept_perc"] < 100
    html = render_report(summary, read_rows(os.path.join(out, "results.csv")))
    assert "Input reduction (not an attack" in html


def test_audit_summary_accounts_for_every_row(ascii_dir, tmp_path):
    """The new-user trial read "4 attacked of 7 rows" for a 12-row file: the summary now says how
    many rows were read, how many were usable and skipped (and why), and how many were attacked."""
    _textattack()
    data = tmp_path / "mixed.csv"
    data.write_text(MIXED, encoding="utf-8")
    result = _cli(["audit", "--model", ascii_dir, "--dataset", data, "--recipes", "deepwordbug", "--no-triggers",
                   "--num-examples", "2", "--output-dir", tmp_path / "audit", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert _line(result.output, "rows read") == "7: 4 usable, 3 skipped without content (see rows skipped)"
    assert _line(result.output, "attacked") == "2 (the first usable rows, at most --num-examples 2)"
    skipped = _line(result.output, "rows skipped")
    assert skipped.startswith("3 without content") and "no tokens in text: 1" in skipped
    assert _line(result.output, "gold classes") == "0: 1, 1: 1"
