"""Head importance estimators: an ``(L, H)`` table per strategy, larger = more important.

- ``attattr`` (Hao et al., AAAI 2021, §4; official ``prune_head_with_attr.py``):
  ``I_h = Σ_x max_{i,j} Attr_h(A)(x)``, AttAttr with the **gold-label probability** as target and
  ``m = 20`` left-Riemann steps, over the first ``N`` (default 200) examples. Through ``Engine``
  (``target="gold"``, method ``attattr``), so every attribution is cached and shared with the
  other tools. The sum over examples is the official ``I[l*H+h] += attr[h].max()``.
- ``attention``: ``I_h = Σ_x max_{i,j} A_h(x)`` (raw attention, method ``raw``, through ``Engine``);
  the "attention" baseline of the paper's §4.1 analysis.
- ``taylor`` (Michel, Levy, Neubig, NeurIPS 2019, eq. 2): head gates ``ξ_h`` (=1) multiply each
  head's attention (``capture(model, head_mask=ξ)`` with ``ξ.requires_grad``);
  ``I_h = (1/N) Σ_x |∂L(x)/∂ξ_h|`` with ``L`` the cross-entropy of the gold label, then divided by
  the L2 norm of its layer (``I_{l,:} /= ||I_{l,:}||_2``, as Michel's ``--normalize_pruning_by_layer``,
  HF ``run_bertology.py`` and the AttAttr repo's ``prune_head_with_taylor.py`` do). The
  per-example derivative is read from the recorded per-head contexts: since ``ctx_h = ξ_h A_h V_h``,
  ``∂L/∂ξ_h = Σ_{t,d} ctx_h ⊙ ∂L/∂ctx_h`` at ``ξ = 1`` — identical to the gate gradient, but per
  example inside a batch (the test checks the batch sum against ``ξ.grad``). Deviation from the
  AttAttr repo's Taylor script, which back-propagates the **sum of the logits** instead of the loss
  and takes the absolute value per token: we follow Michel et al. (loss, absolute value per example).
- ``ablation`` ("accuracy difference" baseline): the drop of the metric on the importance examples
  when that single head is masked (``ablation_metric="loss"``, default: increase of the mean
  cross-entropy, which has no ties; ``"accuracy"``: accuracy drop).
- ``random``: ``torch.rand`` with a seed.

Taylor and ablation are importance estimators, not per-example attribution methods: they run
through ``capture`` here, with the engine's tokenization and collation.

``base_plan`` (iterative pruning): heads already pruned. AttAttr/attention then run through the
engine on a copy of the model whose pruned heads' columns of ``W_O`` are zero (exactly a masked
head: zero context, ``b_O`` kept; a different fingerprint, so a different cache key); Taylor and
ablation put the mask in ``capture``'s ``head_mask``.

A physically pruned model (``prune_heads``, or a folder saved by ``save_pruned``) is scored in its
original ``(L, H)`` numbering, its pruned heads counting as ``base_plan``. Heads that are gone
(pruned or in ``base_plan``) score exactly 0 under every strategy, so the table of a pruned model
equals the table of the unpruned model with those heads masked.
"""
from __future__ import annotations

import copy

import torch

from ..capture import capture
from ..engine import Engine
from ..errors import InputDataError, ParameterError
from ..methods.base import frozen_parameters
from ..model_state import inference_state
from ..ranges import TOLERANCE
from ..architecture import kept_heads, num_layers_heads, projection, pruned_heads, tied_layers
from ..types import Example
from .curve import evaluate_masked, prepare_batches
from .plan import plan_to_mask
from .prune import head_dim_of

STRATEGIES = ("attattr", "attention", "taylor", "ablation", "random")


def check_strategies(names) -> list[str]:
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ParameterError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    if not names:
        raise ParameterError("no strategy given")
    return list(dict.fromkeys(names))


def masked_copy(model, plan: dict | None):
    """A deep copy whose pruned heads have zero ``W_O`` columns (= head masked; ``b_O`` kept).
    Heads are original indices; on a physically pruned model they map to the heads still present
    (heads already gone are skipped)."""
    plan = {int(l): [int(h) for h in hs if int(h) in kept_heads(model, int(l))] for l, hs in (plan or {}).items()}
    plan = {l: hs for l, hs in plan.items() if hs}
    if not plan:
        return model
    for group in tied_layers(model):  # ALBERT: one W_O serves every layer of its group
        if len({tuple(sorted(plan.get(l, []))) for l in group}) > 1:
            raise ParameterError(f"layers {group} run one shared block: zeroing a head's W_O columns masks it in all "
                                 f"of them, so a base plan must name the same heads for each (got "
                                 f"{ {l: plan.get(l, []) for l in group} }); plan with tied_layers")
    clone = copy.deepcopy(model)
    head_dim = head_dim_of(clone)
    with torch.no_grad():
        for layer, heads in plan.items():
            weight, _ = projection(clone, layer, "output")  # (d, H*d_h) Linear layout (a view)
            kept = kept_heads(clone, layer)
            for head in heads:
                position = kept.index(head)
                weight[:, position * head_dim:(position + 1) * head_dim] = 0
    return clone


def gone_heads(model, base_plan: dict | None) -> dict[int, list[int]]:
    """Heads that no longer count: physically pruned ones plus ``base_plan`` (original numbering)."""
    gone = {l: set(h) for l, h in pruned_heads(model).items()}
    for layer, heads in (base_plan or {}).items():
        gone.setdefault(int(layer), set()).update(int(h) for h in heads)
    return {l: sorted(h) for l, h in sorted(gone.items()) if h}


