"""ALTI on pre-LN blocks and ALTI-Logit (Ferrando et al., ACL 2023) on tiny classifiers of every pre-LN
family, built from configs (random weights, 4 heads, grouped KV heads where the family has them).

Invariants: the pre-LN split of the residual after attention is exact in every layer; ALTI rows sum
to 1; the direct logit decomposition (attention by source, b_O, FFN, embedding, biases) reproduces
the model's own logit of every class; batched == unbatched and cached == computed through the engine;
a physically pruned decoder explains like its masked twin. Methods that have no pre-LN form
(GlobEnc, DecompX, Chefer LRP) refuse, naming the reason and what works instead.
"""
import copy

import pytest
import torch

import attrtools
from attrtools import adapters, architecture
from attrtools.cache import AttributionCache
from attrtools.engine import Engine
from attrtools.methods import get
from attrtools.methods.decomposition import alti_matrix, pre_ln_alti_parts, trace_layers
from attrtools.methods.alti_logit import logit_decomposition, trace_for_logits
from attrtools.methods.base import Batch, UnsupportedArchitecture
from attrtools.pruning.importance import masked_copy
from attrtools.pruning.prune import prune_heads
from attrtools.testing import FAMILIES, build_tiny_model
from attrtools.types import Example

TEXTS = ["the movie was very good", "a dull story but the music was fun", "boring", "not bad at all"]
PRE_LN = [f for f in FAMILIES if adapters.ADAPTERS[f].pre_norm]
DECODERS = [f for f in PRE_LN if adapters.ADAPTERS[f].pooling == "last_non_pad"]


@pytest.fixture(scope="module")
def pre_ln_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre_ln")
    loaded = {}

    def get_model(family, **config):
        key = (family, tuple(sorted(config.items())))
        if key not in loaded:
            loaded[key] = attrtools.load_model(build_tiny_model(family, str(root / f"{family}{len(loaded)}"), **config))
        return loaded[key]
    return get_model


def _batch(model, tokenizer, texts=TEXTS):
    engine = Engine(model, tokenizer, progress=False)
    encoded = [engine.encode(Example(t)) for t in texts]
    inputs = engine.collate(encoded)  # padded: lengths differ
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    return Batch(inputs, [e.length for e in encoded], logits.argmax(-1), logits)


def test_every_pre_ln_family_is_covered():
    assert {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "gpt2"} <= set(DECODERS)
    assert "modernbert" in PRE_LN and "modernbert" not in DECODERS


@pytest.mark.parametrize("family", PRE_LN)
def test_pre_ln_alti_split_is_exact_and_rows_sum_to_one(family, pre_ln_models):
    """Σ_j T_i(x_j) + b_O (through Gemma's sandwich norm) = the real residual after attention, every
    layer, every receiver; C^l rows are non-negative and sum to 1; causal models give no weight to
    later tokens."""
    model, tokenizer = pre_ln_models(family)
    batch = _batch(model, tokenizer)
    trace = trace_layers(model, batch.inputs)
    causal = adapters.adapter_for(model).pooling == "last_non_pad"
    for layer in range(len(trace.hidden_in)):
        for b, n in enumerate(batch.lengths):
            parts, constant, y = pre_ln_alti_parts(model, trace, layer, b, n)
            assert parts.shape == (n, n, y.shape[-1])
            assert (parts.sum(1) + constant - y).abs().max().item() < 1e-5
            assert (parts.sum(1) - parts[torch.arange(n), torch.arange(n)]).abs().max() > 1e-3  # mixing happens
            c = alti_matrix(model, trace, layer, b, n, max_elements=3 * n * y.shape[-1])  # chunked receivers
            assert (c >= 0).all()
            torch.testing.assert_close(c.sum(-1), torch.ones(n), atol=1e-5, rtol=0)
            if causal:
                assert c.triu(1).abs().max() == 0
    results = Engine(model, tokenizer, progress=False).attribute(TEXTS, "alti")
    for r in results:
        assert r.scores.shape == (len(trace.hidden_in), r.n_tokens, r.n_tokens)
        torch.testing.assert_close(r.scores.sum(-1), torch.ones(r.scores.shape[:2]), atol=1e-5, rtol=0)
        assert r.token_scores().shape == (r.n_tokens,)


@pytest.mark.parametrize("family", DECODERS)
def test_direct_logit_decomposition_is_complete(family, pre_ln_models):
    """attention by source + b_O + FFN of every layer + embedding + final-norm shift and score bias =
    the model's own logit, for every class; ALTI-Logit's scores sum to the attention terms (ALTI rows
    sum to 1)."""
    model, tokenizer = pre_ln_models(family)
    batch = _batch(model, tokenizer)
    trace = trace_for_logits(model, batch)
    positions = architecture.pool_positions(model, batch.inputs["input_ids"])
    assert positions.tolist() == [n - 1 for n in batch.lengths]
    for b, n in enumerate(batch.lengths):
        for target in range(batch.logits.shape[1]):
            parts = logit_decomposition(model, trace, b, n, target, int(positions[b]))
            assert parts.attention.shape == (len(trace.hidden_in), n)
            assert abs(parts.total() - float(batch.logits[b, target])) < 1e-4
            assert abs(parts.logit - float(batch.logits[b, target])) < 1e-6
            assert parts.attention.abs().max() > 1e-3 and parts.mlp.abs().max() > 1e-3  # the terms are not empty
    for target in (0, 1):
        results = Engine(model, tokenizer, progress=False).attribute(TEXTS, "alti_logit", target=target)
        for b, r in enumerate(results):
            assert r.kind == "tokens" and r.target == target and r.scores.shape == (r.n_tokens,)
            parts = logit_decomposition(model, trace, b, batch.lengths[b], target, int(positions[b]))
            assert abs(float(r.scores.sum()) - float(parts.attention.sum())) < 1e-5


