"""``PruneConfig``: the settings of the head-pruning planner, and their defaults (torch-free)."""
from __future__ import annotations

from ..ranges import (batch_size_field, max_length_field, option, progress_field, seed_field, steps_field,
                      tolerance_field, tool_config)

STRATEGIES = ("attattr", "taylor", "attention", "ablation", "random")


@tool_config
class PruneConfig:
    """Settings of the head-pruning planner (``attrtools prune``, ``attrtools.pruning.run``); the
    defaults are the tool's. Each field declares its option, help and valid values
    (``attrtools.ranges.option``); a value outside them raises a one-line ``ParameterError`` naming
    the field when the config is built (also through ``dataclasses.replace`` and keyword overrides).
    """

    strategies: tuple = option(STRATEGIES, kind="str", sequence=True, nonempty=True,
                               help="Comma-separated importance strategies: attattr, taylor, attention, ablation, "
                                    "random.")
    plan_strategy: str | None = option(None, kind="str", optional=True,
                                       help="Strategy whose plan is pruned physically and saved (default: the first "
                                            "of --strategies).")
    num_examples: int = option(200, kind="int", low=1,
                               help="Importance from the first N examples of --dataset (after --limit; official "
                                    "AttAttr protocol: 200 dev examples).")
    prune_fraction: float | None = option(0.5, kind="float", low=0, high=1, optional=True,
                                          help="Fraction of all heads to prune physically (--prune-count wins when "
                                               "given).")
    prune_count: int | None = option(None, kind="int", low=0, optional=True,
                                     help="Number of heads to prune physically (instead of --prune-fraction).")
    per_layer: bool = option(False, kind="bool", help="Rank heads within each layer; prune evenly across layers.")
    keep_one_per_layer: bool = option(False, kind="bool", help="Never remove the last head of a layer.")
    iterative: bool = option(False, kind="bool",
                             help="Re-estimate importance with the already-pruned heads masked after each step of "
                                  "the curve (each 10% with the default --fraction-step).")
    steps: int | str = steps_field(20, "importance of the attattr strategy, as prune_head_with_attr.py")
    tolerance: float = tolerance_field()
    fraction_step: float = option(0.1, kind="float", low=0, low_open=True, high=1,
                                  help="Spacing of the pruning curve (fractions of heads).")
    fractions: tuple | None = option(None, kind="float", low=0, high=1, sequence=True, optional=True,
                                     help="Explicit curve points instead of the grid, e.g. 0,0.3,0.5,0.7 (saves "
                                          "time).")
    ablation_metric: str = option("loss", kind="str", choices=("loss", "accuracy"),
                                  help="What the single-head ablation baseline measures.")
    seed: int = seed_field(0, "Seed of the random strategy.")
    batch_size: int = batch_size_field(8)
    eval_batch_size: int = option(64, kind="int", low=1,
                                  help="Examples per batch of the masked evaluation (curve, checks).")
    max_length: int | None = max_length_field()
    latency_batch: int = option(32, kind="int", low=1,
                                help="Examples in the batch whose latency is measured before/after (also 1).")
    latency_repeats: int = option(20, kind="int", low=1, help="Timed forwards per model for the latency before/after.")
    latency_warmup: int = option(3, kind="int", low=0,
                                 help="Untimed forwards per model before the latency is timed (GPU kernels, caches).")
    save_model: bool = option(True, kind="bool", flag="--no-save-model", help="Do not write the pruned model.")
    progress: bool | None = progress_field()
