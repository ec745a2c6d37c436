"""Integrated gradients on the input (word) embeddings (Sundararajan, Taly, Yan; ICML 2017).

    IG_j,d = (e_j,d − b_j,d) · ∫_0^1 ∂y_c(b + α(e − b)) / ∂e_j,d dα
           ≈ (e_j,d − b_j,d) · Σ_k w_k ∂y_c(b + α_k(e − b)) / ∂e_j,d

``e`` = output of the word-embedding table (before position/type embeddings and the embedding
LayerNorm, which still run on the interpolated input); baseline ``b`` = the zero vector at every
position (``baseline="zero"``, default) or the [PAD] token's embedding at every position
(``baseline="pad"``); special tokens are interpolated like the others. ``y_c`` = class logit
(``target_kind="logit"``, default; ``"prob"`` available). Default ``steps="auto"``,
``tolerance=1e-3``: each example climbs the nested rule of :mod:`attrtools.methods.integration`
until the relative change of its per-token signed scores meets the tolerance (up to 63 nodes);
where it does not (the sharp region near α = 0 of post-LN embeddings, or RMSNorm below), the
result's ``completeness`` says ``met: False`` with the estimate and the engine gives one
``IntegrationWarning`` per call. An integer ``steps`` gives a fixed rule: ``steps_method`` defaults to
``"riemann_right"`` (the paper's ``k = 1..m``); ``riemann_left``/``riemann_middle``/
``riemann_trapezoid``/``gausslegendre`` are the others (DecompX evaluates IG with step size 0.1,
i.e. 10 steps). Token score = Σ_d IG_j,d (signed,
``aggregate="sum"``, default) or its L2 norm (``"l2"``, as DecompX's table).
Completeness: ``Σ_j Σ_d IG ≈ y_c(e) − y_c(b)`` (exact as ``steps`` grows).
Caveat: with RMSNorm right after the embeddings (Llama), the zero baseline is degenerate (the
normalised input jumps from 0 to its full value near α = 0, gradient ~ 1/sqrt(ε)) and no
quadrature converges (and a [PAD] row initialised to zero makes ``"pad"`` the same baseline).
The steps of several examples share one batched pass (``internal_batch_size`` rows at a time; by
default ``shared.rows_per_pass``: about 4096 tokens, and at most 2^25 attention floats kept for backward).
"""
from __future__ import annotations

import torch

from ..adapters import adapter_for
from ..architecture import get_module
from . import register
from .base import (INTERNAL_BATCH, TARGET_KIND, Batch, Choice, Float, Method, completeness_record, frozen_parameters,
                   target_score)
from .integration import (AUTO, DEFAULT_TOLERANCE, STEPS_METHODS, StepsParam, integrate_adaptive, integration_record,
                          precision_floor, quadrature, resolve_rule)
from .shared import aggregate_hidden, rows_per_pass


class word_embeddings_replaced:
    """Context: the word-embedding table's output is replaced by ``fn(original)`` (if given)."""

    def __init__(self, model, fn=None):
        self.module = get_module(model, adapter_for(model).word_embeddings)
        self.fn = fn
        self.original = None

    def _hook(self, module, args, output):
        self.original = output.detach()
        return self.fn(output) if self.fn is not None else output

    def __enter__(self):
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False


def baseline_embeddings(model, embeddings: torch.Tensor, baseline: str) -> torch.Tensor:
    if baseline == "zero":
        return torch.zeros_like(embeddings)
    if baseline == "pad":
        pad = model.config.pad_token_id
        if pad is None:
            raise ValueError(f"baseline='pad' but model_type {model.config.model_type!r} has no pad_token_id")
        table = get_module(model, adapter_for(model).word_embeddings).weight
        return table[pad].detach().to(embeddings.dtype).expand_as(embeddings).clone()
    raise ValueError(f"baseline must be 'zero' or 'pad', got {baseline!r}")


def score_with_embeddings(model, inputs: dict, embeddings: torch.Tensor, targets, target_kind="logit"):
    """Target score when the word-embedding output is replaced by ``embeddings`` (for tests)."""
    with torch.no_grad(), word_embeddings_replaced(model, lambda out: embeddings):
        return target_score(model(**inputs).logits, targets, target_kind, model)


