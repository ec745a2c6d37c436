"""The engine's one batching path (plan, collate, scatter) and the typed errors; truncation to the
model's limit, cache keys on the resolved class, and the completeness record of integrated gradients."""
from __future__ import annotations

import os
import warnings

import pytest
import torch

import attrtools
from attrtools import errors
from attrtools.cache import AttributionCache
from attrtools.engine import Engine, TruncationWarning, collate, plan_batches
from attrtools.models import position_limit
from attrtools.types import Example

from helpers import LONG
from helpers import textattack_or_skip as _textattack

TEXTS = ["alpha", "the alpha movie beta was good", "beta", "alpha beta the", "a b c d e f g h", "the"]


def test_plan_is_deterministic_length_sorted_and_covers_every_item():
    lengths = [5, 3, 9, 3, 7, 1, 4]
    plan = plan_batches(lengths, 3, steps=2)
    assert plan == plan_batches(list(lengths), 3, steps=2)  # same arguments, same plan, on any process
    members = [m for b in plan for m in b.members]
    assert sorted(members) == list(range(len(lengths)))
    assert [lengths[m] for m in members] == sorted(lengths)  # length-sorted, ties by position
    assert members[1:3] == [1, 3]
    assert [b.index for b in plan] == list(range(len(plan))) and all(b.size <= 3 for b in plan)
    for b in plan:
        assert b.length == max(lengths[m] for m in b.members)
        assert b.cost == b.size * b.length ** 2 * 2


def test_plan_respects_groups_and_token_budget():
    lengths = [2, 2, 2, 2, 8]
    plan = plan_batches(lengths, None, max_tokens=8)
    assert [b.members for b in plan] == [(0, 1, 2, 3), (4,)]
    plan = plan_batches(lengths, 10, groups=["b", "a", "b", "a", "a"])
    assert [b.members for b in plan] == [(1, 3, 4), (0, 2)]
    assert plan_batches([], 4) == []
    with pytest.raises(errors.ParameterError):
        plan_batches([1], 0)


def test_plan_pending_is_plan_batches_over_the_missing_examples(tiny_models):
    """wt-13's sharding plans with the one planner: plan_pending = plan_batches over the pending
    examples (grouped by missing units), members mapped back to example indices."""
    model, tokenizer = tiny_models["bert"]
    engine = Engine(model, tokenizer, batch_size=2)
    encoded = engine.encode_all([Example(t) for t in TEXTS])
    pending = {0: [0, 1], 1: [0, 1], 3: [1], 4: [0, 1], 5: [1]}
    plan = engine.plan_pending(encoded, pending, 2, {"steps": 3})
    todo = sorted(pending)
    reference = plan_batches([encoded[i].length for i in todo], 2, steps=3,
                             groups=[tuple(pending[i]) for i in todo])
    assert [b.members for b in plan] == [tuple(todo[m] for m in r.members) for r in reference]
    assert sorted(i for b in plan for i in b.members) == todo  # every pending example once, no other
    for b, r in zip(plan, reference):
        assert all(pending[i] == pending[b.members[0]] for i in b.members)  # one unit set per batch
        assert (b.index, b.length) == (r.index, r.length)
        assert b.cost == r.cost * len(pending[b.members[0]])


def test_batches_scatter_and_subsets_equal_the_whole(tiny_models):
    model, tokenizer = tiny_models["bert"]
    engine = Engine(model, tokenizer, batch_size=2)
    examples = [Example(t) for t in TEXTS]
    plan = engine.plan(engine.encode_all(examples))
    seen = []
    for batch in engine.batches(examples, plan=plan, subset=[2, 0]):
        seen.append(batch.index)
        assert batch.inputs["input_ids"].shape == (batch.size, batch.plan.length)
        assert [e.example for e in batch.encoded] == [examples[i] for i in batch.members]
    assert seen == [0, 2]  # plan order, whatever order the subset was given in
    whole = engine.logits(examples)
    with torch.no_grad():
        one_by_one = torch.cat([model(**engine.collate([engine.encode(e)])).logits.float() for e in examples])
    torch.testing.assert_close(whole, one_by_one, atol=1e-5, rtol=1e-4)  # batched == unbatched, input order
    # sharded over two "processes": the union of the subsets is the whole plan
    rows = [None] * len(examples)
    for shard in (range(0, len(plan), 2), range(1, len(plan), 2)):
        for batch in engine.batches(examples, plan=plan, subset=shard):
            with torch.no_grad():
                out = model(**batch.inputs).logits.float()
            for r, i in enumerate(batch.members):
                rows[i] = out[r]
    torch.testing.assert_close(torch.stack(rows), whole)


