"""ALTI and DecompX: exact decomposition invariants on every post-LN architecture, refusal of DecompX on Llama."""
import pytest
import torch

from attrtools.engine import Engine
from attrtools.methods import get
from attrtools.methods.alti import alti_contributions, alti_layer_parts, trace_layers
from attrtools.methods.base import Batch
from attrtools.methods.decompx import absdot_weights, decompx_decompose
from attrtools.types import Example

from conftest import PAIRS, SENTENCES

ENCODERS = ("bert", "roberta", "distilbert", "electra")


def _batch(model, tok, inputs):
    engine = Engine(model, tok, progress=False)
    encoded = [engine.encode(Example.coerce(x)) for x in inputs]
    collated = engine.collate(encoded)
    with torch.no_grad():
        logits = model(**collated).logits.float()
    return Batch(collated, [e.length for e in encoded], logits.argmax(-1), logits)


@pytest.mark.parametrize("arch_name", ENCODERS)
def test_alti_decomposition_sums_to_ln1_output_and_rows_sum_to_one(tiny_models, arch_name):
    model, tok = tiny_models[arch_name]
    batch = _batch(model, tok, SENTENCES)  # padded batch: lengths differ
    trace = trace_layers(model, batch.inputs)
    for layer in range(len(trace.hidden_in)):
        for b, n in enumerate(batch.lengths):
            parts, bias, y = alti_layer_parts(model, trace, layer, b, n)
            torch.testing.assert_close(parts.sum(1) + bias, y, atol=1e-4, rtol=1e-4)
            c = alti_contributions(parts, y)
            assert (c >= 0).all()
            torch.testing.assert_close(c.sum(-1), torch.ones(n), atol=1e-5, rtol=0)
    results = Engine(model, tok, progress=False).attribute(SENTENCES + [PAIRS[0]], "alti")
    for r in results:
        assert r.scores.shape == (len(trace.hidden_in), r.n_tokens, r.n_tokens)
        torch.testing.assert_close(r.scores.sum(-1), torch.ones(r.scores.shape[:2]), atol=1e-5, rtol=0)
        assert r.token_scores().shape == (r.n_tokens,)


def test_alti_batched_equals_unbatched(tiny_models):
    model, tok = tiny_models["bert"]
    engine = Engine(model, tok, progress=False)
    together = engine.attribute(SENTENCES, "alti", batch_size=4)
    alone = engine.attribute(SENTENCES, "alti", batch_size=1)
    for a, b in zip(together, alone):
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch_name", ENCODERS)
def test_decompx_sums_to_logit_and_hidden_state(tiny_models, arch_name):
    model, tok = tiny_models[arch_name]
    batch = _batch(model, tok, SENTENCES)
    results, trace = decompx_decompose(model, batch, internal_batch_size=2)  # chunked FFN
    last = len(trace.hidden_in) - 1
    for b, (parts, logit_parts) in enumerate(results):
        n = batch.lengths[b]
        assert parts.shape[:2] == (n, n)
        torch.testing.assert_close(parts.sum(1), trace.ln2_out[last][b, :n], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(logit_parts.sum(0), batch.logits[b], atol=1e-5, rtol=1e-4)
    for target in (0, 1):
        attrs = Engine(model, tok, progress=False).attribute(SENTENCES, "decompx", target=target)
        for r, logits in zip(attrs, batch.logits):
            assert r.scores.shape == (r.n_tokens,)
            assert r.kind == "tokens" and r.target == target
            torch.testing.assert_close(r.scores.sum(), logits[target], atol=1e-5, rtol=1e-4)


def test_decompx_on_trained_model_is_signed_and_exact(planted):
    model, tok = planted
    batch = _batch(model, tok, ["the alpha movie was beta good", "beta was fun and alpha dull"])
    assert batch.logits.abs().max() > 1.0  # a real decision, not a near-zero logit
    attrs = Engine(model, tok, progress=False).attribute(
        ["the alpha movie was beta good", "beta was fun and alpha dull"], "decompx")
    for r, logits in zip(attrs, batch.logits):
        torch.testing.assert_close(r.scores.sum(), logits[r.target], atol=1e-4, rtol=1e-4)


def test_absdot_weights_hand_computed():
    bias = torch.tensor([1.0, 0.0])
    parts = torch.tensor([[3.0, 5.0], [-1.0, 2.0], [0.0, 7.0]])  # b·p = 3, -1, 0
    torch.testing.assert_close(absdot_weights(bias, parts), torch.tensor([0.75, 0.25, 0.0]))
    torch.testing.assert_close(absdot_weights(bias, torch.zeros(2, 2)), torch.tensor([0.5, 0.5]))


def test_llama_refuses_decompx_and_runs_alti(tiny_models):
    """DecompX has no pre-LN form: refused, naming the reason and what works; ALTI has one (its own
    tests: test_alti_logit.py)."""
    model, tok = tiny_models["llama"]
    with pytest.raises(ValueError, match="pre-LN.*alti"):
        Engine(model, tok, progress=False).attribute(["the movie"], "decompx")
    result = Engine(model, tok, progress=False).attribute(["the movie"], "alti")[0]
    torch.testing.assert_close(result.scores.sum(-1), torch.ones(result.scores.shape[:2]), atol=1e-5, rtol=0)