def test_alti_logit_of_one_layer_is_the_direct_attention_term(pre_ln_models):
    """With one layer there is nothing to roll out: the scores are the layer's Δ_j themselves."""
    model, tokenizer = pre_ln_models("llama", layers=1)
    batch = _batch(model, tokenizer)
    trace = trace_for_logits(model, batch)
    results = Engine(model, tokenizer, progress=False).attribute(TEXTS, "alti_logit")
    for b, r in enumerate(results):
        parts = logit_decomposition(model, trace, b, batch.lengths[b], r.target, batch.lengths[b] - 1)
        torch.testing.assert_close(r.scores, parts.attention[0], atol=1e-6, rtol=1e-5)


# alti_logit refuses ModernBERT (test_refusals_name_the_reason): that pair is not parametrized here.
@pytest.mark.parametrize("family,method", [(f, m) for m in ("alti", "alti_logit")
                                           for f in ("llama", "gpt2", "gemma2", "phi3", "modernbert")
                                           if not (m == "alti_logit" and f == "modernbert")])
def test_batched_equals_unbatched_and_cached_equals_computed(family, method, pre_ln_models, tmp_path):
    model, tokenizer = pre_ln_models(family)
    engine = Engine(model, tokenizer, progress=False)
    together = engine.attribute(TEXTS, method, batch_size=4)
    alone = engine.attribute(TEXTS, method, batch_size=1)
    cached_engine = Engine(model, tokenizer, cache=AttributionCache(str(tmp_path / "cache")), progress=False)
    first = cached_engine.attribute(TEXTS, method, batch_size=4)
    again = cached_engine.attribute(TEXTS, method, batch_size=4)
    assert cached_engine.stats["hits"] == len(TEXTS)
    for a, b, c, d in zip(together, alone, first, again):
        scale = b.scores.abs().max()
        assert scale > 0
        assert ((a.scores - b.scores).abs().max() / scale).item() < 1e-5
        torch.testing.assert_close(c.scores, a.scores)
        torch.testing.assert_close(d.scores, c.scores)


@pytest.mark.parametrize("method", ["alti", "alti_logit"])
def test_pruned_decoder_explains_like_its_masked_twin(method, pre_ln_models):
    """A whole KV group of layer 0 physically pruned (GQA) = those heads' W_O columns zeroed."""
    model, tokenizer = pre_ln_models("llama")
    group = architecture.kv_group_size(model)
    assert group > 1
    plan = {0: list(range(group))}
    pruned = copy.deepcopy(model)
    prune_heads(pruned, plan)
    masked = masked_copy(model, plan)
    ours = attrtools.attribute(pruned, tokenizer, TEXTS[:2], method=method)
    theirs = attrtools.attribute(masked, tokenizer, TEXTS[:2], method=method)
    plain = attrtools.attribute(model, tokenizer, TEXTS[:2], method=method)
    for a, b, c in zip(ours, theirs, plain):
        scale = b.scores.abs().max()
        assert ((a.scores - b.scores).abs().max() / scale).item() < 1e-5
        assert (a.scores - c.scores).abs().max() > 1e-4  # the pruning changed the explanation


@pytest.mark.parametrize("family", PRE_LN)
@pytest.mark.parametrize("method", ["globenc", "decompx", "chefer_lrp"])
def test_methods_without_a_pre_ln_form_refuse_naming_the_reason(family, method, pre_ln_models):
    model, tokenizer = pre_ln_models(family)
    with pytest.raises(UnsupportedArchitecture) as err:
        get(method).check_model(model)
    message = str(err.value)
    assert repr(family) in message and "pre-LN" in message and "alti" in message, message
    with pytest.raises(UnsupportedArchitecture):
        attrtools.attribute(model, tokenizer, TEXTS[:1], method=method)


@pytest.mark.parametrize("family", ["bert", "distilbert", "modernbert"])
def test_alti_logit_refuses_models_without_a_linear_path_to_the_logit(family, pre_ln_models, tiny_models):
    model, tokenizer = pre_ln_models(family) if family == "modernbert" else tiny_models[family]
    with pytest.raises(UnsupportedArchitecture) as err:
        get("alti_logit").check_model(model)
    message = str(err.value)
    assert repr(family) in message
    assert ("decompx" if family != "modernbert" else "dense layer, an activation and a LayerNorm") in message
    get("alti").check_model(model)  # ALTI itself applies


def test_alti_logit_explains_the_gold_class_when_asked(pre_ln_models):
    """Target-dependent and signed: the two classes' scores differ, and have both signs."""
    model, tokenizer = pre_ln_models("qwen2")
    zero = attrtools.attribute(model, tokenizer, TEXTS[1], method="alti_logit", target=0)[0].scores
    one = attrtools.attribute(model, tokenizer, TEXTS[1], method="alti_logit", target=1)[0].scores
    assert (zero - one).abs().max() > 1e-4
    assert (torch.cat([zero, one]) < 0).any() and (torch.cat([zero, one]) > 0).any()


def test_invariants_script_reports_small_errors(capsys):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    import alti_invariants

    alti_invariants.main(["--families", "gemma2,modernbert"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0].strip() for r in rows] == ["gemma2", "modernbert"]
    assert all(float(r[1]) < 1e-5 and float(r[2]) < 1e-5 for r in rows)
    assert float(rows[0][3]) < 1e-4 and "refused" in rows[1][3]
