"""AttAttr: self-attention attribution (Hao, Dong, Wei, Xu; AAAI 2021, arXiv 2004.11207).

Integrated gradients over the attention probabilities of one layer at a time, all heads at once,
with a zero baseline:

    Attr_h(A) = A_h ⊙ ∫_0^1 ∂F_x(αA) / ∂A_h dα  ≈  A_h ⊙ Σ_k w_k ∂F_x(α_k A) / ∂A_h

where ``αA`` replaces the softmax output of the target layer only (layers above see the perturbed
hidden states), and ``F_x`` is the softmax **probability** of the target class.

Protocol of the official code (YRdddream/attattr, ``model_attr.py`` + ``generate_attrscore.py``),
which is the default here: left Riemann sum ``α_k = k/m``, ``k = 0..m-1`` (includes the baseline,
excludes ``A`` itself — a small deviation from the paper's ``k = 1..m``), ``w_k = 1/m``; target =
predicted class (the pruning script uses the gold label: ``target="gold"``). ``m = 20`` here (the
pruning script's value; the tree/trigger scripts use 64). Output ``(L, H, n, n)``, signed, no
normalisation. Completeness per layer: ``Σ Attr^l ≈ F(A) − F(A^l := 0)``.

Fast path (same numbers): the hidden states entering layer ``l`` do not depend on the scaling of
layer ``l``, so one clean forward records them and each IG pass *replays* them, running only
blocks ``l..L-1``; the steps of several examples share one batched pass; padding is to the batch's
longest example; layers other than the target take the fused SDPA path; no parameter gradients.
Options beyond the paper: ``steps_method="gausslegendre"`` (Gauss–Legendre nodes on [0, 1],
exact for polynomials of degree 2m−1) and ``autocast="bf16"`` (GPU), both reported against the
fp32 Riemann result by ``scripts/bench_attattr.py``.
"""
from __future__ import annotations


import numpy as np
import torch

from ..capture import capture
from ..models import num_layers_heads
from . import register
from .base import (INTERNAL_BATCH, TARGET_KIND, Batch, Choice, Int, Method, ParameterError, completeness_record, crop,
                   frozen_parameters, target_score)


