"""Norm-based decompositions of a block's output over its source tokens, shared by ALTI, ALTI-Logit and
DecompX (not a method: the registry skips this module). The formulas and the official code's protocol
are in ``methods/alti.py``'s docstring.

- ``trace_layers``: one no-grad forward recording every block's inputs, norms and FFN states
  (``capture.BlockRecorder``) with attention and the hidden states entering each block (``capture``);
- ``value_output_weights``, ``ln_params``, ``ln_linear``, ``real_sigma``: a block's value/output weights
  and the linear part of a LayerNorm at the real per-token scale (Kobayashi et al. 2021);
- ``FrozenNorm`` / ``norm_refusal``: LayerNorm or RMSNorm with statistics frozen at the real inputs;
- ``alti_layer_parts`` (post-LN), ``source_vectors`` / ``attention_parts`` / ``pre_ln_alti_parts``
  (pre-LN): the exact split of a block over its sources;
- ``alti_contributions``, ``alti_matrix``, ``alti_rollout``: ALTI's proximities, one layer's matrix
  (receivers in chunks) and their rollout.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import adapter_for
from ..architecture import get_layers, head_dim, heads_per_layer, layer_module, projection, select_kept
from ..capture import BlockRecorder, capture
from .base import UnsupportedArchitecture


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
    mlp_out: list = field(default_factory=list)  # pre-LN: the FFN branch added to the residual
    attn_norm_in: list = field(default_factory=list)  # pre-LN with a sandwich norm: attention output before it
    head: dict = field(default_factory=dict)  # extra hooks requested by the caller
    logits: torch.Tensor | None = None


def trace_layers(model, inputs: dict, extra: dict | None = None) -> Trace:
    """One no-grad forward recording everything the decompositions need (``capture.BlockRecorder``
    for the block parts, ``capture`` for attention and the hidden states entering each block).

    Post-LN blocks: ``ln1_in/out`` are LN1's input and output (after the residual), ``ln2_*`` LN2's.
    Pre-LN blocks: ``ln1_out`` is the normed input of attention (a function of each token alone),
    ``ln2_in`` the real residual stream after attention (input of the pre-FFN norm), ``mlp_out``
    the FFN branch added to the residual (after the family's output norm, Gemma), ``attn_norm_in``
    the attention output entering a sandwich norm (Gemma; empty elsewhere).

    ``extra``: ``{name: (module, "in"|"out")}`` further modules whose first input or output to keep
    (``Trace.head[name]``). Raises ``RuntimeError`` when a hook did not run (adapter paths that do
    not match the model)."""
    adapter = adapter_for(model)
    num_layers = len(get_layers(model))
    # Trace field -> (adapter part, "in" | "out")
    fields = {"ln1_in": ("ln_attention", "in"), "ln1_out": ("ln_attention", "out"), "ffn_pre": ("ffn_in", "out"),
              "ffn_act": ("ffn_out", "in"), "ln2_in": ("ln_ffn", "in"), "ln2_out": ("ln_ffn", "out")}
    if adapter.pre_norm:
        fields["mlp_out"] = ("ffn_out_norm" if adapter.ffn_out_norm else "ffn_out", "out")
        if adapter.attention_out_norm:
            fields["attn_norm_in"] = ("attention_out_norm", "in")
    parts: dict = {}
    for part, want in fields.values():
        parts[part] = want if parts.get(part, want) == want else "both"
    with BlockRecorder(model, parts, extra) as rec, torch.no_grad(), \
            capture(model, record="all", record_hidden=True) as cap:
        logits = model(**inputs).logits
    trace = Trace(logits=logits.detach().float())
    # the heads present in each layer (a pruned model records zeros at its pruned heads' indices)
    trace.attentions = [select_kept(model, l, a.float()) for l, a in enumerate(cap.attention_list())]
    for l in range(num_layers):
        if l not in cap.hidden_inputs:
            raise RuntimeError(f"hidden state entering layer {l} was not recorded")
        trace.hidden_in.append(cap.hidden_inputs[l].float())
        for key, (part, want) in fields.items():
            store = rec.inputs if want == "in" else rec.outputs
            if (l, part) not in store:
                raise RuntimeError(f"hook {key} of layer {l} did not run: adapter paths do not match the model")
            getattr(trace, key).append(store[l, part].float())
    for name, (_, want) in (extra or {}).items():
        store = rec.inputs if want == "in" else rec.outputs
        if name in store:
            trace.head[name] = store[name].float()
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


def post_ln_vectors(model, trace: Trace, layer: int, b: int, n: int) -> torch.Tensor:
    """Post-LN block: ``f_h(x_j) = v_{h,j} W_O^h`` for every source, ``(H, n, d)`` (fp32), formed once
    per layer and shared by the receiver chunks of ``alti_layer_parts``."""
    w_v, b_v, w_o, _, heads = value_output_weights(model, layer)
    x = trace.hidden_in[layer][b, :n]  # (n, d)
    value = F.linear(x, w_v, b_v).view(n, heads, head_dim(model))  # (n, H, d_h)
    w_o_heads = w_o.view(w_o.shape[0], heads, head_dim(model))  # (d, H, d_h)
    return torch.einsum("jhe,dhe->hjd", value, w_o_heads)


def alti_layer_parts(model, trace: Trace, layer: int, b: int, n: int, rows: slice | None = None, vectors=None):
    """``(T (c, n, d), bias_part (c, d), y (c, d))`` for example ``b`` cropped to ``n`` tokens and the
    receivers ``rows`` (default all ``n``; ``c`` of them): ``Σ_j T[i, j] + bias_part[i] = y[i]`` = real
    LN1 output. ``vectors``: ``post_ln_vectors(...)`` of this layer and example, when the caller
    already formed them (chunked receivers). Memory ``c · n · d`` floats, not ``n² · d``."""
    rows = rows if rows is not None else slice(0, n)
    _, _, _, b_o, _ = value_output_weights(model, layer)
    transformed = vectors if vectors is not None else post_ln_vectors(model, trace, layer, b, n)  # (H, n, d)
    x = trace.hidden_in[layer][b, :n]
    attn = trace.attentions[layer][b, :, rows, :n]  # (H, c, n)
    z = torch.einsum("hij,hjd->ijd", attn, transformed)  # (c, n_j, d)
    receivers = torch.arange(n, device=z.device)[rows]
    z[torch.arange(len(receivers), device=z.device), receivers] += x[receivers]  # + δ_ij x_i
    gamma, beta, eps = ln_params(layer_module(model, layer, "ln_attention"))
    sigma = real_sigma(trace.ln1_in[layer][b, rows], eps)  # (c, 1)
    parts = ln_linear(z, sigma.unsqueeze(1), gamma)
    bias_part = ln_linear(b_o.expand(len(receivers), -1), sigma, gamma)
    if beta is not None:
        bias_part = bias_part + beta
    return parts, bias_part, trace.ln1_out[layer][b, rows]


# ------------------------------------------------------------------------------------ pre-LN blocks
class FrozenNorm:
    """A norm module with its statistics frozen at the real inputs ``pre (r, d)`` of ``r`` tokens:
    ``norm(pre_i) = P(pre_i) ⊙ scale_i + shift`` with ``P`` the mean subtraction (LayerNorm) or the
    identity (RMSNorm), so ``linear(z)`` (``P(z) ⊙ scale_i``) is linear in ``z`` and exact on every
    summand of ``pre_i`` (Kobayashi et al. 2021's decomposition, for either kind of norm).

    Supported: ``nn.Identity``, ``nn.LayerNorm`` and RMSNorm classes (a class name containing
    "RMSNorm", eps in ``eps`` or ``variance_epsilon``; the gain is read by applying the module to a
    vector of ones, so Gemma's ``1 + w`` parameterisation needs no special case). Raises
    ``UnsupportedArchitecture`` for any other norm (:func:`norm_refusal` says so beforehand)."""

    def __init__(self, module, pre: torch.Tensor):
        pre = pre.float()
        d = pre.shape[-1]
        self.centred, self.shift = False, None
        if isinstance(module, nn.Identity):
            self.scale = torch.ones_like(pre)
        elif isinstance(module, nn.LayerNorm):
            gamma, self.shift, eps = ln_params(module)
            self.scale = 1.0 / real_sigma(pre, eps) * (gamma if gamma is not None else 1.0)
            self.centred = True
        elif "RMSNorm" in type(module).__name__:
            eps = float(getattr(module, "eps", None) or getattr(module, "variance_epsilon"))
            dtype = getattr(getattr(module, "weight", None), "dtype", pre.dtype)
            probe = torch.ones(d, device=pre.device, dtype=dtype)
            gain = module(probe).float() * (1.0 + eps) ** 0.5  # RMSNorm(1) = gain / sqrt(1 + eps)
            self.scale = gain * torch.rsqrt(pre.pow(2).mean(-1, keepdim=True) + eps)
        else:
            raise UnsupportedArchitecture(norm_refusal(module))

    def linear(self, z: torch.Tensor) -> torch.Tensor:
        """``P(z) ⊙ scale_i`` for ``z (r, ..., d)``: the first dim indexes the same tokens as ``pre``."""
        if self.centred:
            z = z - z.mean(-1, keepdim=True)
        return z * self.scale.view(self.scale.shape[0], *([1] * (z.dim() - 2)), self.scale.shape[-1])


def norm_refusal(module) -> str | None:
    """Why :class:`FrozenNorm` cannot take ``module`` apart, or None."""
    if isinstance(module, (nn.Identity, nn.LayerNorm)) or "RMSNorm" in type(module).__name__:
        return None
    return (f"its norm {type(module).__name__} is neither LayerNorm nor RMSNorm, whose linear part (with the real "
            "scale per token) the decomposition needs")


@torch.no_grad()
def source_vectors(model, trace: Trace, layer: int, b: int, n: int):
    """Pre-LN block: ``(f (H, n, d), b_O (d) or None)`` with ``f_h(x_j) = (N(x_j) W_V^h + b_V^h) W_O^h``,
    ``N(x_j)`` the real normed input of attention at source ``j`` (a function of ``x_j`` alone).
    Grouped KV heads: query head ``h`` reads KV head ``h // group``; fused and Conv1D projections
    come sliced and transposed from the adapter (``architecture.projection``)."""
    heads = trace.attentions[layer].shape[1]
    d_h = head_dim(model)
    w_v, b_v = projection(model, layer, "value")
    value = F.linear(trace.ln1_out[layer][b, :n], w_v.float(), None if b_v is None else b_v.float())
    value = value.view(n, value.shape[-1] // d_h, d_h)
    if heads and value.shape[1] != heads:
        value = value.repeat_interleave(heads // value.shape[1], dim=1)  # GQA: (n, H, d_h)
    w_o, b_o = projection(model, layer, "output")
    w_o = w_o.float().view(w_o.shape[0], heads, d_h)
    return torch.einsum("jhe,dhe->hjd", value, w_o), None if b_o is None else b_o.float()


def attention_parts(model, trace: Trace, layer: int, b: int, n: int, rows: slice, vectors=None):
    """The attention branch of a pre-LN block split over sources, for receivers ``rows`` (``c`` of them):
    ``(z (c, n, d), constant (c, d))`` with ``Σ_j z[i, j] + constant[i]`` = what the branch adds to the
    residual of token ``i``: ``z[i, j] = Σ_h A_h[i, j] f_h(x_j)`` and ``constant = b_O``; with a
    sandwich norm (Gemma) both pass through its linear part with the real scale of receiver ``i``
    (RMSNorm: no mean, no shift, so the split stays exact)."""
    f, b_o = vectors if vectors is not None else source_vectors(model, trace, layer, b, n)
    attn = trace.attentions[layer][b, :, rows, :n]  # (H, c, n)
    z = torch.einsum("hij,hjd->ijd", attn, f)
    constant = (b_o if b_o is not None else torch.zeros_like(z[0, 0])).expand(z.shape[0], -1)
    if adapter_for(model).attention_out_norm:
        norm = FrozenNorm(layer_module(model, layer, "attention_out_norm"), trace.attn_norm_in[layer][b, rows])
        z, constant = norm.linear(z), norm.linear(constant)
        if norm.shift is not None:
            constant = constant + norm.shift
    return z, constant


@torch.no_grad()
def pre_ln_alti_parts(model, trace: Trace, layer: int, b: int, n: int, rows: slice | None = None, vectors=None):
    """Pre-LN ALTI (Ferrando et al. 2023): ``(T (c, n, d), constant (c, d), y (c, d))`` for receivers
    ``rows``: ``T[i, j] = z[i, j] + δ_ij x_i`` and ``Σ_j T[i, j] + constant[i] = y[i]``, the real
    residual stream after attention (the input of the pre-FFN norm)."""
    rows = rows if rows is not None else slice(0, n)
    z, constant = attention_parts(model, trace, layer, b, n, rows, vectors)
    x = trace.hidden_in[layer][b, :n]
    receivers = torch.arange(n, device=z.device)[rows]
    z[torch.arange(len(receivers), device=z.device), receivers] += x[receivers]  # + δ_ij x_i
    return z, constant, trace.ln2_in[layer][b, rows]


@torch.no_grad()
def alti_matrix(model, trace: Trace, layer: int, b: int, n: int, max_elements: int = 1 << 22) -> torch.Tensor:
    """``C^l (n, n)`` of one example, rows summing to 1: post-LN (LN1 decomposition) or pre-LN
    (the residual stream after attention), receivers in chunks of at most ``max_elements`` floats
    (``(c, n, d)`` decompositions: the peak stays a small multiple of ``max_elements`` at any length,
    where the whole ``(n, n, d)`` at 512 tokens took 7.1 GB on BERT-base)."""
    post = not adapter_for(model).pre_norm
    vectors = post_ln_vectors(model, trace, layer, b, n) if post else source_vectors(model, trace, layer, b, n)
    width = (vectors if post else vectors[0]).shape[-1]
    step = max(1, max_elements // max(1, n * width))
    rows = []
    for start in range(0, n, step):
        chunk = slice(start, min(n, start + step))
        if post:  # LN1 decomposition: Kobayashi's linear part per receiver, chunked the same way
            parts, _, y = alti_layer_parts(model, trace, layer, b, n, chunk, vectors)
        else:
            parts, _, y = pre_ln_alti_parts(model, trace, layer, b, n, chunk, vectors)
        rows.append(alti_contributions(parts, y))
        del parts, y
    return torch.cat(rows)


def alti_rollout(model, trace: Trace, b: int, n: int, layers: int | None = None) -> list[torch.Tensor]:
    """``[R^1, ..., R^layers]`` (``(n, n)`` each; default every layer): ``R^1 = C^1``, ``R^l = C^l R^{l-1}``."""
    rolled, out = None, []
    for l in range(len(trace.hidden_in) if layers is None else layers):
        c = alti_matrix(model, trace, l, b, n)
        rolled = c if rolled is None else c @ rolled
        out.append(rolled)
    return out


def alti_contributions(parts: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``C[i, j] = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`` normalised to rows summing to 1.

    A row whose every clipped proximity is 0 (its sources nearly cancel, so removing any of them moves
    ``y_i`` by at least ``‖y_i‖₁``; the official code divides 0 by 0 there) is shared in proportion to
    ``‖T_i(x_j)‖₁`` instead, so every row still sums to 1."""
    distance = (y.unsqueeze(1) - parts).abs().sum(-1)  # (n, n)
    c = (y.abs().sum(-1, keepdim=True) - distance).clamp_min(0)
    total = c.sum(-1, keepdim=True)
    empty = total <= 0
    if bool(empty.any()):
        c = torch.where(empty, parts.abs().sum(-1), c)
        total = c.sum(-1, keepdim=True)
    return c / torch.where(total > 0, total, torch.ones_like(total))
