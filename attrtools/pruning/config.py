"""``PruneConfig``: the settings of the head-pruning planner, and their defaults (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ..ranges import check_ranges, option


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

    Each field declares its valid values (``attrtools.ranges.option``); a value outside them raises a
    one-line ``ParameterError`` naming the field when the config is built (also through
    ``dataclasses.replace`` and the pipelines' keyword overrides).
    """

    strategies: tuple = option(("attattr", "taylor", "attention", "ablation", "random"), kind="str", sequence=True,
                               nonempty=True)
    num_examples: int = option(200, kind="int", low=1)
    prune_fraction: float | None = option(0.5, kind="float", low=0, high=1, optional=True)
    prune_count: int | None = option(None, kind="int", low=0, optional=True)
    plan_strategy: str | None = option(None, kind="str", optional=True)
    per_layer: bool = option(False, kind="bool")
    keep_one_per_layer: bool = option(False, kind="bool")
    iterative: bool = option(False, kind="bool")
    steps: int | str = option("auto", kind="int", low=1, choices=("auto",))
    fraction_step: float = option(0.1, kind="float", low=0, low_open=True, high=1)
    fractions: tuple | None = option(None, kind="float", low=0, high=1, sequence=True, optional=True)
    seed: int = option(0, kind="int")
    ablation_metric: str = option("loss", kind="str", choices=("loss", "accuracy"))
    batch_size: int = option(8, kind="int", low=1)
    eval_batch_size: int = option(64, kind="int", low=1)
    max_length: int | None = option(None, kind="int", low=2, optional=True)
    latency_batch: int = option(32, kind="int", low=1)
    latency_repeats: int = option(20, kind="int", low=1)
    save_model: bool = option(True, kind="bool")
    progress: bool | None = option(None, kind="bool", optional=True)

    def __post_init__(self):
        check_ranges(self)  # one line naming the field, before anything loads (attrtools.ranges)