def test_collate_pads_right_and_takes_id_pairs(tiny_models):
    model, tokenizer = tiny_models["bert"]
    engine = Engine(model, tokenizer)
    inputs = collate([((5, 6, 7), (0, 0, 1)), ((8,), None)], pad_token_id=3)
    assert inputs["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert inputs["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert "token_type_ids" not in collate([((1,), None)], None, token_types=False)


def test_encoded_words_follow_the_tokens(tiny_models):
    model, tokenizer = tiny_models["bert"]
    enc = Engine(model, tokenizer).encode(Example("alpha the beta", "the alpha"))
    assert len(enc.word_ids) == len(enc.segments) == enc.length
    assert [w is None for w in enc.word_ids] == [bool(s) for s in enc.special_tokens_mask]
    words = {(s, w): enc.words[(s, w)] for w, s in zip(enc.word_ids, enc.segments) if w is not None}
    assert [words[k] for k in sorted(words)] == ["alpha", "the", "beta", "the", "alpha"]
    # attribute() takes encodings as they are (no second tokenization)
    a, = attrtools.attribute(model, tokenizer, [enc], method="raw")
    assert a.input_ids == enc.input_ids


def test_errors_keep_their_old_types():
    from attrtools.adversarial.pipeline import AuditError
    from attrtools.adversarial.textattack_compat import TextAttackUnavailable
    from attrtools.capture import CaptureNotInstalledError
    from attrtools.data import DataError
    from attrtools.methods.base import UnsupportedArchitecture
    from attrtools.errors import UnsupportedModelError

    for cls, old in [(DataError, ValueError), (UnsupportedArchitecture, ValueError), (UnsupportedModelError, ValueError),
                     (AuditError, ValueError), (TextAttackUnavailable, ImportError),
                     (CaptureNotInstalledError, RuntimeError)]:
        assert issubclass(cls, errors.AttrtoolsError) and issubclass(cls, old)
    assert errors.exit_code_for(errors.ParameterError("x")) == 2 and errors.exit_code_for(DataError("x")) == 1
    assert errors.exit_code_for(errors.CacheError("x")) == 1
    assert errors.exit_code_for(ValueError("x")) is None
    assert issubclass(UnsupportedArchitecture, UnsupportedModelError)
    with pytest.raises(errors.ParameterError):
        attrtools.engine.resolve_target_spec("best", Example("a"), 0)


# ------------------------------------------------------------------------------ truncation
@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_long_input_truncated_and_reported_not_a_crash(short_table, arch):
    """A text longer than a 34-position table ended in 'RuntimeError: The size of tensor a (82) must match ...
    (34)'; now it is truncated to the model's limit (pairs too, longest first), warned about once per
    engine and counted once per example."""
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


# ------------------------------------------------------------------------ cache keys on the resolved class
def test_prune_then_tree_then_triggers_share_cache_entries(planted, tmp_path):
    """Cache keys held the target spec ('gold', 'pred'), so tree after prune on the same 30 sentences computed
    all 30 again; now keys hold the resolved class: every spelling of one class hits one entry. Lean
    payloads (attrtools.reduction): prune asks one number per head, tree heads summed; each computation
    writes both reductions, so the tree reads what prune computed where gold = predicted; triggers cache
    the full matrices, and from then on every reduced request of those examples is served from them."""
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
    build_trees(tree_engine, examples, steps=4, target="pred")  # heads summed: written beside prune's head maxima
    assert tree_engine.stats["hits"] == correct and tree_engine.stats["computed"] == 30 - correct
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


# -------------------------------------------------------------------- completeness of integrated gradients
def test_ig_completeness_gap_stored_warned_and_cached(tiny_dirs, tmp_path):
    """An unconverged integral was reported as exact (ig_embed with too few steps missed completeness
    silently); now the gap is stored per example, warned about above the tolerance (naming the Python
    keyword and the caller's line), reported in the run report and kept through the cache and saved files."""
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


def test_attattr_completeness_gap_per_layer(tiny_dirs, tmp_path):
    """AttAttr's completeness gap per layer was nowhere (1.6e-2 at 200 steps on the demo model, unreported);
    now it is stored per layer with the worst one named, and reassembled when part of the result comes from
    the cache."""
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


def test_calls_return_their_own_counts_and_engine_stats_add_them_up(tiny_models, tmp_path):
    """``attribute``/``stream`` give their per-call counts with the result (``CallStats``), so no
    caller diffs ``engine.stats`` (which still adds up every call)."""
    from attrtools.cache import AttributionCache

    model, tokenizer = tiny_models["bert"]
    engine = Engine(model, tokenizer, cache=AttributionCache(tmp_path), batch_size=2)
    first = engine.attribute(TEXTS[:3], method="raw")
    assert (first.stats.computed, first.stats.hits, first.stats.partial) == (3, 0, 0)
    second = engine.attribute(TEXTS[:4], method="raw")
    assert (second.stats.computed, second.stats.hits) == (1, 3)
    assert (engine.stats["computed"], engine.stats["hits"]) == (4, 3)
    stream = engine.stream(TEXTS, method="raw")
    assert [a.text for a in stream] == TEXTS
    assert (stream.stats.computed, stream.stats.hits) == (2, 4) and stream.stats.plan["world_size"] == 1
    assert sorted(i for b in stream.stats.plan["batches"] for i in b["indices"]) == [4, 5]  # what was computed


def test_a_get_put_object_is_a_cache_behind_the_declared_interface(tiny_models):
    """``entries.EngineCache`` is what the engine asks of a cache: a plain get/put object is
    wrapped once (existence by a read, nothing to invalidate), an ``AttributionCache`` is one."""
    from attrtools.cache import AttributionCache
    from attrtools.entries import EngineCache, as_engine_cache

    class Store:
        def __init__(self):
            self.data = {}

        def get(self, key):
            return self.data.get(key)

        def put(self, key, tensor, meta):
            self.data[key] = (tensor, meta)

    store = Store()
    assert not isinstance(store, EngineCache) and isinstance(as_engine_cache(store), EngineCache)
    assert isinstance(AttributionCache(disk=False), EngineCache) and as_engine_cache(None) is None
    model, tokenizer = tiny_models["bert"]
    first = Engine(model, tokenizer, cache=store).attribute(TEXTS[:2], method="raw")
    again = Engine(model, tokenizer, cache=store).attribute(TEXTS[:2], method="raw")
    assert again.stats.hits == 2 and len(store.data) == 2
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(first, again))


def test_memo_keys_and_the_single_process_protocol():
    """``memo.key`` is the one key builder (attribution keys as before the kinds were named: a
    cache written then still serves them); ``memo.run`` in one process looks up, computes and
    writes item by item, lazily."""
    import hashlib
    import json

    from attrtools import memo

    payload = {"model": "m", "input_ids": [1, 2], "unit": 0, "format": 1}
    assert memo.key("attribution", payload) == \
        hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    assert memo.key("masked-eval", payload) != memo.key("perturbed-forwards", payload)
    with pytest.raises(ValueError):
        memo.key("nonsense", payload)
    store, seen = {"a": 1}, []
    results = memo.run(["a", "b", "c"], lambda x: seen.append(x) or x.upper(), lookup=store.get,
                       write=store.__setitem__)
    assert seen == [] and next(results) == 1 and seen == []  # lazy: nothing computed before it is asked for
    assert list(results) == ["B", "C"] and seen == ["b", "c"] and store == {"a": 1, "b": "B", "c": "C"}
    assert memo.split([3.0, 1.0, 2.0]).mine == [0, 1, 2]  # one process takes everything
