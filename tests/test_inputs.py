"""Real inputs (issue 19): one truncation rule, one-output heads, an exact model fingerprint, cache
keys on the resolved target class, output file modes. Tiny models from ``attrtools.testing``."""
import os
import stat
import warnings

import pytest
import torch

import attrtools
from attrtools import methods
from attrtools.cache import AttributionCache
from attrtools.engine import Engine, TruncationWarning
from attrtools.models import OneOutputError, fingerprint, max_input_length, position_limit, tokenizer_limit
from attrtools.testing import build_tiny_model

def _textattack():
    from attrtools.adversarial.textattack_compat import TextAttackUnavailable, load_textattack

    try:
        return load_textattack()
    except TextAttackUnavailable:
        pytest.skip("textattack (the attack extra) is not installed")


LONG = " ".join(["the movie was very good and the acting was fine but the plot was long"] * 6)  # 84 words


@pytest.fixture(scope="module")
def short_table(tmp_path_factory):
    """Tiny BERT and RoBERTa with a 34-row position table (tokenizer limit 128)."""
    root = tmp_path_factory.mktemp("short")
    return {arch: attrtools.load_model(build_tiny_model(arch, str(root / arch), max_positions=32))
            for arch in ("bert", "roberta", "distilbert")}


# ------------------------------------------------------------------------------ 1. truncation rule
def test_limit_from_position_table_offset_and_tokenizer(short_table):
    bert, tok = short_table["bert"]
    roberta, _ = short_table["roberta"]
    distil, _ = short_table["distilbert"]
    assert bert.config.max_position_embeddings == 34 and position_limit(bert) == 34
    assert position_limit(roberta) == 34 - (roberta.config.pad_token_id + 1)  # positions start after padding
    assert position_limit(distil) == distil.config.max_position_embeddings  # no offset
    assert tokenizer_limit(tok) == 128 and max_input_length(bert, tok) == 34
    sentinel = type("Tok", (), {"model_max_length": int(1e30)})()  # transformers' "no limit" value
    assert tokenizer_limit(sentinel) is None and max_input_length(bert, sentinel) == 34
    small = type("Tok", (), {"model_max_length": 16})()
    assert max_input_length(bert, small) == 16
    assert max_input_length(bert, tok, override=20) == 20
    with pytest.raises(ValueError, match="exceeds the 34 positions"):
        max_input_length(bert, tok, override=40)
    with pytest.raises(ValueError, match="at least 2"):
        Engine(bert, tok, max_length=1)


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_long_input_truncated_and_reported_not_a_crash(short_table, arch):
    from attrtools.engine import reset_run_report, run_report

    model, tok = short_table[arch]
    reset_run_report()
    engine = Engine(model, tok)
    limit = position_limit(model)
    with pytest.warns(TruncationWarning, match=rf"truncated .*: '0': \d+ -> {limit}"):
        (att,) = engine.attribute([attrtools.Example(LONG, id="0")], method="raw")
    assert att.n_tokens == limit and engine.stats["truncated"] == 1
    assert att.tokens[-1] == tok.sep_token and att.scores.shape[-1] == limit
    original, kept = engine.truncated[(LONG, None)]
    assert original > 80 and kept == limit
    # Reported once per engine, counted once per example.
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        engine.logits([LONG])
    assert engine.stats["truncated"] == 1 and run_report()["truncated"] == 1  # what the CLI summary prints
    # A pair is truncated too (longest first) and still runs.
    with pytest.warns(TruncationWarning):
        (pair,) = engine.attribute([(LONG, "a short film")], method="grad_input")
    assert pair.n_tokens == limit


