"""Invariants of the seed methods and baselines other than AttAttr/raw: Grad-SAM, Chefer 2021a
(LRP) and 2021b, GlobEnc, rollout, flow, gradient x input, IG on embeddings; every method's parameters
checked by type and range from its schema before anything is computed."""
import pytest
import torch
from click.testing import CliRunner

import attrtools
from attrtools import methods
from attrtools.cache import AttributionCache
from attrtools.cli import main as cli
from attrtools.engine import Engine
from attrtools.methods import get, list_methods, method_modules
from attrtools.methods.base import Batch, ParameterError, target_score
from attrtools.testing import ARCHITECTURES, planted_dataset

from conftest import PAIRS, SENTENCES
from helpers import cache_entries as _entries
from helpers import one_line as _one_line

# Every registered method with a token or layer payload is tested here, found in the registry (no
# list of names to keep up to date); ALTI, ALTI-Logit and DecompX have their own modules (test_alti_decompx.py,
# test_alti_logit.py),
# and per-head ``matrix`` methods (AttAttr, raw attention) theirs (test_attattr.py, test_cache.py).
OWN_TEST_MODULE = {"alti", "alti_logit", "decompx"}
METHODS = [name for name in list_methods() if name not in OWN_TEST_MODULE and get(name).kind != "matrix"]
FAST = {"ig_embed": {"steps": 4}}
POST_LN_ONLY = {"globenc", "chefer_lrp"}


def make_batch(model, tokenizer, inputs, targets=None):
    engine = Engine(model, tokenizer)
    encs = [engine.encode(attrtools.Example.coerce(x)) for x in inputs]
    batch_inputs = engine.collate(encs)
    with torch.no_grad():
        logits = model(**batch_inputs).logits
    targets = logits.argmax(-1) if targets is None else torch.tensor(targets)
    return Batch(batch_inputs, [e.length for e in encs], targets=targets, logits=logits)


@pytest.mark.parametrize("method", METHODS)
def test_runs_or_refuses_cleanly(tiny, arch, method):
    model, tokenizer = tiny
    inputs = SENTENCES[:2] + PAIRS[:1]
    if arch == "llama" and method in POST_LN_ONLY:
        with pytest.raises(ValueError, match="llama"):
            attrtools.attribute(model, tokenizer, inputs, method=method)
        return
    results = attrtools.attribute(model, tokenizer, inputs, method=method, **FAST.get(method, {}))
    impl = get(method)
    for a in results:
        n = len(a.input_ids)
        expected = (model.config.num_hidden_layers, n, n) if impl.kind == "layer_matrix" else (n,)
        assert a.kind == impl.kind and tuple(a.scores.shape) == expected
        assert torch.isfinite(a.scores).all()
        assert a.token_scores().shape == (n,)
        assert (a.target is None) == (impl.target == "none")


# Pairs a method runs on: the refused ones (post-LN-only methods on llama) are tested by
# test_runs_or_refuses_cleanly, and are not parametrized here (no skip standing for a refusal).
@pytest.mark.parametrize("arch,method", [(a, m) for a in ARCHITECTURES for m in METHODS
                                         if not (a == "llama" and m in POST_LN_ONLY)])
def test_batched_equals_unbatched(tiny, arch, method):
    model, tokenizer = tiny
    inputs = SENTENCES + PAIRS  # lengths differ: batch_size 4 pads
    params = FAST.get(method, {})
    batched = attrtools.attribute(model, tokenizer, inputs, method=method, batch_size=4, **params)
    single = attrtools.attribute(model, tokenizer, inputs, method=method, batch_size=1, **params)
    for b, s in zip(batched, single):
        assert b.target == s.target
        scale = s.scores.abs().max().clamp(min=1e-12)
        assert ((b.scores - s.scores).abs().max() / scale).item() < 1e-4


def test_gradsam_nonnegative_and_rows(tiny, arch):
    model, tokenizer = tiny
    for rows in ("all", "cls"):
        for kind in ("logit", "prob"):
            for a in attrtools.attribute(model, tokenizer, SENTENCES, method="gradsam", rows=rows, target_kind=kind):
                assert (a.scores >= 0).all() and a.scores.sum() > 0
    with pytest.raises(ValueError, match="rows"):
        attrtools.attribute(model, tokenizer, SENTENCES[:1], method="gradsam", rows="every")


