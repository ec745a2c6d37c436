"""AttAttr: self-attention attribution (Hao, Dong, Wei, Xu; AAAI 2021, arXiv 2004.11207).

Integrated gradients over the attention probabilities of one layer at a time, all heads at once,
with a zero baseline:

    Attr_h(A) = A_h ⊙ ∫_0^1 ∂F_x(αA) / ∂A_h dα  ≈  A_h ⊙ Σ_k w_k ∂F_x(α_k A) / ∂A_h

where ``αA`` replaces the softmax output of the target layer only (layers above see the perturbed
hidden states), and ``F_x`` is the softmax **probability** of the target class.

Default (``steps="auto"``, ``tolerance=1e-3``): the integral to a relative error of 1e-3 per
(example, layer) on the (H, n, n) scores, with the nested rule of
:mod:`attrtools.methods.integration` (1, 3, 7, 15, 31, 63 nodes; each level's estimate is its
difference from the level below). Each result's ``completeness`` records the rule, the passes
used, the estimate and whether the tolerance was met, next to the completeness gap (an
independent check).

Protocol of the official code (YRdddream/attattr, ``model_attr.py`` + ``generate_attrscore.py``),
``steps=20`` (any integer: ``steps_method`` defaults to it) or ``protocol="official"`` in the
tools: left Riemann sum ``α_k = k/m``, ``k = 0..m-1`` (includes the baseline, excludes ``A``
itself — a small deviation from the paper's ``k = 1..m``), ``w_k = 1/m``; target = predicted
class (the pruning script uses the gold label: ``target="gold"``). ``m = 20`` in the pruning
script, 64 in the tree/trigger scripts. It is about 1e-1 away from the integral on a fine-tuned
MiniLM (docs/integrated-gradients.md). Output ``(L, H, n, n)``, signed, no normalisation.
Completeness per layer: ``Σ Attr^l ≈ F(A) − F(A^l := 0)``.

Fast path (same numbers): the hidden states entering layer ``l`` do not depend on the scaling of
layer ``l``, so one clean forward records them and each IG pass *replays* them, running only
blocks ``l..L-1``; the steps of several examples share one batched pass; padding is to the batch's
longest example; layers other than the target take the fused SDPA path; no parameter gradients.
On post-LN encoders the *decomposed* schedule also uses that the target layer's attention output
is linear in the scaled probabilities and that only the pooled row of the last block reaches the
classifier (see ``_Decomposed``; checked against the model's own forward on every batch).
``schedule_flops`` is the cost model of every schedule (equal to torch's FLOP count in the tests).
Options beyond the paper: ``steps_method="gausslegendre"`` (Gauss–Legendre nodes on [0, 1],
exact for polynomials of degree 2m−1) and ``autocast="bf16"`` (GPU), both reported against the
fp32 Riemann result by ``scripts/bench_attattr.py``.
"""
from __future__ import annotations


import torch

from ..capture import PostLNBlock, capture, layer_hook
from ..adapters import adapter_for
from ..architecture import num_layers_heads, pool_position
from ..precision import to_model
from . import register
from .base import (INTERNAL_BATCH, TARGET_KIND, Batch, Choice, Float, Method, completeness_record, crop,
                   frozen_parameters, target_score)
from .integration import (AUTO, DEFAULT_TOLERANCE, STEPS_METHODS, StepsParam, first_level_from_history,
                          integrate_adaptive, integration_record, precision_floor, quadrature, resolve_rule)


