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

from . import register
from .base import Batch, Method
from .shared import residual_attention


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