def test_chefer_grad_relevance_bounds(tiny, arch):
    from attrtools.methods.chefer_grad import relevance_matrices

    model, tokenizer = tiny
    batch = make_batch(model, tokenizer, SENTENCES + PAIRS)
    for r in relevance_matrices(model, batch):
        eye = torch.eye(r.shape[0])
        assert (r - eye >= -1e-7).all()
        assert (r.sum(-1) >= 1 - 1e-6).all()
        assert (r - eye).sum() > 0  # the gradient-weighted attention contributed something


def test_rollout_rows_sum_to_one(tiny, arch):
    model, tokenizer = tiny
    for a in attrtools.attribute(model, tokenizer, SENTENCES + PAIRS, method="rollout"):
        torch.testing.assert_close(a.scores.sum(-1), torch.ones(a.scores.shape[:2]), atol=1e-5, rtol=0)
        assert (a.scores >= 0).all()


def test_globenc_decomposition_is_exact(tiny, arch):
    """Σ_j z_(i<-j) + b_O = the real pre-LN1 vector; Σ_j g1_(i<-j) + g1(b_O) + β1 = the LN1 output."""
    from attrtools.methods.globenc import layer_vectors, record_blocks
    from attrtools.architecture import layer_module

    model, tokenizer = tiny
    if arch == "llama":
        with pytest.raises(ValueError, match="pre-LN"):
            get("globenc").check_model(model)
        return
    batch = make_batch(model, tokenizer, SENTENCES + PAIRS)
    attentions, hidden, rec = record_blocks(model, batch)
    n = batch.max_length
    for l, attention in enumerate(attentions):
        ln1 = layer_module(model, l, "ln_attention")
        b_o = layer_module(model, l, "output").bias
        pre = rec.inputs[l, "ln_attention"]
        z = layer_vectors(model, l, attention, hidden[l], rec, slice(0, n), "N_Res")
        torch.testing.assert_close(z.sum(2) + b_o, pre, atol=1e-4, rtol=1e-4)
        g1 = layer_vectors(model, l, attention, hidden[l], rec, slice(0, n), "N_ResLN")
        sigma = (pre.var(-1, unbiased=False, keepdim=True) + ln1.eps).sqrt()
        g_bias = (b_o - b_o.mean()) / sigma * ln1.weight
        torch.testing.assert_close(g1.sum(2) + g_bias + ln1.bias, ln1(pre), atol=1e-4, rtol=1e-4)
        # chunked rows give the same vectors as all rows at once
        part = layer_vectors(model, l, attention, hidden[l], rec, slice(1, 3), "N_Enc")
        full = layer_vectors(model, l, attention, hidden[l], rec, slice(0, n), "N_Enc")
        torch.testing.assert_close(part, full[:, 1:3])


def test_globenc_variants_and_chunking(planted):
    from attrtools.methods.globenc import layer_norm_matrices

    model, tokenizer = planted
    batch = make_batch(model, tokenizer, SENTENCES + PAIRS)
    whole = layer_norm_matrices(model, batch, "N_Enc")
    chunked = layer_norm_matrices(model, batch, "N_Enc", max_elements=1)  # one receiver row at a time
    for w, c in zip(whole, chunked):
        torch.testing.assert_close(w, c)
        assert (w >= 0).all()
    for variant in ("N", "N_Res", "N_ResLN", "N_Enc"):
        (a,) = attrtools.attribute(model, tokenizer, SENTENCES[:1], method="globenc", variant=variant)
        assert (a.scores >= 0).all()
    with pytest.raises(ValueError, match="variant"):
        attrtools.attribute(model, tokenizer, SENTENCES[:1], method="globenc", variant="N_FFN")


