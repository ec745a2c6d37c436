"""Faithfulness metrics (docs/methods.md, "Faithfulness evaluation"), as pure functions over perturbation curves.

``f(x)`` is the probability of the class predicted on the **clean** input; ``x \\ top_k`` removes the
``k`` highest-ranked non-special tokens, ``x[top_k]`` keeps only them (see ``perturb.py``).

- comprehensiveness AOPC (DeYoung et al. 2020 / DecompX): ``1/|B| Σ_{p∈B} f(x) − f(x \\ top_k(p))`` ↑
- sufficiency AOPC: ``1/|B| Σ_{p∈B} f(x) − f(x[top_k(p)])`` ↓
- deletion AUC: trapezoid area under ``p ↦ f(x \\ top_k(p))`` on the grid ``B ∪ {0, 1}``, x-axis
  normalised to [0, 1] ↓; insertion AUC: same for ``f(x[top_k(p)])`` ↑
- log-odds (Shrikumar et al. 2017; AttCAT): ``mean_{p∈B, p>0} log(f(x \\ top_k(p)) / f(x))`` ↓
- accuracy under perturbation (Atanasova et al. 2020; DecompX ACC): mean over ``p∈B`` of
  ``[argmax f(x \\ top_k(p)) == gold]`` ↓ (needs gold labels)
- Spearman ρ between a method's token scores and a reference (gradient × input) over the
  non-special tokens (GlobEnc's agreement metric).

Means over examples are taken last (order of averaging does not matter for these means).
"""
from __future__ import annotations

import math
from typing import Sequence

LOG_EPS = 1e-12


def aopc(f0: float, values: Sequence[float]) -> float:
    """Mean drop ``f0 − v`` over the bins."""
    if not values:
        raise ValueError("aopc needs at least one bin")
    return sum(f0 - v for v in values) / len(values)


def trapezoid_auc(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Trapezoid area under ``(xs, ys)`` divided by the x-span (a mean height in [min y, max y])."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("trapezoid_auc needs at least two points and as many xs as ys")
    span = xs[-1] - xs[0]
    if span <= 0:
        raise ValueError("xs must increase")
    area = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
    return area / span


def log_odds(f0: float, values: Sequence[float]) -> float:
    """Mean ``log(v / f0)`` (probabilities floored at 1e-12)."""
    if not values:
        raise ValueError("log_odds needs at least one bin")
    base = math.log(max(f0, LOG_EPS))
    return sum(math.log(max(v, LOG_EPS)) - base for v in values) / len(values)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties get the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            out[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    if n != len(b):
        raise ValueError("pearson needs two sequences of the same length")
    if n < 2:
        return float("nan")
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return float("nan")
    return cov / math.sqrt(va * vb)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman ρ (Pearson of tie-averaged ranks); NaN when either side is constant or n < 2."""
    return pearson(ranks([float(x) for x in a]), ranks([float(y) for y in b]))


def example_metrics(plan, probs: dict, target: int, label: int | None) -> dict:
    """Every metric of one (example, attribution) from its ``perturb.Plan`` and the predicted
    probabilities of each sequence (``probs[seq] -> list``)."""

    def f(seq):
        return probs[seq][target]

    def correct(seq):
        row = probs[seq]
        return float(max(range(len(row)), key=row.__getitem__) == label)

    f0 = f(plan.clean)
    comp = [f(s) for _, s in plan.comprehensiveness]
    suff = [f(s) for _, s in plan.sufficiency]
    positive = [f(s) for p, s in plan.comprehensiveness if p > 0] or comp
    grid = [p for p, _ in plan.deletion]
    deletion = [f(s) for _, s in plan.deletion]
    insertion = [f(s) for _, s in plan.insertion]
    out = {
        "f0": f0,
        "aopc_comp": aopc(f0, comp),
        "aopc_suff": aopc(f0, suff),
        "deletion_auc": trapezoid_auc(grid, deletion),
        "insertion_auc": trapezoid_auc(grid, insertion),
        "log_odds": log_odds(f0, positive),
        "accuracy": None if label is None else sum(correct(s) for _, s in plan.comprehensiveness) / len(comp),
        "curves": {
            "bins": [p for p, _ in plan.comprehensiveness],
            "comprehensiveness": comp,
            "sufficiency": suff,
            "accuracy": None if label is None else [correct(s) for _, s in plan.comprehensiveness],
            "grid": grid,
            "deletion": deletion,
            "insertion": insertion,
        },
    }
    return out


SCALARS = ("aopc_comp", "aopc_suff", "deletion_auc", "insertion_auc", "log_odds", "accuracy")
# Which direction is better, for tables: +1 higher is better, -1 lower is better.
DIRECTION = {"aopc_comp": 1, "aopc_suff": -1, "deletion_auc": -1, "insertion_auc": 1, "log_odds": -1,
             "accuracy": -1, "spearman_gxi": 1}


def mean(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else float("nan")


def std(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if len(values) < 2:
        return float("nan")
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def aggregate(per_example: list[dict]) -> dict:
    """Means of the scalar metrics and of the curves (point-wise) over examples."""
    out = {name: mean([m[name] for m in per_example]) for name in SCALARS}
    if per_example:
        curves = per_example[0]["curves"]
        out["curves"] = {
            "bins": curves["bins"],
            "grid": curves["grid"],
            **{name: [mean([m["curves"][name][i] for m in per_example]) for i in range(len(curves[key]))]
               for name, key in (("comprehensiveness", "bins"), ("sufficiency", "bins"), ("deletion", "grid"),
                                 ("insertion", "grid"))},
            "accuracy": ([mean([m["curves"]["accuracy"][i] for m in per_example if m["curves"]["accuracy"]])
                          for i in range(len(curves["bins"]))]),
        }
    return out
