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

from attrtools.adversarial import triggers as T
from attrtools.testing import planted_dataset
from attrtools.types import Example


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