def test_chefer_lrp_combined_maps_equal_separate(tiny, arch):
    """``lrp(combine=True)`` (each layer's attention, gradient and R^A released once combined) gives
    exactly mean_h((∇A ⊙ R^A)⁺) of the separate ``R^A`` and ``∇A``."""
    from attrtools.methods.chefer_lrp import lrp

    model, tokenizer = tiny
    if arch == "llama":
        return
    batch = make_batch(model, tokenizer, SENTENCES + PAIRS)
    cams, grads, r_input = lrp(model, batch)
    combined, empty, r_combined = lrp(model, batch, combine=True)
    assert empty == [] and len(combined) == len(cams)
    for c, g, m in zip(cams, grads, combined):
        torch.testing.assert_close(m, (g * c).clamp(min=0).mean(1), atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(r_combined, r_input, atol=0, rtol=0)


def test_gradsam_layer_by_layer_equals_stacked_mean(tiny, arch):
    """Grad-SAM summed one layer at a time equals the mean of the stacked (B, L, H, n, n) maps."""
    from attrtools.methods.shared import attention_and_gradients, pool_rows

    model, tokenizer = tiny
    batch = make_batch(model, tokenizer, SENTENCES + PAIRS)
    attentions, grads = attention_and_gradients(model, batch)
    maps = torch.stack([a * torch.relu(g) for a, g in zip(attentions, grads)], dim=1)
    rows = pool_rows(model, batch.lengths, batch.inputs["input_ids"])
    method = get("gradsam")
    for kind in ("all", "cls"):
        out = method.compute(model, batch, **method.params(rows=kind))
        for b, (n, row) in enumerate(zip(batch.lengths, rows)):
            m = maps[b, :, :, :n, :n]
            want = m[:, :, row, :].mean((0, 1)) if kind == "cls" else m.mean((0, 1, 2))
            torch.testing.assert_close(out[b], want, atol=1e-8, rtol=1e-5)


def test_chefer_lrp_conserves_relevance(tiny, arch):
    from attrtools.methods.chefer_lrp import Trace, lrp

    model, tokenizer = tiny
    if arch == "llama":
        with pytest.raises(ValueError, match="llama"):
            get("chefer_lrp").check_model(model)
        return
    batch = make_batch(model, tokenizer, SENTENCES + PAIRS)
    trace = Trace()
    cams, grads, r_input = lrp(model, batch, trace)
    names = [name for name, _, _ in trace.ops]
    num_layers = model.config.num_hidden_layers if arch != "distilbert" else model.config.n_layers
    assert len(names) == 3 + 10 * num_layers  # 2 head linears + pool + 10 relprops per block
    for name, r_out, r_in in trace.ops:
        assert torch.allclose(r_in, r_out, atol=1e-5, rtol=1e-4), (name, r_out, r_in)
    # one-hot start: total relevance 1 everywhere, also at the input of layer 0
    torch.testing.assert_close(r_input.sum((1, 2)), torch.ones(batch.size), atol=1e-4, rtol=1e-4)
    # padding gets no relevance
    for b, n in enumerate(batch.lengths):
        assert r_input[b, n:].abs().sum() == 0
    for a in attrtools.attribute(model, tokenizer, SENTENCES, method="chefer_lrp", start_layer=0):
        assert (a.scores >= 0).all()


def test_lrp_linear_rule_is_positive_and_conservative():
    from attrtools.methods.chefer_lrp import relprop_add, relprop_linear

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 5, 7, generator=g), torch.randn(4, 7, generator=g)
    r = torch.rand(3, 5, 4, generator=g)
    z = x.clamp(min=0) @ w.clamp(min=0).T + x.clamp(max=0) @ w.clamp(max=0).T
    assert (z == 0).any()  # where no contribution is positive the relevance is dropped (official rule)
    r = r * (z > 0)
    out = relprop_linear(x, w, r)
    assert (out >= 0).all()  # α1β0: non-negative relevance stays non-negative
    torch.testing.assert_close(out.sum((1, 2)), r.sum((1, 2)))
    a, b = relprop_add(torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g), torch.rand(3, 5, 7, generator=g))
    assert a.shape == b.shape == (3, 5, 7)


def test_chefer_lrp_start_layer(planted):
    model, tokenizer = planted
    last = attrtools.attribute(model, tokenizer, SENTENCES[:2], method="chefer_lrp")
    same = attrtools.attribute(model, tokenizer, SENTENCES[:2], method="chefer_lrp", start_layer=1)
    first = attrtools.attribute(model, tokenizer, SENTENCES[:2], method="chefer_lrp", start_layer=0)
    for a, b, c in zip(last, same, first):
        torch.testing.assert_close(a.scores, b.scores)
        assert not torch.allclose(a.scores, c.scores)
        assert a.scores[0] == a.scores.min()  # C[0, 0] := min of the row (official)
    with pytest.raises(ValueError, match="start_layer"):
        attrtools.attribute(model, tokenizer, SENTENCES[:1], method="chefer_lrp", start_layer=5)