@register
class AttAttr(Method):
    name = "attattr"
    title = "Self-attention attribution (AttAttr)"
    paper = "Hao, Dong, Wei, Xu. Self-Attention Attribution: Interpreting Information Interactions Inside Transformer. AAAI 2021"
    kind = "matrix"
    defaults = {
        "steps": AUTO,
        "steps_method": None,
        "tolerance": DEFAULT_TOLERANCE,
        "target_kind": "prob",
        "internal_batch_size": None,
        "autocast": None,
    }
    schema = {"steps": StepsParam(), "steps_method": Choice(*STEPS_METHODS, none=True),
              "tolerance": Float(above=0, max=1, none=True), "target_kind": TARGET_KIND,
              "internal_batch_size": INTERNAL_BATCH, "autocast": Choice("bf16", "bfloat16", "fp32", "none", False, none=True)}

    def check_params(self, params):
        resolve_rule(self.name, params, "riemann_left")
        if params["steps"] != AUTO:  # a fixed rule has no estimate: the tolerance plays no part (nor in the key)
            params["tolerance"] = None
    invariant = "IG completeness per layer: sum(Attr^l) -> p(A) - p(A^l = 0) as steps grow"

    def units(self, model, params):
        return list(range(num_layers_heads(model)[0]))

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        baseline_scores: dict = {}
        records: dict = {}
        per_layer = attattr_layers(model, batch, layers=units, baseline_scores=baseline_scores, records=records,
                                   **params)  # {l: (B, H, n, n)}
        layers = sorted(per_layer)
        full = target_score(batch.logits, batch.targets, params["target_kind"], model) if batch.logits is not None else None
        for b in range(batch.size):
            if full is None:
                break
            batch.info[b]["completeness"] = {
                l: dict(completeness_record(float(per_layer[l][b].sum()), float(full[b] - baseline_scores[l][b])),
                        **records[l][b])
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
                   baseline_scores: dict | None = None, schedule: str = "auto", tolerance=DEFAULT_TOLERANCE,
                   records: dict | None = None) -> dict[int, torch.Tensor]:
    """AttAttr for the given layers of a padded batch: ``{layer: (B, H, n_pad, n_pad)}``.

    ``steps``: an integer (the fixed rule ``steps_method``; default the official left Riemann sum)
    or ``"auto"``: each (example, layer) climbs the nested rule of
    :mod:`attrtools.methods.integration` until its relative error estimate meets ``tolerance``
    (``steps_method`` None or ``"patterson"``), or the precision floor of a bf16/fp16 model or
    ``autocast="bf16"`` where that is larger (:func:`~attrtools.methods.integration.precision_floor`;
    the records say so). Rows of one pass are (example, step) pairs;
    ``internal_batch_size`` bounds how many run at once (default: about 4096 tokens per pass).
    ``baseline_scores``, when given, is filled with ``{layer: (B,) F(A^l = 0)}`` (the baseline end
    of the integral, for the completeness gap): the rule's own α = 0 node where it has one
    (official left Riemann), else one extra row per example with weight 0. ``records``, when given,
    is filled with ``{layer: [integration_record per example]}`` (rule, passes, estimate).
    ``schedule``: ``"decomposed"`` (post-LN encoders pooling the first token; see
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
    adaptive = steps == AUTO
    if adaptive:
        alphas, weights = [0.0], [0.0]  # the α = 0 row only (the nested rule's own rows come level by level)
        tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
        floor = precision_floor(torch.bfloat16 if autocast in ("bf16", "bfloat16") else next(model.parameters()).dtype)
    else:
        # (alphas, weights) given as steps_method: an explicit rule (tests' references; not a method parameter)
        alphas, weights = steps_method if isinstance(steps_method, tuple) else quadrature(steps, steps_method or
                                                                                          "riemann_left")
        if baseline_scores is not None and 0.0 not in alphas:
            alphas, weights = list(alphas) + [0.0], list(weights) + [0.0]
    zero_node = alphas.index(0.0) if (baseline_scores is not None or adaptive) else -1
    rows_per_pass = internal_batch_size or max(1, 4096 // batch.max_length)
    plan = _Plan(batch, alphas, weights, rows_per_pass, zero_node)
    stepper = _stepper(model, batch, layers, schedule, target_kind, autocast)
    result = {}
    history: list = []  # passes of the previous layer's integrals: where to start the next layer's ladder
    with frozen_parameters(model):
        for layer in layers:
            stepper.start(layer)
            at_zero = plan.baseline()
            if adaptive:  # the α = 0 rows ride along with the ladder's first level
                result[layer], layer_records = _adaptive_layer(stepper, batch, rows_per_pass, tolerance, at_zero,
                                                               first_level_from_history(history), floor)
                history = [r["passes"] for r in layer_records]
            else:
                result[layer] = _fixed_layer(stepper, plan, batch, at_zero)
                rule = "explicit" if isinstance(steps_method, tuple) else steps_method or "riemann_left"
                passes = len(steps_method[1]) if isinstance(steps_method, tuple) else steps
                layer_records = [integration_record(rule, passes, None, None)] * batch.size
            if baseline_scores is not None:
                baseline_scores[layer] = at_zero
            if records is not None:
                records[layer] = layer_records
    return result


def _stepper(model, batch: Batch, layers, schedule: str, target_kind, autocast):
    """The schedule's stepper (:class:`_Decomposed` or :class:`_Replay`) after one clean pass that
    records the attention of every layer, the hidden states entering every block and the last
    block's output (for the check of the decomposed schedule)."""
    num_layers = num_layers_heads(model)[0]
    final = {}
    handle = layer_hook(model, num_layers - 1, None, lambda module, args, output: final.__setitem__(
        "out", (output[0] if isinstance(output, tuple) else output).detach()))
    try:
        with torch.no_grad(), capture(model, record="all", record_hidden=True) as clean:
            model(**batch.inputs)
    finally:
        handle.remove()
    attention = clean.attention_list()
    if schedule != "replay":
        pieces = _decomposable(model, batch, attention, clean.hidden_inputs, final.get("out"), layers)
        if pieces is not None:
            return _Decomposed(model, batch, attention, clean.hidden_inputs, *pieces, target_kind, autocast)
        if schedule == "decomposed":
            raise ValueError("this model's blocks do not match the decomposed schedule (post-LN encoder "
                             "blocks pooling the first token); use schedule='replay'")
    return _Replay(model, batch, attention, clean.hidden_inputs, target_kind, autocast)