def test_every_tool_predicts_through_the_same_rule(short_table):
    """The engine, the TextAttack wrapper and the trigger code read the same tokens."""
    _textattack()
    from attrtools.adversarial.triggers import predict, word_alignment
    from attrtools.adversarial.wrapper import AttrtoolsModelWrapper

    model, tok = short_table["bert"]
    texts = [LONG, "alpha " + LONG, "it is fine"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        engine = Engine(model, tok)
        reference = engine.logits(texts)
        wrapper = AttrtoolsModelWrapper(model, tok)
        assert torch.allclose(wrapper(texts), reference, atol=1e-6)
        assert predict(model, tok, texts) == reference.argmax(-1).tolist()
        word_ids, _, _ = word_alignment(tok, LONG, None, engine.max_length)
        assert len(word_ids) == engine.encode(attrtools.Example(LONG)).length == 34
        assert wrapper.engine.max_length == engine.max_length == 34


# ------------------------------------------------------------------------------ 5. one-output heads
@pytest.fixture(scope="module")
def one_output(tmp_path_factory):
    return attrtools.load_model(build_tiny_model("bert", str(tmp_path_factory.mktemp("one")), num_labels=1))


def test_one_output_probability_targets_refuse_logit_targets_work(one_output):
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
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.pruning.pipeline import run_pruning

    model, tok = one_output
    examples = [attrtools.Example("the movie was good", label=0), attrtools.Example("boring", label=0)]
    with pytest.raises(OneOutputError, match="faithfulness"):
        evaluate_methods(model, tok, examples, ["grad_input"])
    with pytest.raises(OneOutputError, match="head pruning"):
        run_pruning(model, tok, examples, str(tmp_path), strategies=["attattr"])


# ------------------------------------------------------------------------------ 6. fingerprint
def test_data_edit_changes_fingerprint_and_misses_the_cache(planted_dir, tmp_path):
    model, tok = attrtools.load_model(planted_dir)  # a private copy to modify
    engine = Engine(model, tok, cache=AttributionCache(tmp_path))
    (first,) = engine.attribute(["alpha the beta"], method="attattr", steps=2)
    before = fingerprint(model)
    model.classifier.bias.data[0] += 0.5  # .data: no version-counter bump
    assert fingerprint(model) != before
    (second,) = engine.attribute(["alpha the beta"], method="attattr", steps=2)
    assert engine.stats["hits"] == 0 and engine.stats["computed"] == 2
    assert second.probs != first.probs
    # Another route: a numpy view of a weight, edited in place.
    after = fingerprint(model)
    model.bert.embeddings.word_embeddings.weight.detach().numpy()[5, 3] += 1e-6
    assert fingerprint(model) != after
    # Unchanged model: same value every call, and equal to a fresh load of the same weights.
    fresh, _ = attrtools.load_model(planted_dir)
    assert fingerprint(fresh) == fingerprint(fresh) == before


# ------------------------------------------------------------------------------ 9. resolved-target keys
def test_prune_then_tree_then_triggers_share_cache_entries(planted, tmp_path):
    """Lean payloads (attrtools.reduction): prune caches one number per head, tree heads summed, so
    each computes its own AttAttr; triggers cache the full matrices, and from then on every reduced
    request of those examples is served from them. Every spelling of the same class: one entry."""
    from attrtools.adversarial.triggers import extract_triggers, predict
    from attrtools.pruning.importance import head_importance
    from attrtools.testing import planted_dataset
    from attrtools.tree.build import build_trees

    model, tok = planted
    examples = [attrtools.Example(t, label=y, id=str(i)) for i, (t, y) in enumerate(planted_dataset(30, seed=11))]
    preds = predict(model, tok, examples)
    correct = sum(p == e.label for p, e in zip(preds, examples))
    assert correct >= 25
    cache = AttributionCache(tmp_path)
    prune_engine = Engine(model, tok, cache=cache)
    head_importance(model, tok, examples, strategy="attattr", steps=4, engine=prune_engine)  # target = gold
    assert prune_engine.stats["computed"] == 30 and prune_engine.stats["hits"] == 0
    tree_engine = Engine(model, tok, cache=cache)
    build_trees(tree_engine, examples, steps=4, target="pred")  # heads summed: not what prune kept
    assert tree_engine.stats["hits"] == 0 and tree_engine.stats["computed"] == 30
    # Triggers use the correctly classified examples, predicted class, full matrices.
    patterns, stats = extract_triggers(model, tok, examples, num_examples=30, steps=4, cache=cache)
    assert stats["correct_used"] == correct
    assert stats["engine"]["hits"] == 0 and stats["engine"]["computed"] == correct
    fresh = AttributionCache(tmp_path, memory_bytes=0)
    later = Engine(model, tok, cache=fresh)  # prune again (gold = pred where correct): all cached
    head_importance(model, tok, examples, strategy="attattr", steps=4, engine=later)
    assert later.stats["hits"] == 30 and later.stats["computed"] == 0
    # Every spelling of the same class: one entry (the tree's heads-summed entries).
    again = Engine(model, tok, cache=cache)
    again.attribute(examples[:3], method="attattr", steps=4, target=[int(p) for p in preds[:3]], reduce="heads_sum")
    assert again.stats["hits"] == 3


# ------------------------------------------------------------------------------ 11. file modes
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(tmp_path, umask, planted):
    from attrtools.io import write_json, write_text

    old = os.umask(umask)
    try:
        write_text(str(tmp_path / "report.html"), "<html></html>")
        write_json(str(tmp_path / "summary.json"), {"a": 1})
        model, tok = planted
        (att,) = attrtools.attribute(model, tok, ["alpha the beta"], method="raw")
        att.save(str(tmp_path / "a.safetensors"))
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for name in ("report.html", "summary.json", "a.safetensors", "plain.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name


# ------------------------------------------------------------------------------ 7. IG completeness gap
def test_ig_completeness_gap_stored_warned_and_cached(tiny_dirs, tmp_path):
    from attrtools.capture import capture
    from attrtools.engine import CompletenessWarning
    from attrtools.methods.base import target_score
    from attrtools.methods.ig_embed import baseline_embeddings, score_with_embeddings, word_embeddings_replaced

    from attrtools.engine import reset_run_report

    reset_run_report()
    model, tok = attrtools.load_model(tiny_dirs["bert"])
    text = "the movie was very good but the plot was long"
    engine = Engine(model, tok, cache=AttributionCache(tmp_path))
    with pytest.warns(CompletenessWarning, match=r"ig_embed: 1 of 1 .* more than 0.05") as caught:
        (coarse,) = engine.attribute([text], method="ig_embed", steps=1)
    # A Python caller is told the Python keyword, no CLI flag; the warning names the caller's line.
    assert any("tolerance=1e-4" in str(w.message) and "--" not in str(w.message) for w in caught)
    assert all(w.filename == __file__ for w in caught if issubclass(w.category, CompletenessWarning))
    # The stored gap is the real one: |sum of IG - (y(e) - y(0))|.
    inputs = engine.collate([engine.encode(attrtools.Example(text))])
    target = torch.tensor([coarse.target])
    with torch.no_grad(), word_embeddings_replaced(model) as rec:
        full = target_score(model(**inputs).logits, target, "logit")
    base = score_with_embeddings(model, inputs, baseline_embeddings(model, rec.original, "zero"), target)
    delta = float(full - base)
    record = coarse.completeness
    assert record["delta"][0] == pytest.approx(delta, abs=1e-5)
    assert record["sum"][0] == pytest.approx(float(coarse.scores.sum()), abs=1e-5)
    assert record["relative_gap"][0] == pytest.approx(abs(float(coarse.scores.sum()) - delta) / max(abs(delta), 1e-3),
                                                      rel=1e-4)
    assert record["worst_relative_gap"] > 0.05 and engine.stats["worst_completeness_gap"] == record["worst_relative_gap"]
    from attrtools.engine import run_report

    assert run_report()["worst_completeness_gap"][:2] == (record["worst_relative_gap"], "ig_embed")
    # More steps: the gap shrinks below the tolerance, no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)
        (fine,) = engine.attribute([text], method="ig_embed", steps=200)
    assert fine.completeness["worst_relative_gap"] < record["worst_relative_gap"] / 10
    # A cache hit carries the same record; so does the saved file.
    again = Engine(model, tok, cache=AttributionCache(tmp_path), completeness_tolerance=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)  # tolerance is configurable
        (hit,) = again.attribute([text], method="ig_embed", steps=1)
    assert again.stats["hits"] == 1 and hit.completeness == record
    coarse.save(tmp_path / "a.safetensors")
    assert attrtools.Attribution.load(tmp_path / "a.safetensors").completeness == record
    assert coarse.metadata()["completeness"] == record


def test_completeness_hint_names_each_commands_own_steps_option():
    """The warning tells the user which option raises the steps; each one it names exists on that
    command (prune/triggers/audit take --steps or --rank-steps, not --param)."""
    import click

    from attrtools.cli import main
    from attrtools.engine import STEPS_HINT, STEPS_OPTIONS

    ctx = click.Context(main)
    for name, options in STEPS_OPTIONS.items():
        command = main.get_command(ctx, name)
        have = {o for p in command.params for o in p.opts}
        assert set(options) <= have, (name, set(options) - have)
        assert all(o.split("=")[0] in STEPS_HINT for o in options) and f"in {name}" in STEPS_HINT
    assert {"attribute", "evaluate", "prune", "tree", "triggers", "audit"} <= set(STEPS_OPTIONS)


def test_attattr_completeness_gap_per_layer(tiny_dirs, tmp_path):
    from attrtools.capture import capture

    model, tok = attrtools.load_model(tiny_dirs["bert"])
    text = "the movie was very good"
    engine = Engine(model, tok, cache=AttributionCache(tmp_path), completeness_tolerance=1e-9)
    with pytest.warns(UserWarning, match=r"attattr: 1 of 1 .* \(layer \d\)"):
        (att,) = engine.attribute([text], method="attattr", steps=3, steps_method="gausslegendre")
    inputs = engine.collate([engine.encode(attrtools.Example(text))])
    with torch.no_grad(), capture(model, record="all") as rec:
        probs = torch.softmax(model(**inputs).logits, -1)[0, att.target]
    record = att.completeness
    assert record["units"] == [0, 1] and len(record["relative_gap"]) == 2
    for layer in range(2):
        with torch.no_grad(), capture(model, override={layer: rec.attention_list()[layer] * 0}):
            zero = torch.softmax(model(**inputs).logits, -1)[0, att.target]
        assert record["delta"][layer] == pytest.approx(float(probs - zero), abs=1e-6)
        assert record["sum"][layer] == pytest.approx(float(att.scores[layer].sum()), abs=1e-6)
    assert record["worst_unit"] == max(range(2), key=lambda l: record["relative_gap"][l])
    # Partly cached (one layer evicted): the record is reassembled from both sources.
    key = engine.key(engine.encode(attrtools.Example(text)), "attattr",
                     attrtools.methods.get("attattr").params(steps=3, steps_method="gausslegendre"), att.target, 1)
    os.unlink(engine.cache.path(key))
    fresh = Engine(model, tok, cache=AttributionCache(tmp_path, memory_bytes=0), completeness_tolerance=1.0)
    (again,) = fresh.attribute([text], method="attattr", steps=3, steps_method="gausslegendre")
    assert fresh.stats["partial"] == 1
    assert again.completeness["relative_gap"] == pytest.approx(record["relative_gap"], abs=1e-6)


# ------------------------------------------------------------------------------ 10. trigger insertion slots
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
    from attrtools.adversarial.triggers import insert_at_word_boundaries

    for r1 in [i / 10 for i in range(1, 11)]:
        for triggers in ([("little", r1)], [("little", r1), ("big", min(1.0, r1 + 0.1))]):
            words = _regex_words(text)
            new = _rebuild(text, words, insert_at_word_boundaries(text, words, triggers))
            chunks = new.split()
            assert [c for c in chunks if c not in ("little", "big")] == text.split(), (text, triggers, new)
            assert sorted(c for c in chunks if c in ("little", "big")) == sorted(w for w, _ in triggers), new


def test_trigger_insertion_in_textattack_keeps_contractions(planted):
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


# ------------------------------------------------------------------------------ 2. rows without content
def test_rows_without_content_are_skipped_with_reasons(tmp_path):
    from attrtools.data import ExampleList, content_problem, keep_content, load_examples

    E = attrtools.Example
    assert content_problem(E("12345")).startswith("no letters in text")
    assert content_problem(E("...")).startswith("no letters")
    assert content_problem(E("\U0001F600 \U0001F44D")).startswith("no letters")
    assert content_problem(E("   ")) == "whitespace-only text"
    assert content_problem(E("")) == "empty text"
    assert content_problem(E("a premise", "")) == "empty text_pair"
    assert content_problem(E("ok", "fine")) is None and content_problem(E("très bien")) is None
    kept = keep_content([E("12345", id="a"), "the movie", E("  ", id="c")])
    assert isinstance(kept, ExampleList) and [e.text for e in kept] == ["the movie"]
    assert [(r["index"], r["id"]) for r in kept.skipped] == [(0, "a"), (2, "c")] and kept.total == 3
    csv = tmp_path / "rows.csv"
    csv.write_text('text,label\n12345,0\n"   ",1\n,0\nthe movie was good,1\n...,0\n', encoding="utf-8")
    rows = load_examples(str(csv))
    assert [e.text for e in rows] == ["the movie was good"] and rows[0].label == 1
    assert [r["index"] for r in rows.skipped] == [0, 1, 2, 4] and rows.total == 5
    assert rows.skipped_summary() == "4 (no letters in text: 2, whitespace-only text: 1, empty text: 1)"


def test_evaluate_skips_contentless_rows_instead_of_averaging_zeros(planted):
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


def test_audit_skips_rows_textattack_cannot_read(planted, tmp_path):
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


# ------------------------------------------------------------------------------ 8. audit bookkeeping
def test_input_reduction_reported_in_its_own_terms(planted, tmp_path):
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


def test_per_class_table_lists_empty_classes(planted):
    from attrtools.adversarial.triggers import Pattern, TriggerWord, per_class_accuracy

    model, tok = planted
    dev = [attrtools.Example("the alpha movie was beta", label=1), attrtools.Example("alpha then beta", label=1)]
    trig = Pattern(None, 0, 0, 0, 0, (0, 0), (0, 0), (1.0, 0.0), [], -1, [], [TriggerWord("beta", 0, 0.01)])
    rows = per_class_accuracy(model, tok, dev, [trig], top_k=1)
    base = {r["gold_class"]: r for r in rows if r["trigger_rank"] == 0}
    assert set(base) == {"0", "1"} and base["0"]["n"] == 0 and base["0"]["accuracy"] == ""
    assert base["1"]["n"] == 2
    assert [r["n"] for r in rows if r["trigger_rank"] == 1 and r["gold_class"] == "0"] == [0]


# ------------------------------------------------------------------------------ 4. labels
@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory):
    from transformers import AutoConfig

    directory = build_tiny_model("bert", str(tmp_path_factory.mktemp("nli")), num_labels=3)
    config = AutoConfig.from_pretrained(directory)
    config.id2label = {0: "contradiction", 1: "entailment", 2: "neutral"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.save_pretrained(directory)
    return directory


def test_string_labels_map_through_the_models_label2id(nli_dir, tmp_path):
    from transformers import AutoConfig

    from attrtools.data import DataError, label_names_for, load_examples

    config = AutoConfig.from_pretrained(nli_dir)
    data = tmp_path / "nli.csv"
    data.write_text("premise,hypothesis,label\nthe movie,a film,entailment\nthe plot,the story,neutral\n"
                    "good,bad,contradiction\n", encoding="utf-8")
    rows = load_examples(str(data), model_config=config)
    assert [e.label for e in rows] == [1, 2, 0] and rows[0].text_pair == "a film"
    with pytest.raises(DataError) as err:
        load_examples(str(data), model_config=config, label_names="entailment,neutral,contradiction")
    message = str(err.value)
    assert "{0: 'entailment', 1: 'neutral', 2: 'contradiction'}" in message
    assert "{0: 'contradiction', 1: 'entailment', 2: 'neutral'}" in message
    assert [e.label for e in load_examples(str(data), model_config=config,
                                           label_names="contradiction,entailment,neutral")] == [1, 2, 0]
    # A generic map (LABEL_0...) defers to --label-names; without either, string labels are an error.
    generic = AutoConfig.for_model("bert", num_labels=3)
    assert label_names_for(None, generic) is None
    assert [e.label for e in load_examples(str(data), model_config=generic,
                                           label_names="entailment,neutral,contradiction")] == [0, 1, 2]
    with pytest.raises(DataError, match="known label name"):
        load_examples(str(data), model_config=generic)
    with pytest.raises(DataError, match="3-class model"):
        label_names_for("a,b", generic)


def test_tree_evaluate_and_trigger_extraction_run_on_long_inputs(short_table):
    """The issue's reproducer for the other tools: each ended in a size mismatch (82 vs 34)."""
    from attrtools.adversarial.triggers import extract_triggers
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.tree.build import build_trees

    model, tok = short_table["bert"]
    examples = [attrtools.Example(LONG, label=0, id="long"), attrtools.Example("the movie was good", label=1, id="s")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        graphs, _ = build_trees(Engine(model, tok), examples, steps=2, use_last_layer=True)
        assert len(graphs) == 2 and max(g.graph["n_tokens"] for g in graphs) == 34
        evaluation = evaluate_methods(model, tok, examples, ["grad_input"], reference=None, preset="eraser")
        assert [r.status for r in evaluation.results] == ["ok", "ok"] and evaluation.n_examples == 2
        _, stats = extract_triggers(model, tok, examples, num_examples=2, steps=2)
        assert stats["engine"]["truncated"] <= 1


def test_cli_maps_string_labels_through_the_models_own_label2id(tmp_path):
    """A dataset with string labels and a model whose id2label names them: every command reads the
    labels through the model's map (the config is read before the model loads)."""
    import json as _json

    from click.testing import CliRunner

    from attrtools.cli import main as cli
    from attrtools.testing import build_tiny_model
    from attrtools.types import Attribution

    model_dir = build_tiny_model("bert", str(tmp_path / "model"))
    config_path = os.path.join(model_dir, "config.json")
    with open(config_path) as f:
        config = _json.load(f)
    config["id2label"], config["label2id"] = {"0": "neg", "1": "pos"}, {"neg": 0, "pos": 1}
    with open(config_path, "w") as f:
        _json.dump(config, f)
    data = tmp_path / "data.csv"
    data.write_text("text,label\nthe movie was good,pos\na dull film,neg\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["attribute", "--model", model_dir, "--dataset", str(data), "--method", "raw",
                                      "--target", "gold", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    labels = [Attribution.load(str(out / "attributions" / f"{i:06d}.safetensors")).label for i in range(2)]
    assert labels == [1, 0]
    tree = CliRunner().invoke(cli, ["tree", "--model", model_dir, "--dataset", str(data), "--steps", "2",
                                    "--target", "gold", "--formats", "json", "--output-dir", str(tmp_path / "tree")])
    assert tree.exit_code == 0, tree.output


def test_decoder_whose_tokenizer_pads_with_another_id_reads_its_own_token(tmp_path):
    """A decoder classifier finds its last token through config.pad_token_id: a tokenizer padding with
    another id would make it read a pad position in a batch, silently. The engine pads a decoder's
    batches with the model's own pad id (models.batch_pad_id): batched equals one text at a time."""
    import attrtools
    from attrtools import models
    from attrtools.engine import Engine
    from attrtools.testing import build_tiny_model

    model, tokenizer = attrtools.load_model(build_tiny_model("llama", str(tmp_path / "llama")))
    model.config.pad_token_id = tokenizer.mask_token_id  # not the tokenizer's pad, and no token of the texts
    engine = Engine(model, tokenizer)
    texts = ["the movie was very good", "bad"]
    inputs = engine.collate([engine.encode(t) for t in texts])
    assert inputs["input_ids"][1, -1] == model.config.pad_token_id
    assert models.pool_positions(model, inputs["input_ids"]).tolist() == [len(engine.encode(t).input_ids) - 1
                                                                          for t in texts]
    with torch.no_grad():
        batched = model(**inputs).logits
        alone = torch.cat([model(**engine.collate([engine.encode(t)])).logits for t in texts])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


def test_pad_id_outside_the_embedding_table_is_refused_at_once(tmp_path):
    """transformers 5 may give a decoder's tokenizer a pad token the model has no row for (a
    Qwen2 tokenizer adding <|endoftext|>): every padded batch would index past the table. The engine
    refuses it with attrtools' error before computing, also for a single text."""
    import attrtools
    from attrtools.engine import Engine
    from attrtools.models import PoolingError
    from attrtools.testing import build_tiny_model

    model, tokenizer = attrtools.load_model(build_tiny_model("llama", str(tmp_path / "llama")))
    rows = model.get_input_embeddings().num_embeddings
    tokenizer.add_special_tokens({"pad_token": "<|new-pad|>"})
    assert tokenizer.pad_token_id >= rows
    model.config.pad_token_id = tokenizer.pad_token_id
    with pytest.raises(PoolingError, match=f"outside the model's embedding table of {rows} tokens"):
        Engine(model, tokenizer)
    with pytest.raises(PoolingError):
        attrtools.attribute(model, tokenizer, ["one text"], method="raw", cache=False)


def test_grad_input_is_signed_only_when_summed(planted, tmp_path):
    """Gradient x input's default is an L2 norm (never negative): drawn as unsigned. Its sum
    aggregate is signed. The flag follows the parameters, also when read back from the cache."""
    import attrtools
    from attrtools.cache import AttributionCache

    model, tok = planted
    for _ in range(2):  # computed, then from the cache
        cache = AttributionCache(str(tmp_path / "c"))
        (norm,) = attrtools.attribute(model, tok, ["alpha the beta sad"], method="grad_input", cache=cache)
        (summed,) = attrtools.attribute(model, tok, ["alpha the beta sad"], method="grad_input", aggregate="sum",
                                        cache=cache)
        assert norm.params["_signed"] is False and bool((norm.scores >= 0).all())
        assert summed.params["_signed"] is True
    assert cache.stats["disk_hits"] + cache.stats["memory_hits"] == 2  # the second pass read both back


# ------------------------------------------------------------------------------ the command line (issue 19's CLI half)
def _cli(args):
    from click.testing import CliRunner

    from attrtools.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _commands():
    """Every command of the CLI (subcommands of groups too), as ``(name, click command)``."""
    import click

    from attrtools.cli import main

    ctx = click.Context(main)
    found = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", command.get_command(ctx, sub)) for sub in command.list_commands(ctx)]
        else:
            found.append((name, command))
    return found


def test_every_command_that_reads_data_or_runs_a_model_takes_the_input_options():
    """README and every TruncationWarning tell the user to pass --max-length, and label errors say
    --label-names: every command taking a model or a dataset must have both (found over the CLI, not
    a list kept by hand)."""
    commands = _commands()
    readers = []
    for name, command in commands:
        options = {opt for param in command.params for opt in param.opts}
        if {"--model", "--dataset"} & options:
            readers.append(name)
            assert {"--max-length", "--label-names"} <= options, name
    assert {"attribute", "tree", "evaluate", "prune", "triggers", "audit", "demo"} <= set(readers)
    assert "methods" not in readers and len(readers) < len(commands)


@pytest.fixture(scope="module")
def short_bert_dir(short_table, tmp_path_factory):
    model, tok = short_table["bert"]
    folder = str(tmp_path_factory.mktemp("short-bert") / "model")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _line(output: str, key: str) -> str:
    """The value of summary line ``key`` (the summary pads keys to one width)."""
    for line in output.splitlines():
        if line.startswith(key + " ") or line == key:
            return line[len(key):].strip()
    raise AssertionError(f"no summary line {key!r} in:\n{output}")


def test_cli_records_the_rule_and_reports_truncation_skips_and_gap(short_bert_dir, tmp_path):
    import json

    data = tmp_path / "d.csv"
    data.write_text(f"text,label\n{LONG},1\n12345,0\nthe movie was good,0\n", encoding="utf-8")
    out = tmp_path / "run"
    result = _cli(["attribute", "--model", short_bert_dir, "--dataset", data, "--method", "ig_embed",
                   "--param", "steps=1", "--output-dir", out, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert _line(result.output, "examples") == "2"
    assert _line(result.output, "max length") == "34 tokens (the model's limit)"
    assert _line(result.output, "inputs truncated").startswith("1 data row(s) longer than the max length")
    assert _line(result.output, "rows skipped").startswith("1 without content (no letters in text: 1)")
    gap = _line(result.output, "worst IG completeness gap")
    assert "relative (ig_embed, example '" in gap and float(gap.split()[0]) > 0
    config = json.loads((out / "run_config.json").read_text())
    assert (config["max_length_used"], config["position_limit"], config["tokenizer_limit"]) == (34, 34, 128)
    assert config["max_length_option"] is None
    again = _cli(["attribute", "--model", short_bert_dir, "--dataset", data, "--method", "ig_embed",
                  "--param", "steps=1", "--output-dir", out])  # the recorded rule is no reason to refuse a resume
    assert again.exit_code == 0, again.output
    # the report is per command: a command that truncates nothing and has no IG says nothing of either
    short = _cli(["attribute", "--model", short_bert_dir, "--text", "good", "--method", "raw",
                  "--output-dir", tmp_path / "short", "--no-cache"])
    assert short.exit_code == 0 and "inputs truncated" not in short.output and "completeness" not in short.output
    bad = _cli(["attribute", "--model", short_bert_dir, "--text", "good", "--max-length", "200",
                "--output-dir", tmp_path / "bad", "--no-cache"])
    assert bad.exit_code == 2 and "exceeds the 34 positions" in bad.output and len(bad.output.strip().splitlines()) == 1
    ok = _cli(["attribute", "--model", short_bert_dir, "--text", LONG, "--max-length", "20", "--method", "raw",
               "--output-dir", tmp_path / "ok", "--no-cache"])
    assert ok.exit_code == 0, ok.output
    assert _line(ok.output, "max length") == "20 tokens (--max-length)"
    assert json.loads((tmp_path / "ok" / "run_config.json").read_text())["max_length_used"] == 20
    from attrtools.types import Attribution

    assert Attribution.load(str(tmp_path / "ok" / "attributions" / "000000.safetensors")).n_tokens == 20


def test_every_tool_command_records_the_max_length_and_truncations(short_bert_dir, tmp_path):
    """tree, evaluate, prune and triggers on a dataset with one long row: each summary says what was
    truncated, and each run_config.json holds the max length used (--max-length where given)."""
    import json

    data = tmp_path / "d.csv"
    data.write_text(f"text,label\n{LONG},1\nthe movie was good,0\na dull film,1\n", encoding="utf-8")
    runs = {
        "tree": ["tree", "--steps", "1", "--formats", "json"],
        "evaluate": ["evaluate", "--methods", "grad_input", "--reference", "none", "--preset", "eraser"],
        "prune": ["prune", "--strategies", "attention", "--fractions", "0,0.5", "--latency-repeats", "1",
                  "--no-save-model", "--max-length", "30"],
        "triggers": ["triggers", "--steps", "1", "--num-train-examples", "3"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        result = _cli(args + ["--model", short_bert_dir, "--dataset", data, "--output-dir", out, "--no-cache"])
        assert result.exit_code == 0, (name, result.output)
        used = 30 if "--max-length" in args else 34
        assert json.loads((out / "run_config.json").read_text())["max_length_used"] == used, name
        assert _line(result.output, "max length").startswith(f"{used} tokens"), name
        assert _line(result.output, "inputs truncated").startswith("1 "), (name, result.output)


def test_cli_label_names_conflict_shows_both_maps_before_anything_loads(nli_dir, tmp_path):
    """Every command reading a dataset maps its labels through the model's own map and shows both
    maps on a conflict, before the weights load or the run directory is written."""
    data = tmp_path / "nli.csv"
    data.write_text("premise,hypothesis,label\nthe movie,a film,entailment\n", encoding="utf-8")
    extra = {"audit": ["--recipes", "deepwordbug", "--no-triggers"], "demo": ["--train-dataset", str(data)]}
    checked = []
    for name, command in _commands():
        if "--dataset" not in {opt for param in command.params for opt in param.opts}:
            continue
        if name == "finetune":  # its --label-names name the classes of the new head (docs/datasets.md)
            continue
        if name == "audit":
            _textattack()
        out = tmp_path / name.replace(" ", "-")
        result = _cli(name.split() + ["--model", nli_dir, "--dataset", data, "--label-names",
                                      "entailment,neutral,contradiction", "--output-dir", out] + extra.get(name, []))
        assert result.exit_code != 0, (name, result.output)
        assert "{0: 'contradiction', 1: 'entailment', 2: 'neutral'}" in result.output, (name, result.output)
        assert not (out / "run_config.json").exists(), name  # the demo too: it reads its data first
        checked.append(name)
    assert {"attribute", "tree", "evaluate", "prune", "triggers", "audit", "demo"} <= set(checked)


# ------------------------------------------------------------------------------ rows the tokenizer keeps nothing of
@pytest.fixture(scope="module")
def ascii_dir(tmp_path_factory):
    """The planted model with a tokenizer that drops every non-ASCII character (same ids)."""
    import shutil

    from conftest import PLANTED_ASSET

    from attrtools.testing import write_ascii_tokenizer

    directory = str(tmp_path_factory.mktemp("ascii") / "model")
    shutil.copytree(PLANTED_ASSET, directory)
    write_ascii_tokenizer(directory)
    return directory


MIXED = ('text,label\nalpha the movie beta,1\nλόγος,0\nbeta was alpha,0\n12345,1\n,0\n'
         'the alpha film was beta,1\nbeta good alpha,0\n')


def test_rows_the_tokenizer_keeps_nothing_of_are_skipped_not_fatal(ascii_dir, tmp_path):
    """A row with letters of which the tokenizer keeps no token ('λόγος' here; a decoder's word-level
    vocabulary in the new-user trial) is skipped with its reason by every tool, like an empty row."""
    from attrtools.data import keep_content, token_problem
    from attrtools.evaluate.run import evaluate_methods

    model, tok = attrtools.load_model(ascii_dir)
    E = attrtools.Example
    assert token_problem(E("λόγος"), tok).startswith("no tokens in text")
    assert token_problem(E("alpha", "λόγος"), tok).startswith("no tokens in text_pair")
    assert token_problem(E("alpha zzz"), tok) is None  # an unknown word is [UNK]: content
    rows = [E("alpha the movie beta", label=1, id="a"), E("λόγος", label=0, id="greek"), E("beta alpha", label=0, id="b")]
    kept = keep_content(rows, tok)
    assert [e.id for e in kept] == ["a", "b"] and kept.skipped[0]["id"] == "greek" and kept.total == 3
    assert keep_content(rows) == rows  # without the tokenizer, letters are content
    evaluation = evaluate_methods(model, tok, rows, ["grad_input"], reference=None, preset="eraser")
    assert evaluation.n_examples == 2 and [r["id"] for r in evaluation.skipped_rows] == ["greek"]
    # Rows are named by their row in the file, also when an earlier rule left rows before them out.
    from attrtools.data import load_examples

    data = tmp_path / "order.csv"
    data.write_text("text,label\n12345,1\n,0\nalpha the movie beta,1\nλόγος,0\nbeta was alpha,0\n", encoding="utf-8")
    loaded = load_examples(str(data))
    assert loaded.rows == [2, 3, 4] and loaded[1:].rows == [3, 4]
    checked = keep_content(loaded, tok)
    assert [(r["index"], r["reason"].split(" (")[0]) for r in checked.skipped] == [
        (0, "no letters in text"), (1, "empty text"), (3, "no tokens in text")]
    assert checked.rows == [2, 4] and [r["index"] for r in keep_content(loaded[1:], tok).skipped] == [3]
    evaluation = evaluate_methods(model, tok, loaded, ["grad_input"], reference=None, preset="eraser")
    assert any("row 4 (no tokens in text" in note for note in evaluation.notes), evaluation.notes  # 1-based


def test_dataset_commands_skip_rows_without_tokens_end_to_end(ascii_dir, tmp_path):
    """evaluate, prune, attribute, tree and triggers on a dataset mixing good rows, a row the tokenizer
    keeps nothing of, a row without letters and an empty field: all run, each summary counts the
    three skipped rows with their reasons, and the results hold the four good rows only."""
    import csv
    import json

    data = tmp_path / "mixed.csv"
    data.write_text(MIXED, encoding="utf-8")
    runs = {
        "evaluate": ["evaluate", "--methods", "grad_input", "--reference", "none", "--preset", "eraser"],
        "prune": ["prune", "--strategies", "attention", "--fractions", "0,0.5", "--latency-repeats", "1",
                  "--no-save-model"],
        "attribute": ["attribute", "--method", "raw"],
        "tree": ["tree", "--steps", "1", "--formats", "json"],
        "triggers": ["triggers", "--steps", "1", "--num-train-examples", "4"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        result = _cli(args + ["--model", ascii_dir, "--dataset", data, "--output-dir", out, "--no-cache"])
        assert result.exit_code == 0, (name, result.output)
        skipped = _line(result.output, "rows skipped")
        assert skipped.startswith("3 without content") and "no tokens in text: 1" in skipped, (name, skipped)
        assert "no letters in text: 1" in skipped and "empty text: 1" in skipped, (name, skipped)
    with open(tmp_path / "evaluate" / "per_example.csv", encoding="utf-8") as f:
        assert {row["example"] for row in csv.DictReader(f)} == {"0", "2", "5", "6"}
    summary = json.loads((tmp_path / "prune" / "summary.json").read_text())
    assert summary["eval_examples"] == 4 and len(summary["skipped_rows"]) == 3
    page = (tmp_path / "prune" / "report.html").read_text(encoding="utf-8")
    assert "rows skipped" in page and "3 (" in page and "no tokens in text: 1" in page
    assert len(os.listdir(tmp_path / "attribute" / "attributions")) == 4
    assert len([f for f in os.listdir(tmp_path / "tree" / "trees") if f.endswith(".json")]) == 4


# ------------------------------------------------------------------------------ decoders without a pad token
@pytest.fixture(scope="module")
def nopad_llama_dir(tmp_path_factory):
    """A tiny Llama classifier whose config and tokenizer both lack a pad token."""
    import json

    directory = build_tiny_model("llama", str(tmp_path_factory.mktemp("nopad") / "llama"))
    for name, key in (("config.json", "pad_token_id"), ("tokenizer_config.json", "pad_token")):
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        values[key] = None
        with open(path, "w", encoding="utf-8") as f:
            json.dump(values, f)
    return directory


def test_decoder_without_a_pad_token_gets_attrtools_error_in_every_path(nopad_llama_dir, tmp_path):
    """Not transformers' "Cannot handle batch sizes > 1 if no padding token is defined" nor a silent
    read of a pad position: attrtools' PoolingError saying what to set, from attribute, evaluate, the
    audit's model wrapper and the command line."""
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.models import PoolingError

    model, tok = attrtools.load_model(nopad_llama_dir)
    assert model.config.pad_token_id is None and tok.pad_token_id is None
    texts = ["the movie was good", "bad"]
    with pytest.raises(PoolingError, match="pad_token_id"):
        attrtools.attribute(model, tok, texts, method="grad_input", batch_size=2)
    with pytest.raises(PoolingError, match="pad_token_id"):
        evaluate_methods(model, tok, [attrtools.Example(t, label=0) for t in texts], ["grad_input"], reference=None)
    try:
        _textattack()
    except pytest.skip.Exception:
        pass
    else:
        from attrtools.adversarial.wrapper import AttrtoolsModelWrapper

        with pytest.raises(PoolingError, match="pad_token_id"):
            AttrtoolsModelWrapper(model, tok)
    model.config.pad_token_id = 0  # the model has a pad id, the tokenizer none: batches pad with the model's
    batched = attrtools.attribute(model, tok, texts, method="grad_input", batch_size=2)
    alone = [attrtools.attribute(model, tok, [t], method="grad_input")[0] for t in texts]
    for a, b in zip(batched, alone):
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-6)
        assert a.probs == pytest.approx(b.probs, abs=1e-5)
    model.config.pad_token_id = None
    for args in (["attribute", "--text", "good", "--text", "bad", "--method", "grad_input"],
                 ["evaluate", "--dataset", _labelled_csv(tmp_path), "--methods", "grad_input", "--reference", "none"]):
        result = _cli(args + ["--model", nopad_llama_dir, "--output-dir", tmp_path / args[0]])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
        assert "pad_token" in result.output, result.output


def _labelled_csv(tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\nalpha the movie beta,1\nbeta was alpha,0\nthe film was good,1\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ options checked before anything runs
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


def test_a_run_dir_holding_only_its_config_is_taken_over_by_another_run(tmp_path):
    """A run that stopped before writing any output (an option refused once the model had loaded)
    leaves only run_config.json: another configuration takes the folder without --overwrite. A
    folder with outputs is still refused."""
    import json

    from attrtools import rundir

    path = str(tmp_path / "run")
    rundir.prepare(path, "evaluate", {"operator": "mask"}).close()
    run = rundir.prepare(path, "evaluate", {"operator": "pad"})
    assert not run.resumed and json.loads(open(os.path.join(path, "run_config.json")).read())["operator"] == "pad"
    with open(os.path.join(path, "faithfulness.csv"), "w") as f:
        f.write("method\n")
    run.close()
    with pytest.raises(rundir.RunDirMismatch, match="operator"):
        rundir.prepare(path, "evaluate", {"operator": "delete"})
    assert os.path.exists(os.path.join(path, "faithfulness.csv"))


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


def test_readme_python_snippets_define_every_name_they_use():
    """The new-user trial: README snippets used dev_examples (and tok, texts) without saying where
    they come from. Each ```python block of README.md and of the pages under docs/ (where most of
    the README's snippets moved, issue 29) must run on its own: pyflakes finds no undefined name."""
    import glob
    import io
    import re

    from pyflakes import api as pyflakes_api  # the dev extra
    from pyflakes.reporter import Reporter

    root = os.path.join(os.path.dirname(__file__), "..")
    pages = [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"),
                                                                 recursive=True))
    blocks = [(page, block) for page in pages
              for block in re.findall(r"```python\n(.*?)```", open(page, encoding="utf-8").read(), flags=re.S)]
    assert len(blocks) >= 5 and any(page.endswith("README.md") for page, _ in blocks)
    for page, block in blocks:
        out = io.StringIO()
        pyflakes_api.check(block, os.path.basename(page), Reporter(out, out))
        assert "undefined name" not in out.getvalue(), (page, block, out.getvalue())
