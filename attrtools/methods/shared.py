"""Helpers shared by several attribution methods (not a method: the registry skips this module).

- ``embedding_leaf``: gradients with respect to activations, none for parameters;
- ``pool_rows``: the row of the token the classifier reads, per example;
- ``attention_and_gradients``: attention probabilities of every layer and their gradients of the
  explained class score, in one forward and one backward pass (Grad-SAM, Chefer 2021b);
- ``residual_attention``: each layer's head-mean attention plus the identity, row-normalised (rollout,
  attention flow);
- ``aggregate_hidden``: a per-token score from a hidden-size vector (gradient × input, IG on embeddings);
- ``rows_per_pass``: how many interpolation rows one forward and backward pass holds (IG on embeddings).
"""
from __future__ import annotations

import torch

from ..capture import capture
from ..adapters import adapter_for
from ..architecture import get_module, num_layers_heads, pool_position, pool_positions
from .base import Batch, frozen_parameters, target_score


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


def pool_rows(model, lengths, input_ids=None) -> list[int]:
    """Row of the token the classifier reads, per example (0 = [CLS]; for decoders the model's own
    last-non-pad rule, ``architecture.pool_positions``, on the right-padded ``(B, n)`` ``input_ids``; without
    them, the last real token)."""
    if input_ids is not None:
        return [int(p) for p in pool_positions(model, input_ids)]
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
        score = target_score(logits, batch.targets, target_kind, model)
        grads = torch.autograd.grad(score.sum(), attentions)
    return [a.detach().float() for a in attentions], [g.float() for g in grads]


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


def aggregate_hidden(values: torch.Tensor, aggregate: str) -> torch.Tensor:
    """Per-token score of ``values (..., d)``: its L2 norm (``"l2"``) or its sum (``"sum"``, signed) over ``d``."""
    if aggregate == "l2":
        return values.norm(dim=-1)
    if aggregate == "sum":
        return values.sum(-1)
    raise ValueError(f"aggregate must be 'l2' or 'sum', got {aggregate!r}")


TOKENS_PER_PASS = 4096  # rows × tokens of one pass at short lengths (the batching that pays on CPU and GPU)
ATTENTION_PER_PASS = 1 << 25  # attention probabilities (floats) one pass keeps for backward: 128 MB in fp32


def rows_per_pass(model, n: int, tokens: int = TOKENS_PER_PASS, attention: int = ATTENTION_PER_PASS) -> int:
    """Rows (interpolation points of one example, or of several) one forward + backward pass holds:
    about ``tokens`` tokens, and at most ``attention`` attention probabilities kept for backward
    (``L·H·n²`` per row of ``n`` tokens). The second bound decides only at long inputs: 8 rows of 512
    tokens kept 8·L·H·n² floats, and ``ig_embed`` peaked at 11.6 × (result + model) on all-MiniLM-L6-v2
    (docs/precision-and-state.md); from about 300 tokens on MiniLM it gives fewer rows, at 512 one."""
    layers, heads = num_layers_heads(model)
    per_row = max(1, layers * heads * n * n)
    return max(1, min(tokens // max(n, 1), attention // per_row))
