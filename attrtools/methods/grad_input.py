"""Gradient × input at the embedding output (Shrikumar et al. 2016 / Kindermans et al. 2016;
the "normbased" saliency of GlobEnc and DecompX, Modarressi et al. NAACL 2022 / ACL 2023).

    s_j = || ∂y_c/∂e_j ⊙ e_j ||₂          (aggregate="l2", default)
    s_j = Σ_d  ∂y_c/∂e_j,d · e_j,d        (aggregate="sum", signed)

``e`` = the hidden states entering layer 0 (output of the embedding module: word + position +
type embeddings after the embedding LayerNorm for BERT-like models; the token embeddings for
Llama), ``y_c`` = logit of the explained class (``target_kind="logit"``, default; the GlobEnc /
DecompX reference saliency uses the gold label's logit: pass ``target="gold"``).
One forward + one backward pass.
"""
from __future__ import annotations

import torch

from . import register
from .base import Batch, Method, target_score, Choice, TARGET_KIND
from .shared import aggregate_hidden, embedding_leaf


@register
class GradientInput(Method):
    name = "grad_input"
    title = "Gradient x input (embedding output, L2 norm)"
    paper = "Kindermans et al. 2016 / Shrikumar et al. 2016; norm-based variant as in Modarressi et al. (GlobEnc) NAACL 2022"
    kind = "tokens"
    signed = False  # its default aggregate, an L2 norm, is non-negative (see Method.is_signed)
    defaults = {"target_kind": "logit", "aggregate": "l2"}
    schema = {"target_kind": TARGET_KIND, "aggregate": Choice("l2", "sum")}
    invariant = "aggregate='sum' over tokens equals the first-order Taylor term <grad, e>; l2 scores >= 0"

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        aggregate_hidden(torch.zeros(1, 1), params["aggregate"])  # validate early
        if batch.targets is None:
            raise ValueError("grad_input needs target classes")
        with embedding_leaf(model) as leaf, torch.enable_grad():
            logits = model(**batch.inputs).logits
            score = target_score(logits, batch.targets, params["target_kind"], model)
            (grad,) = torch.autograd.grad(score.sum(), leaf.leaf)
        scores = aggregate_hidden((grad * leaf.leaf).detach().float(), params["aggregate"])
        return [scores[b, :n].contiguous() for b, n in enumerate(batch.lengths)]
