"""ALTI: Aggregation of Layer-wise Token-to-token Interactions (Ferrando, Gállego, Costa-jussà; EMNLP 2022,
"Measuring the Mixing of Contextual Information in the Transformer", arXiv 2203.04212), and its form
for pre-LN blocks (Ferrando, Gállego, Tsiamas, Costa-jussà; ACL 2023, "Explaining How Transformers
Use Context to Build Predictions", arXiv 2305.12535).

**Post-LN blocks** (BERT-like encoders). Per layer ``l``, with ``x_j`` the hidden state entering the
block, ``A_h`` the attention probabilities of head ``h``, ``v_{h,j} = x_j W_V^h + b_V^h`` and ``W_O^h``
the head's slice of the output projection, the attention block output of token ``i`` splits over the
source tokens ``j``:

    z_{i<-j}   = Σ_h A_h[i, j] v_{h,j} W_O^h + δ_ij x_i               (residual inside)
    T_i(x_j)   = L(z_{i<-j}) / σ_i,   L(z) = (z − mean_d z) ⊙ γ1         (LN1's linear part)
    y_i        = Σ_j T_i(x_j) + L(b_O)/σ_i + β1                         (= the real LN1 output)

with ``σ_i = sqrt(Var_d(pre-LN1 state of i) + eps)`` taken from the real forward.

**Pre-LN blocks** (decoders: Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, GPT-2; the pre-LN encoder
ModernBERT). The norm sits on the branch, before attention, and is applied to each source token
alone, so no receiver norm has to be linearised:

    f_h(x_j)   = (N(x_j) W_V^h + b_V^h) W_O^h                         (N: LayerNorm / RMSNorm of x_j, β included)
    T_i(x_j)   = Σ_h A_h[i, j] f_h(x_j) + δ_ij x_i
    y_i        = Σ_j T_i(x_j) + b_O                                   (= the real residual after attention)

``N(x_j)`` is read from the forward (the output of the block's input norm), so the split is exact
for any norm. Grouped KV heads: query head ``h`` uses KV head ``h // group``. Fused projections
(Phi-3 ``qkv_proj``, GPT-2 ``c_attn``, ModernBERT ``Wqkv``) and GPT-2's ``Conv1D`` come sliced and
transposed from the adapter (``architecture.projection``). Gemma 2/3 add an RMSNorm to the attention
output before the residual add (the adapter's ``attention_out_norm``): the attention terms and
``b_O`` pass through its linear part with the real scale of receiver ``i``, still exact (RMSNorm has
no mean and no shift). A sandwich norm of another kind is refused by ``check_model``.

In both cases the contribution of ``j`` to ``i`` is the Manhattan-distance proximity, clipped and
normalised per row:

    c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁),      C^l[i, j] = c_ij / Σ_j c_ij

and the layers are aggregated by rollout without identity (the residual is already inside):
``R^1 = C^1``, ``R^l = C^l · R^{l-1}``. Output kind ``layer_matrix``: ``(L, n, n)`` = ``R^1 .. R^L``,
every row summing to 1; the token view is the row of the pooled token of ``R^L`` (``[CLS]`` for
encoders, the last real token for decoder classifiers). Class-agnostic (no target).

Protocol of the official code (mt-upc/transformer-contributions ``src/contributions.py``; for
decoders mt-upc/logit-explanations ``src/contributions.py``): L1 distance, ``scaling="min_sum"``,
the FFN ignored, rollout of the row-normalised matrices; the decoder code folds the norm's shift and
``b_V`` into each source's transformed vector and leaves ``b_O`` unattributed, as here. Deviations:
the official code materialises ``(B, H, n, n, d)`` before summing heads; here heads are summed inside
one einsum (same numbers, ``H`` times less memory), and receivers are processed in chunks
(``alti_matrix``, post- and pre-LN); ``N(x_j)`` is the module's real output rather than re-derived from LayerNorm
weights (which covers RMSNorm, Gemma's ``1 + w`` gain and ModernBERT's identity norm in layer 0);
a row whose every clipped proximity is 0 (the official code divides 0 by 0: NaN) is shared in
proportion to ``‖T_i(x_j)‖₁`` (seen on random Gemma 3 weights, where the sandwich norm makes two
sources nearly cancel).
Families with an inferred adapter are refused (their block layout is not known).

The trace of one forward and the decomposition itself (``trace_layers``, ``alti_matrix``,
``alti_rollout``, ...) live in ``methods/decomposition.py``, shared with DecompX and ALTI-Logit.
"""
from __future__ import annotations

import torch

from ..adapters import adapter_for
from ..architecture import layer_module
from . import register
from .base import Batch, Method, UnsupportedArchitecture, crop
from .decomposition import alti_rollout, norm_refusal, trace_layers


@register
class ALTI(Method):
    name = "alti"
    title = "ALTI (aggregation of layer-wise token-to-token interactions)"
    paper = ("Ferrando, Gállego, Costa-jussà. Measuring the Mixing of Contextual Information in the "
             "Transformer. EMNLP 2022; pre-LN blocks: Ferrando, Gállego, Tsiamas, Costa-jussà. Explaining How "
             "Transformers Use Context to Build Predictions. ACL 2023")
    kind = "layer_matrix"
    signed = False
    target = "none"
    defaults = {}
    invariant = ("Σ_j T_i(x_j) + L(b_O)/σ_i + β1 = LN1 output (post-LN), Σ_j T_i(x_j) + b_O = residual after "
                 "attention (pre-LN); every row of every rolled-out layer sums to 1")

    def check_model(self, model):
        super().check_model(model)
        adapter = adapter_for(model)
        if adapter.attention_out_norm:
            reason = norm_refusal(layer_module(model, 0, "attention_out_norm"))
            if reason:
                raise UnsupportedArchitecture(f"alti does not apply to model_type {adapter.model_type!r}: {reason}")

    @torch.no_grad()
    def compute(self, model, batch: Batch, units=None, **params):
        self.check_model(model)
        trace = trace_layers(model, batch.inputs)
        return [crop(torch.stack(alti_rollout(model, trace, b, n)), n, (1, 2)) for b, n in enumerate(batch.lengths)]
