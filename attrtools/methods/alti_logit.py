"""ALTI-Logit (Ferrando, Gállego, Tsiamas, Costa-jussà; ACL 2023, "Explaining How Transformers Use
Context to Build Predictions", arXiv 2305.12535): the target logit of a decoder classifier split into
the direct contributions of every layer's attention through every source position, carried back to
the input tokens by the ALTI rollout of the layers below.

A pre-LN decoder adds each block's branches to one residual stream, so the state the score head
reads at the pooled position ``p`` (the model's own last non-pad token) is

    r_p = x^0_p + Σ_l ( Σ_j z^l_{p,j} + b^l_O ) + Σ_l m^l_p

with ``x^0`` the embedding output, ``z^l_{p,j} = Σ_h A^l_h[p, j] f^l_h(x_j)`` the attention branch
split over sources (``decomposition.attention_parts``; Gemma's sandwich norm with the real scale of ``p``) and
``m^l_p`` the FFN branch. The final norm with its statistics frozen at the real ``r_p``
(``L_f(u) = P(u) ⊙ scale_p``, ``P`` the mean subtraction of LayerNorm or the identity of RMSNorm)
is linear, and the score head is one linear layer ``w_t·h + b_t``, so the logit of the target class
``t`` is exactly

    logit_t = Σ_l Σ_j Δ^l_j + Σ_l w_t·L_f(b^l_O) + Σ_l w_t·L_f(m^l_p) + w_t·L_f(x^0_p) + w_t·shift_f + b_t,
    Δ^l_j   = w_t · L_f(z^l_{p,j})                                  (the layer-wise logit contributions)

(:func:`logit_decomposition` returns every term; the tests check that they sum to the model's own
logit). ALTI-Logit maps the source positions of layer ``l`` to input tokens with the ALTI rollout
of the layers below it (``R^l`` of :mod:`attrtools.methods.alti`, rows summing to 1):

    s_k = Σ_j Δ^1_j δ_jk + Σ_{l>1} Σ_j Δ^l_j R^{l-1}[j, k]

Output kind ``tokens``: ``s`` ``(n,)``, signed, in logit units, for the target class (default:
predicted). Unlike DecompX the scores do not sum to the logit: the FFN, ``b_O``, embedding and
bias terms are direct contributions of the pooled position that ALTI-Logit leaves out, as the paper.

Protocol of the official code (mt-upc/logit-explanations, ``get_logit_contributions`` and
``track2input_tokens``, method ``logit_attn_full_alti``): the "affine" transformed vectors (norm
shift and ``b_V`` inside each source's vector, ``b_O`` apart), the final norm's linear part with the
real std, the unembedding row of the target, the ALTI rollout of layer ``l-1`` for layer ``l``.
Deviations: a classifier's score row replaces the unembedding row, and the logit explained is the
target class's own (the paper's contrastive variant is the difference of two such vectors); heads
are summed before the projection; the final norm may be RMSNorm (Llama-family decoders).

Applies to pre-LN blocks whose classifier is one linear layer on the final norm of the last non-pad
token (every decoder classifier of the adapter table); refused, naming the reason, on post-LN
encoders (use ``decompx``), on ModernBERT (its head has a dense layer, an activation and a
LayerNorm) and on inferred adapters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapters import adapter_for
from ..architecture import get_module, layer_module, pool_positions
from . import register
from .decomposition import FrozenNorm, alti_rollout, attention_parts, norm_refusal, trace_layers
from .base import Batch, Method, UnsupportedArchitecture


@dataclass
class LogitDecomposition:
    """Every term of one example's target logit (see the module docstring); ``total()`` sums them."""

    attention: torch.Tensor  # (L, n): Δ^l_j
    attention_bias: torch.Tensor  # (L,): w_t·L_f(b^l_O)
    mlp: torch.Tensor  # (L,): w_t·L_f(m^l_p)
    embedding: float  # w_t·L_f(x^0_p)
    constant: float  # w_t·shift_f + b_t
    logit: float  # the model's own logit of the target
    position: int  # the pooled position p

    def total(self) -> float:
        return float(self.attention.sum() + self.attention_bias.sum() + self.mlp.sum()) + self.embedding + \
            self.constant


def head_modules(model):
    """``(final norm, score layer)`` of a decoder classifier (the adapter's paths)."""
    adapter = adapter_for(model)
    return get_module(model, adapter.final_norm), get_module(model, adapter.classifier_head[0])