def _fixed_layer(stepper, plan: "_Plan", batch: Batch, at_zero: torch.Tensor) -> torch.Tensor:
    """A fixed rule for the current layer of ``stepper``: ``(B, H, n, n)``; ``at_zero`` gets the
    scores of the rule's α = 0 rows (``plan.zero_node``)."""
    grad_sum = None
    for start, rows, alpha, weight in plan.passes():
        grad, score = stepper.step(rows, alpha, weight)
        grad_sum = grad_sum if grad_sum is not None else torch.zeros(
            (batch.size,) + tuple(grad.shape[1:]), dtype=torch.float32, device=grad.device)
        grad_sum.index_add_(0, rows, grad.float())
        plan.keep_baseline(at_zero, start, rows, score)
    return stepper.finish(grad_sum, torch.arange(batch.size, device=batch.targets.device))


def _adaptive_layer(stepper, batch: Batch, rows_per_pass: int, tolerance: float, at_zero: torch.Tensor,
                    first_level: int = 1, floor: float | None = None):
    """The nested rule for every example of the current layer of ``stepper``; ``((B, H, n, n),
    [integration_record per example])``. ``at_zero`` is filled with ``F`` at ``α = 0`` (one extra
    row per example in the first evaluation, its gradient dropped). ``first_level``: the ladder level
    fetched in the first pass (``integrate_adaptive``; the same results at any level); ``floor``: the
    precision floor of the model's dtype (``precision_floor``)."""
    device = batch.targets.device
    first = [True]

    def evaluate(pairs):
        extra = list(range(batch.size)) if first[0] else []
        first[0] = False
        rows = torch.tensor([b for b, _ in pairs] + extra, dtype=torch.long, device=device)
        alpha = torch.tensor([a for _, a in pairs] + [0.0] * len(extra), dtype=torch.float32, device=device)
        ones = torch.ones_like(alpha)
        out, scores = [], []
        for start in range(0, rows.numel(), rows_per_pass):
            grad, score = stepper.step(rows[start:start + rows_per_pass], alpha[start:start + rows_per_pass],
                                       ones[start:start + rows_per_pass])
            out.extend(grad.float().unbind(0))
            scores.append(score.detach().float())
        if extra:
            at_zero.copy_(torch.cat(scores)[len(pairs):])
        return out[:len(pairs)]

    def finish(b, integral):
        return stepper.finish(integral.unsqueeze(0), torch.tensor([b], device=device))[0]

    done = integrate_adaptive(list(range(batch.size)), evaluate, finish, tolerance, first_level=first_level,
                              floor=floor)
    return torch.stack([done[b][0] for b in range(batch.size)]), [done[b][1] for b in range(batch.size)]


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


