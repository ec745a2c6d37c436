"""Chefer, Gur, Wolf 2021b: generic attention-model explainability (ICCV 2021, arXiv 2103.15679).

Gradient-weighted attention accumulated through the layers, no LRP:

    R = I_n
    for each block l (input to output):  Ā^l = mean_h( (∇A^l ⊙ A^l)⁺ ),   R = R + Ā^l · R
    token scores = R[p, :]

``∇A^l = ∂y_c/∂A^l`` with ``y_c`` the **logit** of the explained class (official code: one-hot
times the output, backward). ``p`` is the pooling row: [CLS] (0) for encoders, the last real
token for decoder classifiers. Official protocol (Transformer-MM-Explainability,
``generate_ours`` / the ViT notebook): no row normalisation, identity start, mean over heads of
the positive part. Deviation: none in the computation; we return the whole row including the
pooling token's self-relevance (the official text visualisation sets it to 0 or drops it; do
that downstream if wanted). ``target_kind="prob"`` is offered as an option (not in the paper).
"""
from __future__ import annotations

import torch

from . import register
from .base import Batch, Method, TARGET_KIND
from .shared import attention_and_gradients, pool_rows


def relevance_matrices(model, batch: Batch, target_kind: str = "logit") -> list[torch.Tensor]:
    """The full ``R`` (n, n) per example, cropped to its real length."""
    attentions, grads = attention_and_gradients(model, batch, target_kind)
    out = []
    for b, n in enumerate(batch.lengths):
        relevance = torch.eye(n, device=attentions[0].device)
        for a, g in zip(attentions, grads):
            cam = (g[b, :, :n, :n] * a[b, :, :n, :n]).clamp(min=0).mean(0)
            relevance = relevance + cam @ relevance
        out.append(relevance)
    return out


@register
class CheferGrad(Method):
    name = "chefer_grad"
    title = "Chefer 2021b (gradient-weighted attention rollout)"
    paper = ("Chefer, Gur, Wolf. Generic Attention-model Explainability for Interpreting Bi-Modal and "
             "Encoder-Decoder Transformers. ICCV 2021")
    kind = "tokens"
    signed = False  # relu / clamp(min=0): non-negative relevance
    defaults = {"target_kind": "logit"}
    schema = {"target_kind": TARGET_KIND}
    invariant = "R - I >= 0 and every row of R sums to >= 1"

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        matrices = relevance_matrices(model, batch, params["target_kind"])
        rows = pool_rows(model, batch.lengths, batch.inputs["input_ids"])
        return [r[row].contiguous() for r, row in zip(matrices, rows)]
