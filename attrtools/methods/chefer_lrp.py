"""Chefer, Gur, Wolf 2021a: Transformer Interpretability Beyond Attention Visualization (CVPR 2021,
arXiv 2012.09838). Relevance propagation (LRP) through the whole classifier, then gradient-weighted
relevance of the attention maps rolled out.

Relevance rules, as the official code (hila-chefer/Transformer-Explainability,
``BERT_explainability/modules/layers_ours.py`` + ``BERT/BERT.py``), with
``safe_divide(a, b) = a / (b + ε) · [b ≠ 0]``, ``ε = 1e-9``:

- start: ``R = one_hot(c)`` at the classifier output (the explained class, logit);
- linear layers (classifier, pooler / classification head, Q, K, V, W_O, FFN in/out): LRP-α1β0,
  biases ignored: ``Z = W⁺x⁺ + W⁻x⁻``, ``R_x = x⁺ ⊙ W⁺ᵀ(R/Z) + x⁻ ⊙ W⁻ᵀ(R/Z)``;
- non-linearities (tanh/GELU/ReLU, softmax, LayerNorm, dropout): identity;
- pooling (index select of token 0): relevance goes to token 0 only;
- matrix products ``Q·Kᵀ`` and ``A·V``: generic rule ``R_X = X ⊙ ∂Z/∂X (R/Z)`` for both operands,
  each then **halved**; ``R^A`` (relevance of the attention probabilities, after halving) is kept;
- additions (the two residual connections): generic rule for both operands, each rescaled so
  that the total is conserved and the split follows ``|ΣR_a| : |ΣR_b|``;
- the additive attention mask: identity (it is 0 on the real tokens, where all relevance is);
- a tensor used several times (block input → Q, K, V and the residual): relevances summed.

Final map (official ``ExplanationGenerator.generate_LRP``)::

    Ā_b = mean_h( (∇A_b ⊙ R^A_b)⁺ )              ∇A_b = ∂y_c/∂A_b (logit of class c)
    Â_b = (Ā_b + I) / rowsum(Ā_b + I);  C = Â_{L-1} ··· Â_s      (s = start_layer)
    C[0, 0] = min(C[0, :]);  scores = C[0, :]

``start_layer`` defaults to ``-1`` = the last block (the official BERT default is 11 = the last
block of a 12-layer BERT; the official notebook also uses 0 — pass ``start_layer=0``).

Deviations: batched (official: batch 1); the sums of the residual-addition rule are per example
(identical at batch 1); the module internals are recorded with forward hooks on the unmodified
Hugging Face model (no re-implementation), and every relprop is written out in closed form rather
than through autograd. Architectures: BERT, RoBERTa, ELECTRA, DistilBERT (the head table below;
the official code covers BERT only: the RoBERTa/ELECTRA heads are dense→tanh/GELU→out_proj on
token 0, DistilBERT's is pre_classifier→ReLU→classifier, all handled by the same rules).
Llama (pre-LN, RMSNorm, rotary, last-token pooling) is refused.
"""
from __future__ import annotations

import torch

from ..capture import BlockRecorder, capture
from ..adapters import adapter_for
from ..architecture import expand_kept, get_module, heads_per_layer, layer_module, num_layers_heads, select_kept
from . import register
from .base import Batch, Method, Int, UnsupportedArchitecture
from .shared import embedding_leaf

EPS = 1e-9


def head_paths(model) -> tuple:
    """Linear layers of the classification head, applied in order to the token-0 vector of the last
    hidden state (non-linearities between them are identity for LRP): the adapter's ``classifier_head``."""
    return adapter_for(model).classifier_head


def safe_divide(a, b):
    """``a / (b + ε)``, 0 where ``b = 0`` (ε again where ``b + ε = 0``): one new tensor, the rest in place."""
    return _safe_divide_into(a, b + EPS, b.ne(0))


