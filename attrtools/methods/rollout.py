"""Attention rollout (Abnar & Zuidema, ACL 2020, "Quantifying Attention Flow in Transformers").

    Ã^l = (mean_h A^l + I) / rowsum(mean_h A^l + I)        (= 0.5·A + 0.5·I: rows of A sum to 1)
    J^1 = Ã^1,   J^l = Ã^l · J^{l-1}

Output kind ``layer_matrix``: the *aggregated* ``J^l`` for every layer, shape ``(L, n, n)``; so
``Attribution.token_scores()`` is the pooling row of ``J^L`` (what the classifier position draws
from each input token). Class-agnostic, one forward pass, no gradient. Same as the official code
(samiraabnar/attention_flow ``compute_joint_attention`` with ``add_residual=True``) and Chefer's
``compute_rollout_attention`` with ``start_layer=0``. The baselines' habit of zeroing the
[CLS] self-entry is left to the caller. Rows of every ``J^l`` sum to 1 (the invariant).
"""
from __future__ import annotations

import torch

from ..capture import capture
from . import register
from .base import Batch, Method


def residual_attention(model, batch: Batch) -> list[torch.Tensor]:
    """Per example ``(L, n, n)``: ``Ã^l`` (head mean + identity, row-normalised), cropped."""
    with torch.no_grad(), capture(model, record="all") as cap:
        model(**batch.inputs)
    mean = torch.stack([a.float().mean(1) for a in cap.attention_list()], dim=1)  # (B, L, n, n)
    out = []
    for b, n in enumerate(batch.lengths):
        m = mean[b, :, :n, :n] + torch.eye(n, device=mean.device)
        out.append(m / m.sum(-1, keepdim=True))
    return out


@register
class Rollout(Method):
    name = "rollout"
    title = "Attention rollout"
    paper = "Abnar, Zuidema. Quantifying Attention Flow in Transformers. ACL 2020"
    kind = "layer_matrix"
    signed = False
    target = "none"
    defaults = {}
    invariant = "every row of every aggregated layer matrix sums to 1"

    def compute(self, model, batch: Batch, units=None, **params):
        self.params(**params)
        out = []
        for layers in residual_attention(model, batch):
            joint, stacked = None, []
            for m in layers:
                joint = m if joint is None else m @ joint
                stacked.append(joint)
            out.append(torch.stack(stacked))
        return out