def test_flow_solvers_agree_and_respect_capacities(tiny, arch):
    from attrtools.methods.flow import flow_values
    from attrtools.methods.shared import pool_rows
    from attrtools.methods.shared import residual_attention

    model, tokenizer = tiny
    batch = make_batch(model, tokenizer, SENTENCES[:2] + PAIRS[:1])
    for caps, row in zip(residual_attention(model, batch), pool_rows(model, batch.lengths)):
        nx_flow = flow_values(caps, row, "networkx")
        sp_flow = flow_values(caps, row)  # the default: scipy
        torch.testing.assert_close(nx_flow, sp_flow, atol=1e-6, rtol=0)
        assert (nx_flow >= 0).all()
        assert (nx_flow <= caps[-1][row].sum() + 1e-6).all()  # out of the source: 1
        assert (nx_flow <= caps[0].sum(0) + 1e-6).all()  # into each input node
        assert (nx_flow <= 1 + 1e-6).all() and nx_flow.sum() > 0
    default = attrtools.attribute(model, tokenizer, SENTENCES[:2], method="flow")
    official = attrtools.attribute(model, tokenizer, SENTENCES[:2], method="flow", solver="networkx")
    for a, b in zip(default, official):
        assert a.params["solver"] == "scipy" and a.scores.sum().item() == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-6, rtol=0)  # the fast default: same scores


@pytest.mark.parametrize("arch_name", ["bert", "distilbert"])
def test_ig_embed_completeness(tiny_models, arch_name):
    from attrtools.methods.ig_embed import baseline_embeddings, score_with_embeddings, word_embeddings_replaced

    model, tokenizer = tiny_models[arch_name]
    texts = SENTENCES[:2]
    batch = make_batch(model, tokenizer, texts)
    with torch.no_grad(), word_embeddings_replaced(model) as rec:
        full = target_score(model(**batch.inputs).logits, batch.targets, "logit")
    # (Not Llama: its RMSNorm makes the path from the zero vector jump at alpha ~ 0, and its
    # [PAD] embedding is the zero vector too; see the ig_embed docstring.)
    for baseline in ("zero", "pad"):
        base = baseline_embeddings(model, rec.original, baseline)
        gap = full - score_with_embeddings(model, batch.inputs, base, batch.targets)
        errors = []
        for steps in (2, 48):
            results = attrtools.attribute(model, tokenizer, texts, method="ig_embed", steps=steps,
                                          steps_method="gausslegendre", baseline=baseline, target=batch.targets.tolist())
            errors.append(max(abs(a.scores.sum().item() - g.item()) for a, g in zip(results, gap)))
        assert errors[1] < 1e-3 * max(1.0, gap.abs().max().item()), (baseline, errors, gap)
        assert errors[1] <= errors[0] + 1e-6
    l2 = attrtools.attribute(model, tokenizer, texts, method="ig_embed", steps=4, aggregate="l2")
    assert all((a.scores >= 0).all() for a in l2)


def test_grad_input_is_first_order_term(tiny, arch):
    """Σ_j grad_input(sum)_j = <∇y, e> = d/dε y((1+ε) e) at ε=0 (central difference)."""
    from attrtools.methods.shared import embedding_leaf

    model, tokenizer = tiny
    batch = make_batch(model, tokenizer, SENTENCES + PAIRS)
    results = attrtools.attribute(model, tokenizer, SENTENCES + PAIRS, method="grad_input", aggregate="sum",
                                  target=batch.targets.tolist(), batch_size=8)
    eps = 1e-3
    values = []
    for sign in (1, -1):
        with torch.no_grad(), embedding_leaf(model, transform=lambda e: e * (1 + sign * eps)):
            values.append(target_score(model(**batch.inputs).logits, batch.targets, "logit").double())
    derivative = (values[0] - values[1]) / (2 * eps)
    ours = torch.tensor([a.scores.sum().item() for a in results], dtype=torch.float64)
    torch.testing.assert_close(ours, derivative, atol=2e-3 * max(1.0, derivative.abs().max().item()), rtol=2e-2)
    l2 = attrtools.attribute(model, tokenizer, SENTENCES[:2], method="grad_input")
    assert all((a.scores >= 0).all() for a in l2)