STEPS_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def quadrature(steps: int, method: str = "riemann_left") -> tuple[list[float], list[float]]:
    """Nodes α_k in [0, 1] and weights w_k for ∫_0^1 g(α) dα ≈ Σ_k w_k g(α_k)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method == "riemann_left":  # official AttAttr: k = 0..m-1
        return [k / steps for k in range(steps)], [1.0 / steps] * steps
    if method == "riemann_right":  # the paper's k = 1..m
        return [k / steps for k in range(1, steps + 1)], [1.0 / steps] * steps
    if method == "riemann_middle":
        return [(k + 0.5) / steps for k in range(steps)], [1.0 / steps] * steps
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2")
        alphas = [k / (steps - 1) for k in range(steps)]
        weights = [1.0 / (steps - 1)] * steps
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return alphas, weights
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return [float((x + 1) / 2) for x in nodes], [float(w / 2) for w in weights]
    raise ValueError(
        f"unknown steps_method {method!r}; use riemann_left (official), riemann_right, riemann_middle, "
        "riemann_trapezoid or gausslegendre"
    )


@register
class AttAttr(Method):
    name = "attattr"
    title = "Self-attention attribution (AttAttr)"
    paper = "Hao, Dong, Wei, Xu. Self-Attention Attribution: Interpreting Information Interactions Inside Transformer. AAAI 2021"
    kind = "matrix"
    target = "prob"
    defaults = {
        "steps": 20,
        "steps_method": "riemann_left",
        "target_kind": "prob",
        "internal_batch_size": None,
        "autocast": None,
    }
    schema = {"steps": Int(min=1, max=100_000), "steps_method": Choice(*STEPS_METHODS), "target_kind": TARGET_KIND,
              "internal_batch_size": INTERNAL_BATCH, "autocast": Choice("bf16", "bfloat16", "fp32", "none", False, none=True)}

    def check_params(self, params):
        try:
            quadrature(params["steps"], params["steps_method"])
        except ValueError as err:
            raise ParameterError(f"method {self.name!r}: {err}") from None
    invariant = "IG completeness per layer: sum(Attr^l) -> p(A) - p(A^l = 0) as steps grow"

    def units(self, model, params):
        return list(range(num_layers_heads(model)[0]))

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        baseline_scores: dict = {}
        per_layer = attattr_layers(model, batch, layers=units, baseline_scores=baseline_scores,
                                   **params)  # {l: (B, H, n, n)}
        layers = sorted(per_layer)
        full = target_score(batch.logits, batch.targets, params["target_kind"]) if batch.logits is not None else None
        for b in range(batch.size):
            if full is None:
                break
            batch.info[b]["completeness"] = {
                l: completeness_record(float(per_layer[l][b].sum()), float(full[b] - baseline_scores[l][b]))
                for l in layers}
        return [crop(torch.stack([per_layer[l][b] for l in layers]), n, (2, 3))
                for b, n in enumerate(batch.lengths)]


def _autocast(model, autocast):
    if autocast in (None, False, "none", "fp32"):
        return torch.autocast("cpu", enabled=False)
    if autocast not in ("bf16", "bfloat16"):
        raise ValueError(f"autocast must be None or 'bf16', got {autocast!r}")
    device = next(model.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16)


def attattr_layers(model, batch: Batch, layers=None, steps=20, steps_method="riemann_left",
                   target_kind="prob", internal_batch_size=None, autocast=None,
                   baseline_scores: dict | None = None) -> dict[int, torch.Tensor]:
    """AttAttr for the given layers of a padded batch: ``{layer: (B, H, n_pad, n_pad)}``.

    Rows of one pass are (example, step) pairs; ``internal_batch_size`` bounds how many run at
    once (default: about 4096 tokens per pass). ``baseline_scores``, when given, is filled with
    ``{layer: (B,) F(A^l = 0)}`` (the baseline end of the integral, for the completeness gap): the
    rule's own α = 0 node where it has one (official left Riemann), else one extra row per example
    with weight 0.
    """
    if batch.targets is None:
        raise ValueError("AttAttr needs target classes")
    num_layers = num_layers_heads(model)[0]
    layers = list(range(num_layers)) if layers is None else [int(l) for l in layers]
    alphas, weights = quadrature(steps, steps_method)
    if baseline_scores is not None and 0.0 not in alphas:
        alphas, weights = list(alphas) + [0.0], list(weights) + [0.0]
    zero_node = alphas.index(0.0) if baseline_scores is not None else -1
    size, n = batch.size, batch.max_length
    rows_per_pass = internal_batch_size or max(1, 4096 // n)
    targets = batch.targets
    device = targets.device

    # One clean pass: attention of every layer and the hidden states entering every block.
    with torch.no_grad(), capture(model, record="all", record_hidden=True) as clean:
        model(**batch.inputs)
    attention = clean.attention_list()

    # All (example, step) pairs, flattened so passes can mix examples of similar length.
    example_of = torch.arange(size, device=device).repeat_interleave(len(alphas))
    alpha_of = torch.tensor(alphas, device=device, dtype=torch.float32).repeat(size)
    weight_of = torch.tensor(weights, device=device, dtype=torch.float32).repeat(size)

    result = {}
    with frozen_parameters(model):
        for layer in layers:
            grad_sum = torch.zeros_like(attention[layer], dtype=torch.float32)
            at_zero = torch.zeros(size, dtype=torch.float32, device=device)
            hidden = clean.hidden_inputs[layer]
            for start in range(0, example_of.numel(), rows_per_pass):
                rows = example_of[start:start + rows_per_pass]
                alpha = alpha_of[start:start + rows_per_pass].view(-1, 1, 1, 1)
                scaled = (attention[layer][rows].float() * alpha).requires_grad_(True)
                with capture(model, override={layer: scaled}, replay=(layer, hidden[rows])), \
                        _autocast(model, autocast):
                    logits = model(**batch.select(rows)).logits
                score = target_score(logits, targets[rows], target_kind)
                (grad,) = torch.autograd.grad((score * weight_of[start:start + rows_per_pass]).sum(), scaled)
                grad_sum.index_add_(0, rows, grad.float())
                if zero_node >= 0:
                    node = (torch.arange(start, start + rows.numel(), device=device) % len(alphas)) == zero_node
                    at_zero.index_copy_(0, rows[node], score.detach().float()[node])
            result[layer] = attention[layer].float() * grad_sum
            if baseline_scores is not None:
                baseline_scores[layer] = at_zero
    return result
