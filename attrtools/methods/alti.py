"""ALTI: Aggregation of Layer-wise Token-to-token Interactions (Ferrando, Gállego, Costa-jussà; EMNLP 2022,
"Measuring the Mixing of Contextual Information in the Transformer", arXiv 2203.04212).

Per layer ``l`` of a post-LN encoder, with ``x_j`` the hidden state entering the block, ``A_h`` the
attention probabilities of head ``h``, ``v_{h,j} = x_j W_V^h + b_V^h`` and ``W_O^h`` the head's slice of
the output projection, the attention block output of token ``i`` splits over the source tokens ``j``:

    z_{i<-j}   = Σ_h A_h[i, j] v_{h,j} W_O^h + δ_ij x_i               (residual inside)
    T_i(x_j)   = L(z_{i<-j}) / σ_i,   L(z) = (z − mean_d z) ⊙ γ1         (LN1's linear part)
    y_i        = Σ_j T_i(x_j) + L(b_O)/σ_i + β1                         (= the real LN1 output)

with ``σ_i = sqrt(Var_d(pre-LN1 state of i) + eps)`` taken from the real forward. The contribution
of ``j`` to ``i`` is the Manhattan-distance proximity, clipped and normalised per row:

    c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁),      C^l[i, j] = c_ij / Σ_j c_ij

and the layers are aggregated by rollout without identity (the residual is already inside):
``R^1 = C^1``, ``R^l = C^l · R^{l-1}``. Output kind ``layer_matrix``: ``(L, n, n)`` = ``R^1 .. R^L``,
every row summing to 1; the token view is the ``[CLS]`` row of ``R^L``. Class-agnostic (no target).

Protocol of the official code (mt-upc/transformer-contributions, ``src/contributions.py``): L1
distance, ``scaling="min_sum"``, the FFN ignored, rollout of the row-normalised matrices. Deviation:
the official code materialises ``(B, H, n, n, d)`` before summing heads; here heads are summed inside
one einsum (same numbers, ``H`` times less memory). Post-LN encoders only (BERT, RoBERTa, ELECTRA,
DistilBERT); pre-LN decoders (Llama) are refused by ``check_model``.

``trace_layers`` (one forward: attention via ``capture``, the rest via forward hooks on the adapter's
modules) is shared with DecompX.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..capture import capture, layer_hook
from ..models import get_layers, head_dim, heads_per_layer, layer_module, select_kept
from . import register
from .base import Batch, Method, crop, require_post_ln


@dataclass
class Trace:
    """What one forward recorded, per layer (all padded ``(B, n, ...)``)."""

    hidden_in: list = field(default_factory=list)  # x entering block l
    attentions: list = field(default_factory=list)  # (B, H, n, n)
    ln1_in: list = field(default_factory=list)  # real pre-LN1 state
    ln1_out: list = field(default_factory=list)
    ffn_pre: list = field(default_factory=list)  # output of ffn_in (pre-activation)
    ffn_act: list = field(default_factory=list)  # input of ffn_out (post-activation)
    ln2_in: list = field(default_factory=list)
    ln2_out: list = field(default_factory=list)
    head: dict = field(default_factory=dict)  # extra hooks requested by the caller
    logits: torch.Tensor | None = None


def trace_layers(model, inputs: dict, extra: dict | None = None) -> Trace:
    """One no-grad forward recording everything the decompositions need.

    ``extra``: ``{name: (module, "in"|"out")}`` further modules whose first input or output to keep.
    """
    num_layers = len(get_layers(model))
    parts = {"ln1": "ln_attention", "ffn_pre": "ffn_in", "ffn_act": "ffn_out", "ln2": "ln_ffn"}
    store: dict = {}
    handles = []

    def keeper(key, want):
        def hook(module, args, output):
            store[key] = (args[0] if want == "in" else output).detach()
        return hook

    for l in range(num_layers):
        for short, part in parts.items():
            # layer_hook: fires for layer l's call only (ALBERT runs one block at several layers)
            if short in ("ln1", "ln2"):
                handles.append(layer_hook(model, l, part, keeper((short + "_in", l), "in")))
                handles.append(layer_hook(model, l, part, keeper((short + "_out", l), "out")))
            elif short == "ffn_pre":
                handles.append(layer_hook(model, l, part, keeper((short, l), "out")))
            else:
                handles.append(layer_hook(model, l, part, keeper((short, l), "in")))
    for name, (module, want) in (extra or {}).items():
        handles.append(module.register_forward_hook(keeper(("head", name), want)))
    try:
        with torch.no_grad(), capture(model, record="all", record_hidden=True) as cap:
            logits = model(**inputs).logits
    finally:
        for h in handles:
            h.remove()
    trace = Trace(logits=logits.detach().float())
    # the heads present in each layer (a pruned model records zeros at its pruned heads' indices)
    trace.attentions = [select_kept(model, l, a.float()) for l, a in enumerate(cap.attention_list())]
    for l in range(num_layers):
        if l not in cap.hidden_inputs:
            raise RuntimeError(f"hidden state entering layer {l} was not recorded")
        trace.hidden_in.append(cap.hidden_inputs[l].float())
        for key in ("ln1_in", "ln1_out", "ffn_pre", "ffn_act", "ln2_in", "ln2_out"):
            if (key, l) not in store:
                raise RuntimeError(f"hook {key} of layer {l} did not run: adapter paths do not match the model")
            getattr(trace, key).append(store[(key, l)].float())
    trace.head = {name: store[("head", name)].float() for name in (extra or {}) if ("head", name) in store}
    return trace


def value_output_weights(model, layer: int):
    """``(W_V (d_v,d), b_V, W_O (d, d_v), b_O, heads)`` of one block (Linear layout: out x in)."""
    value = layer_module(model, layer, "value")
    output = layer_module(model, layer, "output")
    heads = heads_per_layer(model)[layer]
    b_v = value.bias if value.bias is not None else torch.zeros(value.out_features, device=value.weight.device)
    b_o = output.bias if output.bias is not None else torch.zeros(output.out_features, device=output.weight.device)
    return value.weight.float(), b_v.float(), output.weight.float(), b_o.float(), heads


def ln_params(module):
    gamma = module.weight.float() if module.weight is not None else None
    beta = module.bias.float() if getattr(module, "bias", None) is not None else None
    return gamma, beta, float(module.eps)


def ln_linear(z: torch.Tensor, sigma: torch.Tensor, gamma) -> torch.Tensor:
    """Kobayashi's LN decomposition of a part ``z`` of a vector whose real std is ``sigma`` (broadcast)."""
    out = (z - z.mean(-1, keepdim=True)) / sigma
    return out * gamma if gamma is not None else out


