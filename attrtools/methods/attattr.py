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
On post-LN encoders the *decomposed* schedule also uses that the target layer's attention output
is linear in the scaled probabilities and that only the pooled row of the last block reaches the
classifier (see ``_decomposed``; checked against the model's own forward on every batch).
``schedule_flops`` is the cost model of every schedule (equal to torch's FLOP count in the tests).
Options beyond the paper: ``steps_method="gausslegendre"`` (Gauss–Legendre nodes on [0, 1],
exact for polynomials of degree 2m−1) and ``autocast="bf16"`` (GPU), both reported against the
fp32 Riemann result by ``scripts/bench_attattr.py``.
"""
from __future__ import annotations


import numpy as np
import torch

from ..capture import PostLNBlock, capture, layer_hook
from ..models import adapter_for, num_layers_heads, pool_position
from ..precision import to_model
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
                   baseline_scores: dict | None = None, schedule: str = "auto") -> dict[int, torch.Tensor]:
    """AttAttr for the given layers of a padded batch: ``{layer: (B, H, n_pad, n_pad)}``.

    Rows of one pass are (example, step) pairs; ``internal_batch_size`` bounds how many run at
    once (default: about 4096 tokens per pass). ``baseline_scores``, when given, is filled with
    ``{layer: (B,) F(A^l = 0)}`` (the baseline end of the integral, for the completeness gap): the
    rule's own α = 0 node where it has one (official left Riemann), else one extra row per example
    with weight 0. ``schedule``: ``"decomposed"`` (post-LN encoders pooling the first token; see
    :func:`_decomposed`), ``"replay"`` (any architecture), or ``"auto"``: decomposed where the
    model's blocks pass the check against its own forward, else replay. Both give the official
    numbers; the choice is not part of the cache key.
    """
    if batch.targets is None:
        raise ValueError("AttAttr needs target classes")
    if schedule not in ("auto", "decomposed", "replay"):
        raise ValueError(f"schedule must be 'auto', 'decomposed' or 'replay', got {schedule!r}")
    num_layers = num_layers_heads(model)[0]
    layers = list(range(num_layers)) if layers is None else [int(l) for l in layers]
    alphas, weights = quadrature(steps, steps_method)
    if baseline_scores is not None and 0.0 not in alphas:
        alphas, weights = list(alphas) + [0.0], list(weights) + [0.0]
    zero_node = alphas.index(0.0) if baseline_scores is not None else -1
    n = batch.max_length
    rows_per_pass = internal_batch_size or max(1, 4096 // n)

    # One clean pass: attention of every layer, the hidden states entering every block and the
    # last block's output (for the check of the decomposed schedule).
    final = {}
    handle = layer_hook(model, num_layers - 1, None, lambda module, args, output: final.__setitem__(
        "out", (output[0] if isinstance(output, tuple) else output).detach()))
    try:
        with torch.no_grad(), capture(model, record="all", record_hidden=True) as clean:
            model(**batch.inputs)
    finally:
        handle.remove()
    attention = clean.attention_list()
    plan = _Plan(batch, alphas, weights, rows_per_pass, zero_node)

    if schedule != "replay":
        pieces = _decomposable(model, batch, attention, clean.hidden_inputs, final.get("out"), layers)
        if pieces is not None:
            return _decomposed(model, batch, layers, attention, clean.hidden_inputs, *pieces, plan, target_kind,
                               autocast, baseline_scores)
        if schedule == "decomposed":
            raise ValueError("this model's blocks do not match the decomposed schedule (post-LN encoder "
                             "blocks pooling the first token); use schedule='replay'")
    return _replay(model, batch, layers, attention, clean.hidden_inputs, plan, target_kind, autocast,
                   baseline_scores)


class _Plan:
    """All (example, step) rows of a batch, flattened so passes can mix examples; ``zero_node``: the
    index of the α = 0 node whose scores are kept (-1: none)."""

    def __init__(self, batch: Batch, alphas, weights, rows_per_pass: int, zero_node: int = -1):
        device = batch.targets.device
        self.size, self.device, self.nodes, self.zero_node = batch.size, device, len(alphas), zero_node
        self.example_of = torch.arange(batch.size, device=device).repeat_interleave(len(alphas))
        self.alpha_of = torch.tensor(alphas, device=device, dtype=torch.float32).repeat(batch.size)
        self.weight_of = torch.tensor(weights, device=device, dtype=torch.float32).repeat(batch.size)
        self.rows_per_pass = rows_per_pass

    def passes(self):
        for start in range(0, self.example_of.numel(), self.rows_per_pass):
            stop = start + self.rows_per_pass
            yield start, self.example_of[start:stop], self.alpha_of[start:stop], self.weight_of[start:stop]

    def baseline(self):
        return torch.zeros(self.size, dtype=torch.float32, device=self.device)

    def keep_baseline(self, at_zero, start, rows, score):
        if self.zero_node >= 0:
            node = (torch.arange(start, start + rows.numel(), device=self.device) % self.nodes) == self.zero_node
            at_zero.index_copy_(0, rows[node], score.detach().float()[node])


def _replay(model, batch, layers, attention, hidden, plan, target_kind, autocast, baseline_scores=None):
    """Any architecture: per target layer, the blocks from that layer up are run for every step with
    the layer's probabilities replaced by ``alpha * A`` (the blocks below are replayed)."""
    result = {}
    with frozen_parameters(model):
        for layer in layers:
            grad_sum = torch.zeros_like(attention[layer], dtype=torch.float32)
            at_zero = plan.baseline()
            for start, rows, alpha, weight in plan.passes():
                scaled = (attention[layer][rows].float() * alpha.view(-1, 1, 1, 1)).requires_grad_(True)
                with capture(model, override={layer: scaled}, replay=(layer, hidden[layer][rows])), \
                        _autocast(model, autocast):
                    logits = model(**batch.select(rows)).logits
                score = target_score(logits, batch.targets[rows], target_kind)
                (grad,) = torch.autograd.grad((score * weight).sum(), scaled)
                grad_sum.index_add_(0, rows, grad.float())
                plan.keep_baseline(at_zero, start, rows, score)
            result[layer] = attention[layer].float() * grad_sum
            if baseline_scores is not None:
                baseline_scores[layer] = at_zero
    return result


def _decomposable(model, batch, attention, hidden, final_output, layers, tolerance: float = 1e-4):
    """``(blocks, prepared)`` if the :class:`PostLNBlock` pieces reproduce this batch's clean forward
    (each block's output from its recorded attention, and the last block's pooled row), else None.
    ``prepared[l] = (V, P)`` for the target layers: values per head and ``P = (A V) W_O^T``."""
    adapter = adapter_for(model)
    position = pool_position(model)
    if adapter.pre_norm or position < 0 or final_output is None:
        return None
    try:
        blocks = [PostLNBlock(model, l) for l in range(len(attention))]
        outputs = [hidden[l + 1] for l in range(len(attention) - 1)] + [final_output]
        mask = batch.inputs["attention_mask"]
        prepared = {}
        with torch.no_grad():
            for l, block in enumerate(blocks):
                h = hidden[l]
                values = block.values(h)
                projected = block.project(torch.matmul(attention[l].to(values.dtype), values))
                if not _close(block.after_attention(projected, h), outputs[l], mask, tolerance):
                    return None
                if l in layers:
                    prepared[l] = (values.float(), projected.float())
            pooled = blocks[-1].pooled(hidden[len(blocks) - 1], mask, position)
            if not _close(pooled, final_output[:, position:position + 1], None, tolerance):
                return None
    except (AttributeError, RuntimeError, ValueError, KeyError, TypeError):
        return None
    return blocks, prepared


def _close(ours, reference, mask, tolerance) -> bool:
    if ours.shape != reference.shape:
        return False
    diff = (ours.float() - reference.float()).abs()
    if mask is not None:  # padded rows are never read
        diff = diff * mask.view(*mask.shape, 1).to(diff.dtype)
    return bool(diff.max() <= tolerance * max(1.0, float(reference.float().abs().max())))


def _decomposed(model, batch, layers, attention, hidden, blocks, prepared, plan, target_kind, autocast,
                baseline_scores=None):
    """Post-LN encoders: the same integral with less work per step.

    In target layer ``l`` the context is linear in the scaled probabilities:
    ``(αA) V W_O^T = α P`` with ``P = (A V) W_O^T`` formed once. So a step only runs
    ``after_attention(αP, h)`` (LayerNorms and FFN) in layer ``l``, the blocks above it, and in the
    last block only the pooled row (its query row; keys and values of every token). The gradient
    is taken with respect to ``u = αP`` and, being linear in it, mapped back once:
    ``Σ_k w_k ∂F/∂S_k = ((Σ_k w_k ∂F/∂u_k) W_O)_h V_hᵀ`` per head. When the target is the last
    layer only the pooled row of ``u`` matters (the other rows' gradient is exactly 0).
    """
    num_layers = len(attention)
    last = num_layers - 1
    position = pool_position(model)
    mask = batch.inputs["attention_mask"]
    n = batch.max_length
    result = {}
    with frozen_parameters(model):
        for layer in layers:
            block = blocks[layer]
            values, projected = prepared[layer]
            if layer == last:
                projected = projected[:, position:position + 1]
            grad_sum = torch.zeros_like(projected, dtype=torch.float32)
            at_zero = plan.baseline()
            for start, rows, alpha, weight in plan.passes():
                u = (projected[rows] * alpha.view(-1, 1, 1)).requires_grad_(True)  # fp32 leaf
                replace = _step_blocks(blocks, layer, to_model(u, model), mask[rows], position, n)
                with capture(model, replay=(layer, hidden[layer][rows]), replace=replace), \
                        _autocast(model, autocast):
                    logits = model(**batch.select(rows)).logits
                score = target_score(logits, batch.targets[rows], target_kind)
                (grad,) = torch.autograd.grad((score * weight).sum(), u)
                grad_sum.index_add_(0, rows, grad.float())
                plan.keep_baseline(at_zero, start, rows, score)
            if baseline_scores is not None:
                baseline_scores[layer] = at_zero
            with torch.no_grad():
                grad_context = block._heads(torch.matmul(grad_sum, block.output.weight.float()))  # (B, H, r, d_h)
                grad_scaled = torch.matmul(grad_context, values.transpose(2, 3))  # (B, H, r, n)
                if layer == last:
                    full = torch.zeros_like(attention[layer], dtype=torch.float32)
                    full[:, :, position:position + 1] = grad_scaled
                    grad_scaled = full
                result[layer] = attention[layer].float() * grad_scaled
    return result


def _step_blocks(blocks, layer, u, key_mask, position, n):
    """Block replacements for one pass of target ``layer`` (rows of ``u``)."""
    last = len(blocks) - 1
    if layer == last:
        return {layer: lambda h: blocks[layer].after_attention(u, h[:, position:position + 1]).expand(-1, n, -1)}
    return {layer: lambda h: blocks[layer].after_attention(u, h),
            last: lambda h: blocks[last].pooled(h, key_mask, position).expand(-1, n, -1)}


# ----------------------------------------------------------------------------------- cost model
def schedule_flops(schedule: str, layers: int, hidden: int, intermediate: int, tokens: int, steps: int,
                   classes: int = 2, pad_to: int | None = None) -> float:
    """FLOPs (2 per multiply-add) of matrix products for one example's AttAttr over all layers of a
    BERT-like encoder (``layers`` blocks of width ``hidden``, FFN width ``intermediate``, pooler +
    classifier head), by schedule; elementwise work (LayerNorm, GELU, softmax) is not counted.

    - ``"official-style"``: :func:`attrtools.testing.official_style_attattr`, the benchmark's
      baseline: input padded to ``pad_to`` (default ``tokens``) and repeated for the ``steps`` rows
      (transformers 5 cannot broadcast the override), a clean forward per target layer.
    - ``"official"``: the official code, where the batch-1 input broadcasts inside the target layer,
      so the blocks below it run once per pass.
    - ``"replay"`` and ``"decomposed"``: :func:`attattr_layers`' schedules at the real length, with
      the engine's clean forward and the method's clean pass (and the decomposed check).

    No schedule computes parameter gradients: ``autograd.grad(..., S)`` only follows the paths to
    the scaled probabilities ``S`` (the official code does the same).
    """
    L, d, f, m = layers, hidden, intermediate, steps
    n = pad_to if schedule.startswith("official") and pad_to else tokens

    def forward(r):  # one block, r tokens
        return 8 * r * d * d + 4 * r * d * f + 4 * r * r * d

    def backward(r):  # input gradients only: linear layers as forward, four attention products
        return 8 * r * d * d + 4 * r * d * f + 8 * r * r * d

    head = 2 * d * d + 2 * d * classes  # pooler + classifier, one row
    target_back = 4 * n * d * f + 2 * n * d * d + 2 * n * n * d  # FFN, W_O and dS = dO V^T in the target block
    total = 0.0
    if schedule == "official-style":
        for l in range(L):
            total += L * forward(n) + head  # clean forward per target layer
            total += m * (L * forward(n) - 2 * n * n * d + 2 * head + (L - 1 - l) * backward(n) + target_back)
        return float(total)
    if schedule == "official":
        for l in range(L):
            total += L * forward(n) + head
            total += l * forward(n) + 6 * n * d * d  # prefix and the target layer's Q, K, V at batch 1
            total += m * (2 * n * n * d + 2 * n * d * d + 4 * n * d * f + (L - 1 - l) * forward(n) + 2 * head
                          + (L - 1 - l) * backward(n) + target_back)
        return float(total)
    clean = 2 * (L * forward(n) + head)  # the engine's forward and the method's recording pass
    if schedule == "replay":
        total = clean
        for l in range(L):
            total += m * ((L - l) * forward(n) - 2 * n * n * d + 2 * head + (L - 1 - l) * backward(n) + target_back)
        return float(total)
    if schedule == "decomposed":
        ffn = 4 * n * d * f
        row = 4 * d * d + 4 * d * f + 4 * n * d  # the pooled row's Q, W_O, FFN and attention
        pooled_fwd, pooled_back = 4 * n * d * d + row, 4 * n * d * d + row + 4 * n * d
        total = clean + L * (4 * n * d * d + 2 * n * n * d + ffn) + pooled_fwd  # check (and V, P)
        for l in range(L):
            middle = max(0, L - 2 - l)
            if l < L - 1:
                per_step = 2 * ffn + middle * (forward(n) + backward(n)) + pooled_fwd + pooled_back + 2 * head
                total += m * per_step + 2 * n * d * d + 2 * n * n * d  # gradient mapped back once: W_O, V^T
            else:
                total += m * (2 * 4 * d * f + 2 * head) + 2 * d * d + 2 * n * d
        return float(total)
    raise ValueError(f"unknown schedule {schedule!r}; use official-style, official, replay or decomposed")
