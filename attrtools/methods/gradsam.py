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

from ..capture import capture
from ..models import adapter_for, get_module, pool_position
from . import register
from .base import Batch, Method, frozen_parameters, target_score, Choice, TARGET_KIND


class embedding_leaf:
    """Context: parameters frozen and the output of the embedding module (the hidden states
    entering layer 0) replaced by a detached leaf that requires grad, so gradients w.r.t.
    activations (attention, hidden states) flow while no parameter gradient is computed.
    ``self.leaf`` holds that tensor after the forward."""

    def __init__(self, model, transform=None):
        self.model = model
        self.transform = transform
        self.leaf = None

    def _hook(self, module, args, output):
        leaf = output.detach().requires_grad_(True)
        self.leaf = leaf
        return self.transform(leaf) if self.transform is not None else leaf

    def __enter__(self):
        self._frozen = frozen_parameters(self.model)
        self._frozen.__enter__()
        embeddings = get_module(self.model, adapter_for(self.model).embeddings)
        self._handle = embeddings.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        self._frozen.__exit__(*exc)
        return False


def pool_rows(model, lengths) -> list[int]:
    """Row of the token the classifier reads, per example (0 = [CLS]; last real token for decoders)."""
    pool = pool_position(model)
    return [pool if pool >= 0 else n + pool for n in lengths]


def attention_and_gradients(model, batch: Batch, target_kind: str = "logit"):
    """One forward + one backward: ``(attentions, gradients)``, each a list over layers of
    ``(B, H, n, n)`` tensors (detached), gradients of the target score of each example."""
    if batch.targets is None:
        raise ValueError("this method needs target classes")
    with embedding_leaf(model), torch.enable_grad(), capture(model, record="all", retain_grad=True) as cap:
        logits = model(**batch.inputs).logits
        attentions = cap.attention_list()
        score = target_score(logits, batch.targets, target_kind)
        grads = torch.autograd.grad(score.sum(), attentions)
    return [a.detach().float() for a in attentions], [g.float() for g in grads]


@register
class GradSAM(Method):
    name = "gradsam"
    title = "Grad-SAM (gradient self-attention maps)"
    paper = ("Barkan, Hauon, Caciularu, Katz, Malkiel, Armstrong, Koenigstein. Grad-SAM: Explaining Transformers "
             "via Gradient Self-Attention Maps. CIKM 2021")
    kind = "tokens"
    target = "logit"
    defaults = {"target_kind": "logit", "rows": "all"}
    schema = {"target_kind": TARGET_KIND, "rows": Choice("all", "cls")}
    invariant = "scores >= 0 (attention times ReLU of its gradient)"

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        if params["rows"] not in ("all", "cls"):
            raise ValueError(f"rows must be 'all' or 'cls', got {params['rows']!r}")
        attentions, grads = attention_and_gradients(model, batch, params["target_kind"])
        # (B, L, H, n, n)
        maps = torch.stack([a * torch.relu(g) for a, g in zip(attentions, grads)], dim=1)
        out = []
        for b, (n, row) in enumerate(zip(batch.lengths, pool_rows(model, batch.lengths))):
            m = maps[b, :, :, :n, :n]
            if params["rows"] == "cls":
                out.append(m[:, :, row, :].mean((0, 1)).contiguous())
            else:
                out.append(m.mean((0, 1, 2)).contiguous())
        return out
