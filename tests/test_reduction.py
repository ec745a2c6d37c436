"""Lean payloads (issue 28, attrtools.reduction): a declared reduction equals the full payload reduced,
the tools' results are unchanged (head importance and pruning plan, tree edges), the cache stores the
reduced payload under its own key, and a reduced request is served from a full entry."""
import glob
import os

import pytest
import torch

from attrtools.cache import AttributionCache
from attrtools.engine import Engine
from attrtools.errors import ParameterError
from attrtools.types import Example

TEXTS = ["the alpha movie was good and beta fun", "alpha is fine but the beta plot was long",
         "the film with beta was dull and alpha sad"]
EXAMPLES = [Example(t, label=i % 2, id=str(i)) for i, t in enumerate(TEXTS)]


def _bytes(folder):
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(folder, "*", "*.safetensors")))


@pytest.mark.parametrize("method, params", [("attattr", {"steps": 3, "target": "gold"}), ("raw", {})])
def test_reduced_payload_equals_full_then_reduced(planted, tmp_path, method, params):
    model, tok = planted
    full = Engine(model, tok, cache=None, progress=False).attribute(EXAMPLES, method, **params)
    L, H = full[0].scores.shape[:2]
    for reduce, shape in (("heads_sum", lambda n: (L, 1, n, n)), ("head_max", lambda n: (L, H, 1, 1))):
        cache = AttributionCache(tmp_path / reduce, memory_bytes=0)
        got = Engine(model, tok, cache=cache, progress=False).attribute(EXAMPLES, method, reduce=reduce, **params)
        again = Engine(model, tok, cache=cache, progress=False).attribute(EXAMPLES, method, reduce=reduce, **params)
        for a, b, c in zip(full, got, again):
            assert b.params["reduce"] == reduce and tuple(b.scores.shape) == shape(a.n_tokens)
            assert torch.equal(b.scores, c.scores)  # the cache served what was computed
            if reduce == "heads_sum":
                assert torch.equal(a.layer_matrices(), b.layer_matrices())
                torch.testing.assert_close(a.token_scores(), b.token_scores(), rtol=1e-6, atol=0)  # summation order
                with pytest.raises(ValueError, match="heads summed"):
                    b.head_importance()
            else:
                assert torch.equal(a.head_importance(), b.head_importance())
                with pytest.raises(ValueError, match="head_max"):
                    b.layer_matrices()
    n = sum(len(a.tokens) ** 2 for a in full)
    # each computation writes both reductions (siblings), so one tool's run serves the other's request
    head_max, heads_sum = _bytes(tmp_path / "head_max"), _bytes(tmp_path / "heads_sum")
    assert abs(head_max - heads_sum) <= 64 * len(full)  # the same entries; metadata lengths differ by a few bytes
    assert heads_sum < 4 * L * n + len(full) * (4 * L * H + 8192)
    Engine(model, tok, cache=AttributionCache(tmp_path / "full", memory_bytes=0), progress=False).attribute(
        EXAMPLES, method, **params)
    assert heads_sum < _bytes(tmp_path / "full")  # both reductions together stay below the full payloads


def test_tools_unchanged_and_lean(planted, tmp_path):
    """Head importance (and the pruning plan made from it) and the tree edges equal what the full
    per-head payloads give; the cache holds the reduced payloads only (both reductions, not the full one)."""
    from attrtools.pruning.importance import head_importance
    from attrtools.pruning.plan import make_plan
    from attrtools.tree.build import build_trees

    model, tok = planted
    for strategy in ("attattr", "attention"):
        cache = AttributionCache(tmp_path / strategy, memory_bytes=0)
        lean = head_importance(model, tok, EXAMPLES, strategy, engine=Engine(model, tok, cache=cache), steps=3)
        method, params = ("attattr", {"steps": 3, "target": "gold"}) if strategy == "attattr" else ("raw", {})
        full = Engine(model, tok, cache=None).attribute(EXAMPLES, method, **params)
        reference = sum(a.head_importance().double() for a in full)
        assert torch.equal(lean, reference)
        assert make_plan(lean, fraction=0.5) == make_plan(reference, fraction=0.5)
        L, H = full[0].scores.shape[:2]
        n = sum(len(a.tokens) ** 2 for a in full)  # one number per head, and heads summed for the tree, + headers
        assert _bytes(tmp_path / strategy) < 4 * L * n + len(EXAMPLES) * (4 * L * H + 8192)
    cache = AttributionCache(tmp_path / "tree", memory_bytes=0)
    trees, atts = build_trees(Engine(model, tok, cache=cache), EXAMPLES, steps=3)
    full_trees, full_atts = build_trees(Engine(model, tok, cache=None), EXAMPLES, steps=3, reduce=None)
    assert all(a.params["reduce"] == "heads_sum" for a in atts) and "reduce" not in full_atts[0].params
    edges = lambda g: sorted((u, v, round(d["score"], 12)) for u, v, d in g.edges(data=True))  # noqa: E731
    assert [edges(g) for g in trees] == [edges(g) for g in full_trees]
    assert all(edges(g) for g in trees)


def test_reduced_request_served_from_a_full_entry(planted, tmp_path):
    model, tok = planted
    cache = AttributionCache(tmp_path, memory_bytes=0)
    full = Engine(model, tok, cache=cache).attribute(EXAMPLES, "raw")
    engine = Engine(model, tok, cache=cache)
    lean = engine.attribute(EXAMPLES, "raw", reduce="head_max")
    assert engine.stats["computed"] == 0 and engine.stats["hits"] == len(EXAMPLES)
    assert all(torch.equal(a.head_importance(), b.head_importance()) for a, b in zip(full, lean))
    streamer = Engine(model, tok, cache=cache)  # the streamed/distributed path's existence check agrees
    streamed = list(streamer.stream(EXAMPLES, "raw", reduce="head_max"))
    assert streamer.stats["computed"] == 0
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(lean, streamed))


def test_reduce_is_checked():
    from attrtools.methods import get

    with pytest.raises(ParameterError, match="'matrix' payloads"):
        get("rollout").params(reduce="heads_sum")
    with pytest.raises(ParameterError, match="must be one of"):
        get("raw").params(reduce="mean")
    assert "reduce" not in get("raw").params()  # unreduced keys stay as they were