def head_importance(model, tokenizer, examples, strategy: str, engine: Engine | None = None, cache=None,
                    steps: int | str = "auto", seed: int = 0, ablation_metric: str = "loss", batch_size: int = 8,
                    eval_batch_size: int = 64, base_plan: dict | None = None, taylor_normalize: bool = True,
                    progress: bool | None = None, tolerance: float = TOLERANCE) -> torch.Tensor:
    """``(L, H)`` float64 importance of every head of ``model`` under ``strategy`` (see module doc).

    Heads that are gone (physically pruned, or in ``base_plan``) score 0. ``tolerance``: AttAttr's relative
    error target under ``steps="auto"`` (default 1e-3; ignored with a fixed m)."""
    table = _head_importance(model, tokenizer, examples, strategy, engine, cache, steps, seed, ablation_metric,
                             batch_size, eval_batch_size, gone_heads(model, base_plan), taylor_normalize, progress,
                             tolerance)
    for layer, heads in gone_heads(model, base_plan).items():
        table[layer, heads] = 0.0
    return table


def _head_importance(model, tokenizer, examples, strategy, engine, cache, steps, seed, ablation_metric, batch_size,
                     eval_batch_size, base_plan, taylor_normalize, progress, tolerance=TOLERANCE):
    check_strategies([strategy])
    examples = [Example.coerce(e) for e in examples]
    if not examples:
        raise InputDataError("no examples to estimate head importance on")
    num_layers, num_heads = num_layers_heads(model)
    if engine is None:
        engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, progress=progress)
    if strategy == "random":
        generator = torch.Generator().manual_seed(int(seed))
        return torch.rand(num_layers, num_heads, generator=generator, dtype=torch.float64)
    if strategy in ("attattr", "attention"):
        target_model = masked_copy(model, base_plan)
        runner = engine if target_model is model else Engine(
            target_model, engine.tokenizer, cache=engine.cache, batch_size=engine.batch_size,
            max_length=engine.max_length, progress=engine.progress)
        # reduce="head_max" (attrtools.reduction): the one number per head read below is all that is cached
        if strategy == "attattr":
            results = runner.attribute(examples, method="attattr", target="gold", steps=steps, reduce="head_max",
                                       tolerance=tolerance)
        else:
            results = runner.attribute(examples, method="raw", reduce="head_max")
        total = torch.zeros(num_layers, num_heads, dtype=torch.float64)
        for attribution in results:
            total += attribution.head_importance().double().cpu()
        return total
    mask = plan_to_mask(base_plan or {}, num_layers, num_heads)
    batches = prepare_batches(engine, examples, eval_batch_size)
    if strategy == "taylor":
        return taylor_importance(model, batches, mask, normalize=taylor_normalize, progress=engine.progress)
    return ablation_importance(model, batches, mask, metric=ablation_metric, progress=engine.progress)


def taylor_gradients(model, inputs, labels, mask: torch.Tensor):
    """Per-example ``∂L(x)/∂ξ`` ``(B, L, H)`` and the gate gradient ``ξ.grad`` ``(L, H)`` of the batch."""
    num_layers = mask.shape[0]
    gate = mask.clone().to(labels.device).requires_grad_(True)
    with frozen_parameters(model), inference_state(model), \
            capture(model, head_mask=gate, record_context="all") as cap:
        logits = model(**inputs).logits.float()
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        contexts = [cap.contexts[l] for l in range(num_layers)]
        grads = torch.autograd.grad(loss, contexts + [gate])
    per_example = torch.stack([(contexts[l] * grads[l]).sum(dim=(2, 3)) for l in range(num_layers)], dim=1)
    return per_example.detach(), grads[-1].detach()


def taylor_importance(model, batches, mask: torch.Tensor, normalize: bool = True,
                      progress: bool | None = False) -> torch.Tensor:
    from ..progress import track

    total, count = None, 0
    for inputs, labels in track(batches, "taylor importance", unit="batch", enabled=progress):
        per_example, _ = taylor_gradients(model, inputs, labels, mask)
        part = per_example.abs().double().sum(0).cpu()
        total = part if total is None else total + part
        count += int(labels.numel())
    importance = total / max(1, count)
    if normalize:
        norms = importance.norm(dim=1, keepdim=True)
        importance = torch.where(norms > 0, importance / norms.clamp_min(1e-300), importance)
    return importance


def ablation_importance(model, batches, mask: torch.Tensor, metric: str = "loss",
                        progress: bool | None = False) -> torch.Tensor:
    if metric not in ("loss", "accuracy"):
        raise ParameterError(f"ablation_metric must be 'loss' or 'accuracy', got {metric!r}")
    num_layers, num_heads = mask.shape
    base = evaluate_masked(model, batches, mask)
    importance = torch.zeros(num_layers, num_heads, dtype=torch.float64)
    from ..progress import bar

    from .. import distributed

    alive = [(layer, head) for layer in range(num_layers) for head in range(num_heads) if mask[layer, head] != 0]
    # Under a launcher each rank ablates its share of the heads (one pass over the same batches
    # each) and every rank gets every result, computed exactly as in one process.
    here = distributed.world() if distributed.sharding() else distributed.World()
    ranks = distributed.assign([1.0] * len(alive), here.size)
    heads = bar(sum(r == here.rank for r in ranks), "ablation importance", unit="head", enabled=progress)
    results = {}
    for (layer, head), r in zip(alive, ranks):
        if r != here.rank:
            continue
        heads.update(1)
        ablated = mask.clone()
        ablated[layer, head] = 0
        results[(layer, head)] = evaluate_masked(model, batches, ablated)
    heads.close()
    if here.distributed:
        for part in distributed.all_gather(results):
            results.update(part)
    for (layer, head), result in results.items():
        importance[layer, head] = (result["loss"] - base["loss"]) if metric == "loss" \
            else (base["accuracy"] - result["accuracy"])
    return importance
