"""The engine's one batching path (plan, collate, scatter) and the typed errors."""
from __future__ import annotations

import pytest
import torch

import attrtools
from attrtools import errors
from attrtools.engine import Engine, collate, plan_batches
from attrtools.types import Example

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
    from attrtools.models import UnsupportedModelError

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
