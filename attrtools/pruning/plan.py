"""Pruning plans: which heads to remove, ``{layer: [heads]}`` (original head indices).

A plan is chosen from an ``(L, H)`` importance table by removing the *least* important heads:

- **global** (default; the official AttAttr protocol, Hao et al. 2021 ``prune_head_with_attr.py``):
  one ascending ranking over all ``L·H`` heads, no per-layer normalisation; ``count =
  int(fraction · L·H)`` heads as in the official ``int(rate * 144)``;
- **per-layer** (``per_layer=True``): heads are ranked within their own layer and every layer
  loses the same number of heads (±1): the next head removed always comes from the layer that has
  lost the fewest so far, ties going to the layer whose next candidate has the lowest importance;
- ``keep_one_per_layer``: never remove the last remaining head (unit) of a layer;
- ``group_size > 1`` (GQA models: query heads sharing one key/value head): the units ranked and
  removed are whole groups of ``group_size`` consecutive heads, a group's importance being the
  **sum** of its heads' importances (deliberate choice: a group is pruned as one block of
  parameters); ``count`` is rounded down to a multiple of ``group_size``;
- ``tied_layers`` (ALBERT: layers that run one shared block): a unit is a head of the shared
  block, removed in every layer of its group (its cost is that many heads, its importance the sum
  over those layers), because physical pruning cannot remove it from one layer only;
- **iterative** (:func:`iterative_plans`): after each step the importance is re-estimated with the
  already-removed heads masked (as ``run_bertology.py``/TextPruner's iterative mode do); each plan
  extends the previous one, so the plans are nested.

Ties are broken by (layer, head) order, so plans are deterministic.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

from ..errors import ParameterError


def _as_table(importance) -> torch.Tensor:
    table = torch.as_tensor(importance, dtype=torch.float64).detach().cpu()
    if table.dim() != 2:
        raise ValueError(f"importance must be (layers, heads), got shape {tuple(table.shape)}")
    if torch.isnan(table).any():
        raise ValueError("importance contains NaN")
    return table


def heads_for(fraction: float | None, count: int | None, total: int) -> int:
    """Number of heads to prune from ``--prune-fraction`` or ``--prune-count`` (exactly one)."""
    if (fraction is None) == (count is None):
        raise ParameterError("give exactly one of fraction and count")
    if count is not None:
        if not 0 <= count <= total:
            raise ParameterError(f"prune count must be in 0..{total}, got {count}")
        return int(count)
    if not 0.0 <= fraction <= 1.0:
        raise ParameterError(f"prune fraction must be in [0, 1], got {fraction}")
    return int(fraction * total + 1e-9)


def plan_size(plan: dict) -> int:
    return sum(len(h) for h in plan.values())


def plan_to_mask(plan: dict, num_layers: int, num_heads: int, dtype=torch.float32) -> torch.Tensor:
    """``(L, H)`` head mask: 0 for pruned heads, 1 elsewhere (capture's ``head_mask``)."""
    mask = torch.ones(num_layers, num_heads, dtype=dtype)
    for layer, heads in plan.items():
        for head in heads:
            mask[int(layer), int(head)] = 0
    return mask


def plan_to_json(plan: dict) -> dict:
    return {str(l): sorted(int(h) for h in hs) for l, hs in sorted(plan.items(), key=lambda kv: int(kv[0])) if hs}


def make_plan(importance, count: int | None = None, fraction: float | None = None, per_layer: bool = False,
              keep_one_per_layer: bool = False, group_size: int = 1, already: dict | None = None,
              tied_layers=None) -> dict[int, list[int]]:
    """The ``count`` (or ``int(fraction·L·H)``) least important heads as ``{layer: [heads]}``.

    ``already``: heads that must be in the plan (iterative mode); they count towards ``count``.
    ``tied_layers``: lists of layers that run one shared block (ALBERT's hidden groups,
    ``architecture.tied_layers``); a unit is then a head (or KV group) of the shared block, removed in
    every layer of its list, costing that many heads of ``count`` and weighing the **sum** of their
    importances; "per layer" and ``keep_one_per_layer`` then apply per list. Default: every layer
    on its own. With ``keep_one_per_layer`` or tied layers the plan may hold fewer heads than asked
    (``plan_size`` tells).
    """
    table = _as_table(importance)
    num_layers, num_heads = table.shape
    if group_size < 1 or num_heads % group_size:
        raise ParameterError(f"group_size {group_size} does not divide the {num_heads} heads per layer")
    rows = [[l] for l in range(num_layers)] if tied_layers is None else [sorted(int(l) for l in g) for g in tied_layers]
    if sorted(l for g in rows for l in g) != list(range(num_layers)):
        raise ParameterError(f"tied_layers {tied_layers} is not a partition of the {num_layers} layers")
    row_of = {l: r for r, g in enumerate(rows) for l in g}
    count = heads_for(fraction, count, num_layers * num_heads)
    units_per_layer = num_heads // group_size
    unit_importance = torch.stack([table[g].sum(0) for g in rows]).view(len(rows), units_per_layer, group_size).sum(-1)
    cost = [group_size * len(g) for g in rows]  # heads removed by one unit of each row

    chosen: set[tuple[int, int]] = set()
    for layer, heads in (already or {}).items():
        for head in heads:
            chosen.add((row_of[int(layer)], int(head) // group_size))
    spent = sum(cost[r] for r, _ in chosen)
    if spent > count:
        raise ParameterError(f"{spent} heads are already pruned, more than the {count} asked")

    removed = [sum(1 for r, _ in chosen if r == row) for row in range(len(rows))]

    def eligible(row: int) -> bool:
        limit = units_per_layer - (1 if keep_one_per_layer else 0)
        return removed[row] < limit and spent + cost[row] <= count

    if not per_layer:
        order = sorted(((float(unit_importance[r, u]), rows[r][0], u, r) for r in range(len(rows))
                        for u in range(units_per_layer) if (r, u) not in chosen))
        for _, _, unit, row in order:
            if eligible(row):
                chosen.add((row, unit))
                removed[row] += 1
                spent += cost[row]
    else:
        queues = [sorted((float(unit_importance[r, u]), u) for u in range(units_per_layer) if (r, u) not in chosen)
                  for r in range(len(rows))]
        while True:
            candidates = [(removed[r], queues[r][0][0], r) for r in range(len(rows)) if queues[r] and eligible(r)]
            if not candidates:
                break
            _, _, row = min(candidates)
            _, unit = queues[row].pop(0)
            chosen.add((row, unit))
            removed[row] += 1
            spent += cost[row]

    plan: dict[int, list[int]] = {}
    for row, unit in chosen:
        for layer in rows[row]:
            plan.setdefault(layer, []).extend(range(unit * group_size, (unit + 1) * group_size))
    return {l: sorted(plan[l]) for l in sorted(plan)}


def iterative_plans(score: Callable[[dict], torch.Tensor], counts: Iterable[int], per_layer: bool = False,
                    keep_one_per_layer: bool = False, group_size: int = 1,
                    on_step: Callable[[int, dict, torch.Tensor], None] | None = None,
                    already: dict | None = None, tied_layers=None) -> dict[int, dict]:
    """Nested plans for increasing head counts, re-scoring after every step.

    ``score(plan)`` returns the ``(L, H)`` importance of the model with ``plan``'s heads masked;
    the heads removed at step ``k`` are the least important *remaining* heads under that score.
    Returns ``{count: plan}``. ``already``: heads removed before the first step (a pruned model's).
    """
    plans: dict[int, dict] = {}
    current: dict[int, list[int]] = {int(l): sorted(int(h) for h in hs) for l, hs in (already or {}).items() if hs}
    for count in sorted(set(int(c) for c in counts)):
        if count <= plan_size(current):
            plans[count] = current
            continue
        importance = score(current)
        plan = make_plan(importance, count=count, per_layer=per_layer, keep_one_per_layer=keep_one_per_layer,
                         group_size=group_size, already=current, tied_layers=tied_layers)
        if on_step is not None:
            on_step(count, plan, importance)
        plans[count] = plan
        current = plan
    return plans


def counts_for_fractions(fractions: Iterable[float], total: int) -> list[int]:
    return [int(f * total + 1e-9) for f in fractions]


def fraction_grid(step: float = 0.1) -> list[float]:
    """0, step, ..., 1 (rounded, 1 included)."""
    n = int(math.floor(1.0 / step + 1e-9))
    grid = [round(i * step, 10) for i in range(n + 1)]
    if grid[-1] < 1.0:
        grid.append(1.0)
    return grid
