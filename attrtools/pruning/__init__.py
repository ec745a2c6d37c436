"""Head-pruning planner: head importance (AttAttr and baselines), plans, the accuracy-vs-heads-pruned
curve by masking, physical pruning and a saved model that reloads with its pruning.

Light on purpose (no torch import): the submodules load on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "head_importance": "attrtools.pruning.importance",
    "STRATEGIES": "attrtools.pruning.importance",
    "make_plan": "attrtools.pruning.plan",
    "iterative_plans": "attrtools.pruning.plan",
    "plan_to_mask": "attrtools.pruning.plan",
    "pruning_curve": "attrtools.pruning.curve",
    "evaluate_masked": "attrtools.pruning.curve",
    "prune_heads": "attrtools.pruning.prune",
    "save_pruned": "attrtools.pruning.prune",
    "load_pruned": "attrtools.pruning.prune",
    "count_parameters": "attrtools.pruning.prune",
    "run_pruning": "attrtools.pruning.pipeline",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attrtools.pruning' has no attribute {name!r}")


__all__ = sorted(_LAZY)