@pytest.mark.parametrize("method,params,both,needed", [
    ("gradsam", {}, False, 12), ("grad_input", {}, False, 14), ("ig_embed", {"steps": 8, "aggregate": "l2"}, False, 13),
    ("globenc", {}, False, 14), ("rollout", {}, True, 13), ("flow", {"solver": "scipy"}, True, 12),
])
def test_planted_tokens_score_high(planted, method, params, both, needed):
    """On the planted task (label = "alpha" before "beta") the planted tokens must stand out among
    the non-special tokens of 16 held-out sentences: both above the mean (``both``) or the better
    of the two above the mean. (Chefer 2021a/b concentrate on the [CLS]-reachable last-layer
    paths and pass this in only ~6-10/16 on this 2-layer model: not asserted; see the report.)"""
    model, tokenizer = planted
    texts = [text for text, _ in planted_dataset(16, seed=11)]
    hits = 0
    for a in attrtools.attribute(model, tokenizer, texts, method=method, **params):
        s = a.token_scores()
        words = [i for i, tok in enumerate(a.tokens) if tok not in tokenizer.all_special_tokens]
        planted_idx = [i for i in words if a.tokens[i] in ("alpha", "beta")]
        mean = s[words].mean()
        hits += int(all(s[i] > mean for i in planted_idx) if both else max(s[i] for i in planted_idx) > mean)
    assert hits >= needed, f"{method}: planted tokens above average in only {hits}/16 examples"


def test_registry_and_describe():
    from attrtools.methods import list_methods

    names = list_methods()
    for method in METHODS:
        assert method in names
        info = get(method).describe()
        assert info["paper"] and info["kind"] in ("tokens", "layer_matrix") and info["invariant"]


def test_every_method_module_registers_and_is_discovered():
    """One file = one method: each module of attrtools.methods (but base/shared) registers a method,
    and the registry found every one of them without a list."""
    modules = set(method_modules())
    registered = {type(get(name)).__module__.rsplit(".", 1)[1] for name in list_methods()}
    assert registered == modules and "base" not in modules and "shared" not in modules
    assert {"attattr", "gradsam", "globenc"} <= set(list_methods())
    for name in list_methods():
        impl = get(name)
        if "target_kind" in impl.defaults:  # declared once: the class's target follows its default
            assert impl.target == impl.defaults["target_kind"], name
        assert impl.target in ("prob", "logit", "none"), name


# ------------------------------------------------------------------------------ signed or not
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


# ------------------------------------------------------------------------------ parameters
def test_every_method_declares_a_schema_for_each_default():
    """Method parameters had defaults but no declared type or range, so nothing checked a value (``--param
    steps=abc`` gave Python's own message); now every default has a schema entry and is valid under it."""
    for name in methods.list_methods():
        impl = methods.get(name)
        assert set(impl.schema) == set(impl.defaults), name
        resolved = impl.params()  # every default is valid under its own schema
        # a None default is "the method's own choice", which params() may make concrete (the
        # integration rule: attattr/ig_embed's steps_method), valid under the same schema
        assert {k: v for k, v in resolved.items() if impl.defaults[k] is not None} == \
            {k: v for k, v in impl.defaults.items() if v is not None}, name
        assert all(impl.schema[k].valid(v) for k, v in resolved.items()), name


BAD_PARAMS = [
    ("attattr", "internal_batch_size", -1), ("attattr", "internal_batch_size", 0),
    ("decompx", "internal_batch_size", -1), ("ig_embed", "internal_batch_size", 0),
    ("attattr", "steps", "abc"), ("attattr", "steps", 1.5), ("attattr", "steps", 0), ("attattr", "steps", -3),
    ("attattr", "steps", True), ("attattr", "steps", None), ("ig_embed", "steps", 0),
    ("attattr", "steps_method", "simpson"), ("attattr", "target_kind", "log"), ("attattr", "autocast", "fp8"),
    ("gradsam", "rows", "some"), ("grad_input", "aggregate", "max"), ("ig_embed", "baseline", "mean"),
    ("flow", "scale", 0), ("flow", "scale", float("nan")), ("flow", "solver", "cplex"),
    ("globenc", "variant", "X"), ("decompx", "bias_decomp", 1), ("chefer_lrp", "start_layer", "last"),
    ("chefer_grad", "target_kind", None),
]