def _safe_divide_into(a, den, nonzero):
    """``safe_divide`` with ``den = b + ε`` already formed and overwritten by the quotient (no copy)."""
    den.masked_fill_(den.eq(0), EPS)  # den + [den = 0]·ε: ε where den = 0, den unchanged elsewhere
    return torch.div(a, den, out=den).mul_(nonzero)


def _per_example_sum(t):
    return t.reshape(t.shape[0], -1).sum(1)


class Trace:
    """Optional record of every relprop: (op, total relevance in, total relevance out) per example."""

    def __init__(self):
        self.ops = []

    def add(self, name, r_out, *r_in):
        self.ops.append((name, _per_example_sum(r_out).detach(), sum(_per_example_sum(r) for r in r_in).detach()))


def relprop_linear(x, weight, r, trace=None, name="linear"):
    """LRP-α1β0 (positive contributions only, bias ignored)."""
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    px, nx = x.clamp(min=0), x.clamp(max=0)
    s = safe_divide(r, px @ pw.T + nx @ nw.T)
    out = px * (s @ pw) + nx * (s @ nw)
    if trace is not None:
        trace.add(name, r, out)
    return out


def relprop_matmul(a, b, r, trace=None, name="matmul"):
    """Z = a @ b (batched); generic rule for both operands, each halved."""
    z = a @ b
    nonzero = z.ne(0)
    s = _safe_divide_into(r, z.add_(EPS), nonzero)  # z's storage becomes s
    ra = (s @ b.transpose(-1, -2)).mul_(a).div_(2)  # products in place: one (…, n, n) tensor alive, not three
    rb = (a.transpose(-1, -2) @ s).mul_(b).div_(2)
    if trace is not None:
        trace.add(name, r, ra, rb)
    return ra, rb


def relprop_add(x0, x1, r, trace=None, name="add"):
    """Normalised two-operand rule for residual additions (conserves Σ R per example)."""
    s = safe_divide(r, x0 + x1)
    a, b = x0 * s, x1 * s
    shape = (-1,) + (1,) * (r.dim() - 1)
    a_sum, b_sum, r_sum = _per_example_sum(a), _per_example_sum(b), _per_example_sum(r)
    total = a_sum.abs() + b_sum.abs()
    a_fact = safe_divide(a_sum.abs(), total) * r_sum
    b_fact = safe_divide(b_sum.abs(), total) * r_sum
    a = a * safe_divide(a_fact, a_sum).view(shape)
    b = b * safe_divide(b_fact, b_sum).view(shape)
    if trace is not None:
        trace.add(name, r, a, b)
    return a, b


# the linears and norm of each block whose input and output the relevance rules read
LRP_PARTS = ("query", "key", "value", "output", "ffn_in", "ffn_out", "ln_attention")


def _recorder(model) -> BlockRecorder:
    """Forward hooks on the unmodified model: inputs/outputs of every linear the rules need (the
    block parts of ``LRP_PARTS`` per layer, and the classifier head's linears as ``("head", index)``)."""
    heads = {("head", index): (get_module(model, path), "both") for index, path in enumerate(head_paths(model))}
    return BlockRecorder(model, dict.fromkeys(LRP_PARTS, "both"), heads)