def _scored_pass(model, batch, rows, leaf, weight, target_kind, autocast, **capture_kwargs):
    """One integration pass of both schedules: the forward of ``rows`` under ``capture(**capture_kwargs)``
    (the replayed prefix and the scaled quantity), the target score, and the gradient of the
    ``weight``-ed scores with respect to ``leaf`` (the quantity scaled by α). Returns ``(grad, score)``."""
    with capture(model, **capture_kwargs), _autocast(model, autocast):
        logits = model(**batch.select(rows)).logits
    score = target_score(logits, batch.targets[rows], target_kind, model)
    (grad,) = torch.autograd.grad((score * weight).sum(), leaf)
    return grad, score


class _Replay:
    """Any architecture: per target layer, the blocks from that layer up are run for every step with
    the layer's probabilities replaced by ``alpha * A`` (the blocks below are replayed). The
    gradient of a pass is with respect to the scaled probabilities ``(R, H, n, n)``."""

    def __init__(self, model, batch, attention, hidden, target_kind, autocast):
        self.model, self.batch, self.attention, self.hidden = model, batch, attention, hidden
        self.target_kind, self.autocast, self.layer = target_kind, autocast, None

    def start(self, layer):
        self.layer = layer

    def step(self, rows, alpha, weight):
        layer, batch = self.layer, self.batch
        scaled = (self.attention[layer][rows].float() * alpha.view(-1, 1, 1, 1)).requires_grad_(True)
        return _scored_pass(self.model, batch, rows, scaled, weight, self.target_kind, self.autocast,
                            override={layer: scaled}, replay=(layer, self.hidden[layer][rows]))

    def finish(self, grad_sum, examples):
        return self.attention[self.layer][examples].float() * grad_sum


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


class _Decomposed:
    """Post-LN encoders: the same integral with less work per step.

    In target layer ``l`` the context is linear in the scaled probabilities:
    ``(αA) V W_O^T = α P`` with ``P = (A V) W_O^T`` formed once. So a step only runs
    ``after_attention(αP, h)`` (LayerNorms and FFN) in layer ``l``, the blocks above it, and in the
    last block only the pooled row (its query row; keys and values of every token). The gradient
    is taken with respect to ``u = αP`` and, being linear in it, mapped back once (``finish``):
    ``Σ_k w_k ∂F/∂S_k = ((Σ_k w_k ∂F/∂u_k) W_O)_h V_hᵀ`` per head. When the target is the last
    layer only the pooled row of ``u`` matters (the other rows' gradient is exactly 0).
    """

    def __init__(self, model, batch, attention, hidden, blocks, prepared, target_kind, autocast):
        self.model, self.batch, self.attention, self.hidden = model, batch, attention, hidden
        self.blocks, self.prepared, self.target_kind, self.autocast = blocks, prepared, target_kind, autocast
        self.last = len(attention) - 1
        self.position = pool_position(model)
        self.mask = batch.inputs["attention_mask"]
        self.layer = None

    def start(self, layer):
        self.layer = layer
        values, projected = self.prepared[layer]
        if layer == self.last:
            projected = projected[:, self.position:self.position + 1]
        self.projected = projected

    def step(self, rows, alpha, weight):
        layer, batch = self.layer, self.batch
        u = (self.projected[rows] * alpha.view(-1, 1, 1)).requires_grad_(True)  # fp32 leaf
        replace = _step_blocks(self.blocks, layer, to_model(u, self.model), self.mask[rows], self.position,
                               batch.max_length)
        return _scored_pass(self.model, batch, rows, u, weight, self.target_kind, self.autocast,
                            replay=(layer, self.hidden[layer][rows]), replace=replace)

    def finish(self, grad_sum, examples):
        layer, block = self.layer, self.blocks[self.layer]
        values = self.prepared[layer][0][examples]
        attention = self.attention[layer][examples]
        with torch.no_grad():
            grad_context = block._heads(torch.matmul(grad_sum, block.output.weight.float()))  # (B, H, r, d_h)
            grad_scaled = torch.matmul(grad_context, values.transpose(2, 3))  # (B, H, r, n)
            if layer == self.last:
                full = torch.zeros_like(attention, dtype=torch.float32)
                full[:, :, self.position:self.position + 1] = grad_scaled
                grad_scaled = full
            return attention.float() * grad_scaled


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