def real_sigma(pre: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(pre.var(-1, unbiased=False, keepdim=True) + eps)


def alti_layer_parts(model, trace: Trace, layer: int, b: int, n: int):
    """``(T (n, n, d), bias_part (n, d), y (n, d))`` for example ``b`` cropped to ``n`` tokens:
    ``Σ_j T[i, j] + bias_part[i] = y[i]`` = real LN1 output."""
    w_v, b_v, w_o, b_o, heads = value_output_weights(model, layer)
    x = trace.hidden_in[layer][b, :n]  # (n, d)
    attn = trace.attentions[layer][b, :, :n, :n]  # (H, n, n)
    value = F.linear(x, w_v, b_v).view(n, heads, head_dim(model))  # (n, H, d_h)
    w_o_heads = w_o.view(w_o.shape[0], heads, head_dim(model))  # (d, H, d_h)
    transformed = torch.einsum("jhe,dhe->hjd", value, w_o_heads)  # f_h(x_j): (H, n, d)
    z = torch.einsum("hij,hjd->ijd", attn, transformed)  # (n_i, n_j, d)
    z = z + torch.diag_embed(x.transpose(0, 1)).permute(1, 2, 0)  # + δ_ij x_i
    gamma, beta, eps = ln_params(layer_module(model, layer, "ln_attention"))
    sigma = real_sigma(trace.ln1_in[layer][b, :n], eps)  # (n, 1)
    parts = ln_linear(z, sigma.unsqueeze(1), gamma)
    bias_part = ln_linear(b_o.expand(n, -1), sigma, gamma)
    if beta is not None:
        bias_part = bias_part + beta
    return parts, bias_part, trace.ln1_out[layer][b, :n]


def alti_contributions(parts: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``C[i, j] = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`` normalised to rows summing to 1."""
    distance = (y.unsqueeze(1) - parts).abs().sum(-1)  # (n, n)
    c = (y.abs().sum(-1, keepdim=True) - distance).clamp_min(0)
    total = c.sum(-1, keepdim=True)
    return c / torch.where(total > 0, total, torch.ones_like(total))


@register
class ALTI(Method):
    name = "alti"
    title = "ALTI (aggregation of layer-wise token-to-token interactions)"
    paper = ("Ferrando, Gállego, Costa-jussà. Measuring the Mixing of Contextual Information in the "
             "Transformer. EMNLP 2022")
    kind = "layer_matrix"
    signed = False
    target = "none"
    defaults = {}
    invariant = "Σ_j T_i(x_j) + L(b_O)/σ_i + β1 = LN1 output; every row of every rolled-out layer sums to 1"

    def check_model(self, model):
        super().check_model(model)
        require_post_ln(model, "ALTI")

    @torch.no_grad()
    def compute(self, model, batch: Batch, units=None, **params):
        self.check_model(model)
        trace = trace_layers(model, batch.inputs)
        num_layers = len(trace.hidden_in)
        out = []
        for b, n in enumerate(batch.lengths):
            rolled, layers = None, []
            for l in range(num_layers):
                parts, _, y = alti_layer_parts(model, trace, l, b, n)
                c = alti_contributions(parts, y)
                rolled = c if rolled is None else c @ rolled
                layers.append(rolled)
            out.append(crop(torch.stack(layers), n, (1, 2)))
        return out