def _split(t, heads):  # (B, n, H*d) -> (B, H, n, d)
    B, n, width = t.shape
    return t.view(B, n, heads, width // heads if heads else 0).transpose(1, 2)


def _merge(t):  # (B, H, n, d) -> (B, n, H*d)
    B, H, n, d = t.shape
    return t.transpose(1, 2).reshape(B, n, H * d)


def head_mean_map(cam, grad):
    """Chefer's ``Ā = mean_h((∇A ⊙ R^A)⁺)``: ``(B, n, n)`` from ``(B, H, n, n)``; ``cam`` is overwritten."""
    return cam.mul_(grad).clamp_(min=0).mean(1)


def lrp(model, batch: Batch, trace: Trace | None = None, combine: bool = False):
    """Forward + backward + relprop. Returns ``(attn_cams, attn_grads, R_input)``: per layer
    ``R^A`` and ``∂y_c/∂A`` (B, H, n, n), and the relevance of the hidden states entering layer 0.

    ``combine=True`` (what the method uses): ``attn_cams`` are the head means :func:`head_mean_map`
    ``(B, n, n)`` instead and ``attn_grads`` is empty. The relprop then runs before the backward, and
    a hook forms each layer's ``Ā`` when its gradient arrives: the peak holds the forward's graph and
    every ``R^A`` once, never also every attention gradient (same numbers, bit for bit)."""
    if batch.targets is None:
        raise ValueError("chefer_lrp needs target classes")
    with _recorder(model) as rec, embedding_leaf(model), torch.enable_grad(), \
            capture(model, record="all", retain_grad=True, record_hidden=True) as cap:
        logits = model(**batch.inputs).logits
        attentions = cap.attention_list()
        score = logits.float().gather(1, batch.targets.view(-1, 1)).sum()
        if not combine:
            grads = [g.float() for g in torch.autograd.grad(score, attentions)]
    data = {key: (rec.inputs[key], rec.outputs[key]) for key in rec.outputs}  # key -> (input, output)
    hidden_inputs = cap.hidden_inputs
    del rec, cap  # the recorder and the capture no longer hold the activations and attention: data does
    cams, r = _relprop(model, batch, data, hidden_inputs, attentions, logits.shape[-1], trace, combine)
    if not combine:
        return cams, grads, r
    # the backward after the relprop: each layer's Ā is formed when its gradient arrives, and the graph
    # frees that layer's attention as it goes (never all gradients and all attentions at once)
    for l, attention in enumerate(attentions):
        attention.register_hook(lambda grad, l=l: cams.__setitem__(l, head_mean_map(cams[l], grad.float())))
    first = attentions[0]
    attentions.clear()
    torch.autograd.grad(score, first)
    return cams, [], r


def _relprop(model, batch, data, hidden_inputs, attentions, classes, trace, release):
    """The relprop of :func:`lrp`, from the classifier down: ``(cams, R_input)`` with ``R^A`` per layer;
    ``release``: each layer's recorded activations dropped once the relevance has passed it."""
    num_layers = num_layers_heads(model)[0]
    physical_heads = heads_per_layer(model)  # a pruned model: heads present per layer
    head_paths_ = head_paths(model)
    with torch.no_grad():
        last_hidden = data[(num_layers - 1, "ffn_out")]  # LN2 output is not recorded: check pooling below
        pooled_in = data[("head", 0)][0].float()
        r = torch.nn.functional.one_hot(batch.targets, classes).float()
        for index in reversed(range(len(head_paths_))):
            x = data[("head", index)][0].float()
            r = relprop_linear(x, get_module(model, head_paths_[index]).weight.float(), r, trace, f"head.{index}")
        ln2 = layer_module(model, num_layers - 1, "ln_ffn")
        final = ln2(last_hidden[1] + data[(num_layers - 1, "ffn_in")][0]).float()
        if not torch.allclose(final[:, 0], pooled_in, atol=1e-4, rtol=1e-4):
            raise ValueError("chefer_lrp: the classification head does not read token 0 of the last layer")
        hidden_r = torch.zeros_like(final)
        hidden_r[:, 0] = pooled_in * safe_divide(r, pooled_in)
        if trace is not None:
            trace.add("pool", r, hidden_r)
        cams = [None] * num_layers
        r = hidden_r
        for l in reversed(range(num_layers)):
            weight = lambda part: layer_module(model, l, part).weight.float()
            ffn_out_in, ffn_out_out = data[(l, "ffn_out")]
            ln1_out = data[(l, "ffn_in")][0].float()
            # LN2 (identity), residual add: FFN output + LN1 output
            r_ffn, r_res2 = relprop_add(ffn_out_out.float(), ln1_out, r, trace, f"{l}.add_ffn")
            r_ffn = relprop_linear(ffn_out_in.float(), weight("ffn_out"), r_ffn, trace, f"{l}.ffn_out")
            r_ffn = relprop_linear(ln1_out, weight("ffn_in"), r_ffn, trace, f"{l}.ffn_in")  # GELU: identity
            r = r_ffn + r_res2  # clone
            # LN1 (identity), residual add: W_O output + block input
            hidden = hidden_inputs[l].float()
            ctx, attn_out = data[(l, "output")]
            r_attn, r_res1 = relprop_add(attn_out.float(), hidden, r, trace, f"{l}.add_attn")
            r_ctx = relprop_linear(ctx.float(), weight("output"), r_attn, trace, f"{l}.output")
            heads = physical_heads[l]
            a = select_kept(model, l, attentions[l].detach().float())
            v = _split(data[(l, "value")][1].float(), heads)
            r_a, r_v = relprop_matmul(a, v, _split(r_ctx, heads), trace, f"{l}.A@V")
            del a
            cams[l] = expand_kept(model, l, r_a)  # original head numbering, 0 for pruned heads
            # softmax, mask add: identity; scores = Q·Kᵀ
            q = _split(data[(l, "query")][1].float(), heads)
            k = _split(data[(l, "key")][1].float(), heads)
            r_q, r_kt = relprop_matmul(q, k.transpose(-1, -2), r_a, trace, f"{l}.Q@K")
            r_q = relprop_linear(hidden, weight("query"), _merge(r_q), trace, f"{l}.query")
            r_k = relprop_linear(hidden, weight("key"), _merge(r_kt.transpose(-1, -2)), trace, f"{l}.key")
            r_v = relprop_linear(hidden, weight("value"), _merge(r_v), trace, f"{l}.value")
            r = r_q + r_k + r_v + r_res1  # clone
            if release:
                for part in LRP_PARTS:
                    data.pop((l, part), None)
    return cams, r


def rollout_from(cams: list[torch.Tensor], start_layer: int) -> torch.Tensor:
    """Chefer's ``compute_rollout_attention``: (Ā + I)/rowsum, multiplied from ``start_layer`` up."""
    n = cams[0].shape[-1]
    eye = torch.eye(n, device=cams[0].device)
    mats = [(c + eye) / (c + eye).sum(-1, keepdim=True) for c in cams]
    joint = mats[start_layer]
    for m in mats[start_layer + 1:]:
        joint = m @ joint
    return joint


@register
class CheferLRP(Method):
    name = "chefer_lrp"
    title = "Chefer 2021a (LRP relevance x gradient, rolled out)"
    paper = "Chefer, Gur, Wolf. Transformer Interpretability Beyond Attention Visualization. CVPR 2021"
    kind = "tokens"
    signed = False  # relu / clamp(min=0): non-negative relevance
    target = "logit"
    defaults = {"start_layer": -1}
    schema = {"start_layer": Int()}  # the range depends on the model: checked in compute
    invariant = "relevance conserved by every relprop (sum in = sum out); scores >= 0"

    def check_model(self, model):
        super().check_model(model)
        adapter = adapter_for(model)
        if adapter.pre_norm or adapter.classifier_head is None or adapter.fused_qkv:
            raise UnsupportedArchitecture(
                f"chefer_lrp needs per-module LRP rules for model_type {adapter.model_type!r}: it has them for "
                "post-LN encoders with separate q/k/v projections and a linear classification head on token 0 "
                "(a pre-LN decoder with RMSNorm, rotary embeddings and last-token pooling has no rules in the "
                "official code)")

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        num_layers = num_layers_heads(model)[0]
        start = int(params["start_layer"])
        if not -num_layers <= start < num_layers:
            raise ValueError(f"start_layer {start} out of range for a {num_layers}-layer model")
        start %= num_layers
        cams, _, _ = lrp(model, batch, combine=True)  # per layer mean_h((∇A ⊙ R^A)⁺), (B, n, n)
        out = []
        for b, n in enumerate(batch.lengths):
            layer_cams = [c[b, :n, :n] for c in cams]
            joint = rollout_from(layer_cams, start)
            row = joint[0].clone()
            row[0] = joint[0].min()
            out.append(row)
        return out
