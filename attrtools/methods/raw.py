"""Raw attention probabilities, every layer and head.

``scores[l, h, i, j] = A^l_h[i, j]`` (softmax output, query i, key j), shape ``(L, H, n, n)``.
The baseline every attention paper compares against; class-agnostic.
"""
from __future__ import annotations

import torch

from ..capture import capture
from . import register
from .base import Batch, Method, crop


@register
class RawAttention(Method):
    name = "raw"
    title = "Raw attention"
    paper = "Vaswani et al., NeurIPS 2017 (attention weights as explanation: baseline in all four papers)"
    kind = "matrix"
    signed = False
    target = "none"
    defaults = {}
    invariant = "every row of every head sums to 1 over real tokens"

    @torch.no_grad()
    def compute(self, model, batch: Batch, units=None, **params):
        with capture(model, record="all") as cap:
            model(**batch.inputs)
        stacked = torch.stack(cap.attention_list(), dim=1)  # (B, L, H, n, n)
        return [crop(stacked[b], n, (2, 3)) for b, n in enumerate(batch.lengths)]
