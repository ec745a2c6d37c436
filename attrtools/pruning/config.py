"""``PruneConfig``: the settings of the head-pruning planner, and their defaults (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PruneConfig:
    """Settings of the head-pruning planner (``attrtools prune``); the defaults are the tool's.

    ``strategies``: importance estimators (attattr, taylor, attention, ablation, random);
    ``num_examples``: importance from the first N examples (official AttAttr protocol: 200 dev
    examples); ``prune_fraction`` / ``prune_count``: the plan pruned physically (a fraction in
    [0, 1] of all heads, or a head count; the count wins when given); ``plan_strategy``: whose plan
    is pruned (default: the first strategy); ``per_layer``: rank and prune within each layer;
    ``keep_one_per_layer``: never remove a layer's last head; ``iterative``: re-estimate importance
    with the pruned heads masked after each step of the curve; ``steps``: AttAttr integration ("auto": converged to 1e-3, the default; or m official left-Riemann steps,
    20 in the official code); ``fraction_step`` / ``fractions``: points of the accuracy-vs-heads-pruned curve;
    ``ablation_metric``: what single-head ablation measures (loss or accuracy); ``seed``: of the
    random strategy; ``batch_size`` / ``eval_batch_size``: attribution / evaluation batch sizes
    (examples); ``max_length``: truncation in tokens (None: the engine's rule, ``models.max_input_length``); ``latency_batch`` / ``latency_repeats``: the
    latency measurement; ``save_model``: write ``pruned_model/``; ``progress``: progress bars (None:
    when stderr is a terminal).
    """

    strategies: tuple = ("attattr", "taylor", "attention", "ablation", "random")
    num_examples: int = 200
    prune_fraction: float | None = 0.5
    prune_count: int | None = None
    plan_strategy: str | None = None
    per_layer: bool = False
    keep_one_per_layer: bool = False
    iterative: bool = False
    steps: int | str = "auto"
    fraction_step: float = 0.1
    fractions: tuple | None = None
    seed: int = 0
    ablation_metric: str = "loss"
    batch_size: int = 8
    eval_batch_size: int = 64
    max_length: int | None = None
    latency_batch: int = 32
    latency_repeats: int = 20
    save_model: bool = True
    progress: bool | None = None