@pytest.mark.parametrize("method,name,value", BAD_PARAMS)
def test_bad_parameter_values_are_refused_naming_the_parameter(method, name, value):
    """``internal_batch_size=-1`` made AttAttr return zeros and DecompX uninitialised memory, ``steps=abc`` or
    ``1.5`` gave Python's messages; now each value a method cannot use is one line of ParameterError naming
    the parameter and the method."""
    with pytest.raises(ParameterError) as info:
        methods.get(method).params(**{name: value})
    message = str(info.value)
    assert f"'{name}'" in message and method in message and "\n" not in message, message


def test_cross_parameter_check_and_unknown_parameter():
    """An unknown parameter was a plain TypeError and ``riemann_trapezoid`` with ``steps=1`` (it needs two
    nodes) was not checked; now both are ParameterErrors, and valid values pass."""
    with pytest.raises(ParameterError, match="riemann_trapezoid needs steps >= 2"):
        methods.get("attattr").params(steps=1, steps_method="riemann_trapezoid")
    with pytest.raises(ParameterError, match="unknown parameter.*stepz"):
        methods.get("attattr").params(stepz=3)
    assert methods.get("attattr").params(internal_batch_size=3, steps=5)["steps"] == 5


def test_bad_parameter_computes_and_caches_nothing(planted, planted_dir, tmp_path, monkeypatch):
    """`--param internal_batch_size=-1` used to return zeros and cache them under the normal key."""
    model, tok = planted
    impl = methods.get("attattr")
    monkeypatch.setattr(impl, "compute", lambda *a, **k: pytest.fail("computed with an impossible value"))
    cache_dir = tmp_path / "c"
    with pytest.raises(ParameterError, match="internal_batch_size"):
        Engine(model, tok, cache=AttributionCache(cache_dir)).attribute(SENTENCES[:1], internal_batch_size=-1)
    assert _entries(cache_dir) == []
    runner = CliRunner()
    for param in ("internal_batch_size=-1", "steps=abc", "steps=1.5", "steps=0"):
        result = runner.invoke(cli, ["attribute", "--model", planted_dir, "--text", "alpha beta", "--param", param,
                                     "--cache-dir", str(cache_dir), "--output-dir", str(tmp_path / "run")])
        assert result.exit_code == 2 and _one_line(result.output), (param, result.output)
        assert param.split("=")[0] in result.output, result.output
    assert _entries(cache_dir) == [] and not (tmp_path / "run").exists()


def test_ig_embed_rows_per_pass_counts_attention_and_leaves_scores_unchanged(tiny_models):
    """ig_embed ran about 4096 tokens per pass whatever the length: 8 rows of 512 tokens kept 8·L·H·n²
    attention floats for backward (11.6 x result + model on all-MiniLM-L6-v2). ``rows_per_pass`` also
    bounds the attention; the scores do not depend on how rows are grouped."""
    from transformers import BertConfig, BertForSequenceClassification

    from attrtools.methods.shared import rows_per_pass

    minilm = BertForSequenceClassification(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                                      intermediate_size=1536))
    assert [rows_per_pass(minilm, n) for n in (32, 64, 128, 512)] == [128, 64, 28, 1]
    model, tokenizer = tiny_models["bert"]
    engine = attrtools.Engine(model, tokenizer)
    text = "the movie was surprisingly good"
    (default,) = engine.attribute([text], method="ig_embed", steps=6, steps_method="gausslegendre")
    (one,) = engine.attribute([text], method="ig_embed", steps=6, steps_method="gausslegendre", internal_batch_size=1)
    assert engine.stats["hits"] == 0  # both computed (internal_batch_size is not part of the key)
    assert torch.allclose(default.scores, one.scores, atol=1e-5)
