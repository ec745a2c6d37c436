"""Grad-SAM: gradient self-attention maps (Barkan, Hauon, Caciularu, Katz, Malkiel, Armstrong,
Koenigstein; CIKM 2021, arXiv 2204.11073).

    GradSAM(x)_j = 1/(L·H·n) Σ_l Σ_h Σ_i [ A^l_h ⊙ ReLU(∂y_c / ∂A^l_h) ]_{i,j}

``A^l_h`` are the post-softmax attention probabilities (query i, key j), ``y_c`` the explained
class score. One forward pass and one backward pass; output is one non-negative score per token.

No official code exists (docs/methods.md, "Grad-SAM"). Conventions here, following the unofficial
implementations: ReLU on the gradient only; plain means over layers, heads and **all query rows**
of the example's real tokens (``rows="all"``, default) or only the pooling row (``rows="cls"``:
[CLS] for encoders, the last real token for decoder classifiers); target = class **logit**
(``target_kind="logit"``, default, as Chefer) or its softmax probability (``"prob"``).
Padding is excluded from the means (the mean over rows divides by the real length).
"""
from __future__ import annotations

import torch

from . import register
from .base import Batch, Method, Choice, TARGET_KIND
from .shared import attention_and_gradients, pool_rows


@register
class GradSAM(Method):
    name = "gradsam"
    title = "Grad-SAM (gradient self-attention maps)"
    paper = ("Barkan, Hauon, Caciularu, Katz, Malkiel, Armstrong, Koenigstein. Grad-SAM: Explaining Transformers "
             "via Gradient Self-Attention Maps. CIKM 2021")
    kind = "tokens"
    signed = False  # relu / clamp(min=0): non-negative relevance
    defaults = {"target_kind": "logit", "rows": "all"}
    schema = {"target_kind": TARGET_KIND, "rows": Choice("all", "cls")}
    invariant = "scores >= 0 (attention times ReLU of its gradient)"

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        if params["rows"] not in ("all", "cls"):
            raise ValueError(f"rows must be 'all' or 'cls', got {params['rows']!r}")
        attentions, grads = attention_and_gradients(model, batch, params["target_kind"])
        rows = pool_rows(model, batch.lengths, batch.inputs["input_ids"])
        count = len(attentions) * attentions[0].shape[1]  # layers × heads of the means
        sums = [0.0] * batch.size
        for l in range(len(attentions)):  # one layer's map at a time, each layer released once summed
            layer_map = attentions[l].mul_(torch.relu_(grads[l]))  # (B, H, n, n) in place: A ⊙ ReLU(∂y/∂A)
            attentions[l] = grads[l] = None
            for b, (n, row) in enumerate(zip(batch.lengths, rows)):
                m = layer_map[b, :, :n, :n]
                sums[b] = sums[b] + (m[:, row, :].sum(0) if params["rows"] == "cls" else m.sum((0, 1)))
            del layer_map
        return [s / (count if params["rows"] == "cls" else count * n) for s, n in zip(sums, batch.lengths)]
