"""ALTI and DecompX: exact decomposition invariants on every post-LN architecture, refusal of DecompX on Llama."""
import pytest
import torch

from attrtools.engine import Engine
from attrtools.methods import get
from attrtools.methods.decomposition import alti_contributions, alti_layer_parts, trace_layers
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


def _reference_decompose(model, batch, mode="absdot"):
    """The unchunked DecompX path (the whole ``(n, n, d)`` decomposition per step, as before the
    receiver chunking), kept here as the reference the chunked path must equal."""
    import torch.nn.functional as F

    from attrtools.methods.decomposition import value_output_weights
    from attrtools.methods.decompx import add_bias, linear_parts, ln_decompose, slope
    from attrtools.adapters import adapter_for
    from attrtools.architecture import get_module, head_dim, layer_module

    first_name, classifier_name = adapter_for(model).classifier_head
    first, classifier = get_module(model, first_name), get_module(model, classifier_name)
    trace = trace_layers(model, batch.inputs, extra={"pre": (first, "out"), "post": (classifier, "in")})
    out = []
    for b, n in enumerate(batch.lengths):
        x = trace.hidden_in[0][b, :n]
        parts = torch.diag_embed(x.transpose(0, 1)).permute(1, 2, 0).contiguous()
        for l in range(len(trace.hidden_in)):
            w_v, b_v, w_o, b_o, heads = value_output_weights(model, l)
            attn = trace.attentions[l][b, :, :n, :n]
            value = F.linear(parts, w_v).view(n, n, heads, head_dim(model))
            mixed = torch.einsum("hij,jkhe->ikhe", attn, value).reshape(n, n, -1)
            z = add_bias(F.linear(mixed, w_o), F.linear(b_v, w_o) + b_o, mode) + parts
            h1 = ln_decompose(z, trace.ln1_in[l][b, :n], layer_module(model, l, "ln_attention"), mode)
            theta = slope(trace.ffn_pre[l][b, :n], trace.ffn_act[l][b, :n])
            zeta = linear_parts(h1, layer_module(model, l, "ffn_in"), mode)
            ffn = linear_parts(zeta * theta.unsqueeze(1), layer_module(model, l, "ffn_out"), mode)
            parts = ln_decompose(ffn + h1, trace.ln2_in[l][b, :n], layer_module(model, l, "ln_ffn"), mode)
        pre = linear_parts(parts[0], first, mode)
        logits = linear_parts(pre * slope(trace.head["pre"][b], trace.head["post"][b]), classifier, mode)
        out.append((parts, logits))
    return out


@pytest.mark.parametrize("arch_name", ENCODERS)
@pytest.mark.parametrize("mode", ["absdot", "uniform"])
def test_decompx_receiver_chunks_equal_the_unchunked_path(tiny_models, arch_name, mode):
    """Chunking over receiver tokens (any chunk size, the default, the last block's receiver 0 only)
    gives the unchunked decomposition to fp32 round-off, on a padded batch of different lengths."""
    model, tok = tiny_models[arch_name]
    batch = _batch(model, tok, SENTENCES + [PAIRS[0]])
    reference = _reference_decompose(model, batch, mode)
    assert max(batch.lengths) > 5  # several chunks of 1, 3 (and 5 FFN rows below), a ragged last chunk
    for chunk in (1, 3, None, 10_000):
        results, _ = decompx_decompose(model, batch, mode, internal_batch_size=chunk)
        for (parts, logits), (ref_parts, ref_logits) in zip(results, reference):
            torch.testing.assert_close(parts, ref_parts, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    lean, _ = decompx_decompose(model, batch, mode, internal_batch_size=2, all_rows=False)
    for (parts, logits), (ref_parts, ref_logits) in zip(lean, reference):
        assert parts.shape == (1,) + ref_parts.shape[1:]
        torch.testing.assert_close(parts[0], ref_parts[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    # default chunking with a small budget: several attention passes, each in several FFN sub-passes
    from attrtools.methods import decompx
    from attrtools.architecture import layer_module

    d_ff = layer_module(model, 0, "ffn_in").out_features
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decompx, "_CHUNK_FLOATS", 5 * max(batch.lengths) * d_ff)
        d = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
        assert 5 * d_ff // d > 5 * d_ff // d_ff > 1  # more FFN sub-passes than attention passes
        small, _ = decompx_decompose(model, batch, mode)
    for (parts, logits), (ref_parts, ref_logits) in zip(small, reference):
        torch.testing.assert_close(parts, ref_parts, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    scores = get("decompx").compute(model, batch, bias_decomp=mode, internal_batch_size=2)
    for b, s in enumerate(scores):
        torch.testing.assert_close(s, reference[b][1][:, int(batch.targets[b])], atol=1e-5, rtol=1e-5)