@torch.no_grad()
def logit_decomposition(model, trace, b: int, n: int, target: int, position: int) -> LogitDecomposition:
    """The exact split of example ``b``'s target logit (``trace`` from :func:`decomposition.trace_layers` with
    ``extra={"final": (final norm, "in")}``); ``position`` is the pooled token, ``< n``."""
    final, score = head_modules(model)
    norm = FrozenNorm(final, trace.head["final"][b, position: position + 1])
    w = score.weight[target].float()

    def logit(u):  # w_t · L_f(u) for u (..., d)
        return norm.linear(u.unsqueeze(0)).squeeze(0) @ w

    layers = len(trace.hidden_in)
    attention, bias, mlp = [], [], []
    for l in range(layers):
        z, constant = attention_parts(model, trace, l, b, n, slice(position, position + 1))
        attention.append(logit(z[0]))
        bias.append(logit(constant[0]))
        mlp.append(logit(trace.mlp_out[l][b, position]))
    constant = float(norm.shift @ w) if norm.shift is not None else 0.0
    if score.bias is not None:
        constant += float(score.bias[target])
    return LogitDecomposition(torch.stack(attention), torch.stack(bias), torch.stack(mlp),
                              float(logit(trace.hidden_in[0][b, position])), constant,
                              float(trace.logits[b, target]), position)


def trace_for_logits(model, batch: Batch):
    """One recorded forward with the final norm's input kept (``trace.head["final"]``)."""
    final, _ = head_modules(model)
    return trace_layers(model, batch.inputs, extra={"final": (final, "in")})


@register
class ALTILogit(Method):
    name = "alti_logit"
    title = "ALTI-Logit (layer-wise logit contributions of attention, carried to the input by ALTI)"
    paper = ("Ferrando, Gállego, Tsiamas, Costa-jussà. Explaining How Transformers Use Context to Build "
             "Predictions. ACL 2023")
    kind = "tokens"
    target = "logit"
    signed = True
    defaults = {}
    invariant = ("attention + FFN + b_O + embedding + bias terms of the direct logit decomposition sum to the "
                 "target logit; ALTI rows sum to 1")

    def check_model(self, model):
        super().check_model(model)
        adapter = adapter_for(model)
        prefix = f"alti_logit does not apply to model_type {adapter.model_type!r}: "
        if not adapter.pre_norm:
            raise UnsupportedArchitecture(
                prefix + "it is post-LN (a LayerNorm after every residual add and a pooler on token 0), so the "
                "logit is not a sum of per-layer terms read through one linear head; decompx gives the exact "
                "logit decomposition of post-LN encoders (alti the token-to-token mixing)")
        head = adapter.classifier_head
        if adapter.pooling != "last_non_pad" or adapter.final_norm is None or head is None or len(head) != 1:
            raise UnsupportedArchitecture(
                prefix + "its classifier is not one linear layer on the final norm of the last token (ModernBERT: "
                "a dense layer, an activation and a LayerNorm on the pooled token), so there is no linear path "
                "from the residual stream to the logit; alti explains it (token-to-token mixing)")
        reasons = [norm_refusal(get_module(model, adapter.final_norm))]
        if adapter.attention_out_norm:
            reasons.append(norm_refusal(layer_module(model, 0, "attention_out_norm")))
        reason = next((r for r in reasons if r), None)
        if reason:
            raise UnsupportedArchitecture(prefix + reason)

    @torch.no_grad()
    def compute(self, model, batch: Batch, units=None, **params):
        self.params(**params)
        self.check_model(model)
        if batch.targets is None:
            raise ValueError("ALTI-Logit needs target classes")
        trace = trace_for_logits(model, batch)
        positions = pool_positions(model, batch.inputs["input_ids"])
        out = []
        for b, n in enumerate(batch.lengths):
            p = int(positions[b])
            if p >= n:  # the engine pads on the right: the pooled token is a real one
                raise ValueError(f"pooled position {p} is beyond the {n} real tokens of example {b}")
            parts = logit_decomposition(model, trace, b, n, int(batch.targets[b]), p)
            rolled = alti_rollout(model, trace, b, n, layers=len(trace.hidden_in) - 1)
            scores = parts.attention[0].clone()
            for l in range(1, len(trace.hidden_in)):
                scores += parts.attention[l] @ rolled[l - 1]
            out.append(scores.contiguous())
        return out