@register
class IntegratedGradientsEmbeddings(Method):
    name = "ig_embed"
    title = "Integrated gradients on word embeddings"
    paper = "Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017"
    kind = "tokens"
    defaults = {"steps": AUTO, "steps_method": None, "tolerance": DEFAULT_TOLERANCE, "baseline": "zero",
                "target_kind": "logit", "aggregate": "sum", "internal_batch_size": None}
    schema = {"steps": StepsParam(), "steps_method": Choice(*STEPS_METHODS, none=True),
              "tolerance": Float(above=0, max=1, none=True), "baseline": Choice("zero", "pad"),
              "target_kind": TARGET_KIND, "aggregate": Choice("l2", "sum"), "internal_batch_size": INTERNAL_BATCH}

    def check_params(self, params):
        resolve_rule(self.name, params, "riemann_right")
        if params["steps"] != AUTO:
            params["tolerance"] = None
    invariant = "completeness: sum of signed scores -> y(x) - y(baseline) as steps grow"

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        if batch.targets is None:
            raise ValueError("ig_embed needs target classes")
        adaptive = params["steps"] == AUTO
        if adaptive:
            alphas, weights = [0.0], [0.0]
        else:
            alphas, weights = quadrature(params["steps"], params["steps_method"])
        if 0.0 not in alphas:  # one weight-0 row per example gives F(baseline) for the completeness gap
            alphas, weights = list(alphas) + [0.0], list(weights) + [0.0]
        zero_node = alphas.index(0.0)
        aggregate_hidden(torch.zeros(1, 1), params["aggregate"])
        with torch.no_grad(), word_embeddings_replaced(model) as rec:
            model(**batch.inputs)
        emb = rec.original.float()
        base = baseline_embeddings(model, emb, params["baseline"]).float()
        size, n = batch.size, batch.max_length
        device = emb.device
        per_pass = params["internal_batch_size"] or rows_per_pass(model, n)  # bounded in tokens and in attention

        def step(rows, alpha, weight):
            path = (base[rows] + alpha.view(-1, 1, 1) * (emb[rows] - base[rows])).requires_grad_(True)
            with word_embeddings_replaced(model, lambda out: path.to(out.dtype)):
                logits = model(**batch.select(rows)).logits
            score = target_score(logits, batch.targets[rows], params["target_kind"], model)
            (grad,) = torch.autograd.grad((score * weight).sum(), path)
            return grad.float(), score

        example_of = torch.arange(size, device=device).repeat_interleave(len(alphas))
        alpha_of = torch.tensor(alphas, device=device).repeat(size)
        weight_of = torch.tensor(weights, device=device).repeat(size)
        grad_sum = torch.zeros_like(emb)
        at_zero = torch.zeros(size, dtype=torch.float32, device=device)
        with frozen_parameters(model), torch.enable_grad():
            for start in range(0, example_of.numel(), per_pass):
                rows = example_of[start:start + per_pass]
                grad, score = step(rows, alpha_of[start:start + per_pass], weight_of[start:start + per_pass])
                grad_sum.index_add_(0, rows, grad)
                node = (torch.arange(start, start + rows.numel(), device=device) % len(alphas)) == zero_node
                at_zero.index_copy_(0, rows[node], score.detach().float()[node])
            if adaptive:
                def evaluate(pairs):
                    rows = torch.tensor([b for b, _ in pairs], dtype=torch.long, device=device)
                    alpha = torch.tensor([a for _, a in pairs], dtype=torch.float32, device=device)
                    out = []
                    for s in range(0, rows.numel(), per_pass):
                        grad, _ = step(rows[s:s + per_pass], alpha[s:s + per_pass], torch.ones_like(alpha[s:s + per_pass]))
                        out.extend(grad.unbind(0))
                    return out

                def finish(b, integral):  # the per-token signed scores: what the estimate compares
                    return ((emb[b] - base[b]) * integral)[: batch.lengths[b]].sum(-1)

                # the ladder up to 63 nodes: the sharp region near α = 0 of post-LN embeddings (a
                # fine-tuned MiniLM: 31 nodes still 15 % off) is resolved by its nodes' clustering there
                done = integrate_adaptive(list(range(size)), evaluate, finish, params["tolerance"], ladder_levels=6,
                                          floor=precision_floor(next(model.parameters()).dtype))
                records = [done[b][1] for b in range(size)]
                grad_sum = torch.stack([done[b][2] for b in range(size)])
            else:
                records = [integration_record(params["steps_method"], params["steps"], None, None)] * size
        signed = ((emb - base) * grad_sum).sum(-1)  # (B, n): per-token signed IG, for completeness
        if batch.logits is not None:
            full = target_score(batch.logits, batch.targets, params["target_kind"], model)
            for b, n_b in enumerate(batch.lengths):
                batch.info[b]["completeness"] = {
                    None: dict(completeness_record(float(signed[b, :n_b].sum()), float(full[b] - at_zero[b])),
                               **records[b])}
        scores = aggregate_hidden((emb - base) * grad_sum, params["aggregate"])
        return [scores[b, :n_b].contiguous() for b, n_b in enumerate(batch.lengths)]
