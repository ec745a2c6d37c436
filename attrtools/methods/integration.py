"""Quadrature on [0, 1] for the integrated-gradients methods (``attattr``, ``ig_embed``).

Two kinds of rule, both ``∫_0^1 g(α) dα ≈ Σ_k w_k g(α_k)``:

- **Fixed rules** (:func:`quadrature`): ``riemann_left`` (the official AttAttr code,
  ``α_k = k/m``, ``k = 0..m-1``), ``riemann_right`` (the IG paper's ``k = 1..m``),
  ``riemann_middle``, ``riemann_trapezoid`` and ``gausslegendre`` (exact for polynomials of
  degree ``2m − 1``; ``numpy.polynomial.legendre.leggauss``).
- **The nested ladder** (:data:`LADDER`, rule name ``"patterson"``): 1, 3, 7, 15, 31, 63 nodes,
  each level containing every node of the level below (Gauss 1 → Gauss 3 → Kronrod 7 →
  Patterson 15 → 31 → 63; Patterson, *Math. Comp.* 22 (1968) 847–856; Kronrod 1965). Moving up a
  level costs only the new nodes. The error estimate of level ``k`` is ``|Q_k − Q_{k−1}|``,
  which is the error of the *coarser* level and so, for the smooth integrands of IG, an upper
  bound on the error of ``Q_k`` (the tests check that it is never below the true error by more
  than 2x). The nodes are computed here, not copied from tables: the new nodes of a level are
  the roots of the polynomial of degree ``m + 1`` orthogonal to every polynomial of degree ``≤ m``
  under the weight ``∏(x − x_i)`` over the ``m`` existing nodes (the Stieltjes/Patterson
  construction), and the weights make the rule exact on Legendre polynomials up to degree
  ``2m``; the tests check the degree of exactness (``3m + 1`` for the Patterson levels) and the
  Kronrod 15-point table of QUADPACK.

:func:`integrate_adaptive` is the driver that both methods use with ``steps="auto"``: every item
(an example, or an (example, layer) pair) climbs the ladder until its relative estimate meets the
tolerance, and the result records the rule, the passes used and the estimate
(:func:`integration_record`).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

from ..ranges import TOLERANCE
from .base import Param, ParameterError

FIXED_RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
NESTED_RULE = "patterson"
STEPS_METHODS = FIXED_RULES + (NESTED_RULE,)
LADDER = (1, 3, 7, 15, 31, 63)  # nodes per level of the nested rule
DEFAULT_TOLERANCE = TOLERANCE  # 1e-3 relative, declared once in the torch-free ranges (docs/integrated-gradients.md: why)
AUTO = "auto"
# The best relative error a reduced-precision forward resolves, per dtype: below it the rounding of
# the forward and backward, not the rule, decides the scores, and the ladder's changes stall there
# (docs/integrated-gradients.md, "Reduced precision": the converged integral in bf16 is 7e-3 to 5e-2
# from the fp32 one on the tiny models and MiniLM, in fp16 4e-3 to 2.5e-2).
PRECISION_FLOORS = {"bfloat16": 1e-2, "float16": 5e-3}


def precision_floor(dtype) -> float | None:
    """The tolerance floor of a forward in ``dtype`` (a torch dtype or its name; None for fp32/fp64):
    ``steps="auto"`` integrates to ``max(tolerance, floor)`` (:data:`PRECISION_FLOORS`)."""
    return PRECISION_FLOORS.get(str(dtype).replace("torch.", ""))


def quadrature(steps: int, method: str = "riemann_left") -> tuple[list[float], list[float]]:
    """Nodes α_k in [0, 1] and weights w_k of a fixed rule with ``steps`` nodes.

    ``method="patterson"`` takes a node count of :data:`LADDER` and gives that level's rule.
    Raises ``ValueError`` (one line) for an unknown rule or a count the rule cannot have."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
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
    if method == NESTED_RULE:
        if steps not in LADDER:
            raise ValueError(f"the patterson rule has {', '.join(map(str, LADDER))} nodes, not {steps}")
        level = LADDER.index(steps)
        nodes, weights = nested_levels()[level]
        return list(nodes), list(weights)
    raise ValueError(f"unknown steps_method {method!r}; use {', '.join(STEPS_METHODS[:-1])} or {NESTED_RULE}")


def _extend(nodes: np.ndarray) -> np.ndarray:
    """The ``m + 1`` nodes (on [-1, 1]) that extend ``nodes`` (``m`` of them) to a rule of degree
    ``3m + 1``: roots of ``E`` (degree ``m + 1``, Legendre basis) with ``∫ E ω P_j = 0`` for
    ``j ≤ m``, ``ω = ∏(x − x_i)``."""
    m = len(nodes)
    gx, gw = np.polynomial.legendre.leggauss(4 * m + 8)  # exact for the degree-(3m+1) products
    omega = np.prod(gx[:, None] - nodes[None, :], axis=1)
    basis = np.polynomial.legendre.legvander(gx, m + 1)  # (points, m + 2): P_0..P_{m+1}
    gram = (basis[:, : m + 1] * (gw * omega)[:, None]).T @ basis  # rows j <= m, columns k <= m+1
    coef = np.linalg.solve(gram[:, : m + 1], -gram[:, m + 1])
    roots = np.polynomial.legendre.legroots(np.concatenate([coef, [1.0]]))
    if np.iscomplexobj(roots) or np.any(np.abs(roots) >= 1):
        raise ArithmeticError("nested rule extension left [-1, 1]")
    return np.sort(roots.real)


@functools.lru_cache(maxsize=1)
def nested_levels() -> tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]:
    """Every level of the nested rule on [0, 1]: ``((alphas, weights), ...)`` for :data:`LADDER`.
    The nodes of level ``k`` come first in the order they were added, so level ``k``'s nodes are
    the first ``LADDER[k]`` of level ``k + 1``'s."""
    ordered = np.array([0.0])  # Gauss 1 (midpoint) on [-1, 1]
    levels = []
    for size in LADDER:
        if len(ordered) < size:
            ordered = np.concatenate([ordered, _extend(ordered)])
        assert len(ordered) == size
        vander = np.polynomial.legendre.legvander(ordered, size - 1).T  # (degree, node)
        moments = np.zeros(size)
        moments[0] = 2.0
        weights = np.linalg.solve(vander, moments)
        levels.append((tuple(float((x + 1) / 2) for x in ordered), tuple(float(w / 2) for w in weights)))
    return tuple(levels)


def composite_gausslegendre(panels: int, nodes: int = 4) -> tuple[list[float], list[float]]:
    """Gauss–Legendre with ``nodes`` nodes on each of ``panels`` equal pieces of [0, 1]: a reference
    rule that also converges on integrands with a kink (error O(panel width²) there)."""
    x, w = quadrature(nodes, "gausslegendre")
    h = 1.0 / panels
    return [h * (p + a) for p in range(panels) for a in x], [h * wi for _ in range(panels) for wi in w]


class IntegrationWarning(UserWarning):
    """An adaptive integral did not meet its tolerance within the nested rule's largest level."""


class StepsParam(Param):
    """``steps``: an integer number of nodes, or ``"auto"`` (the nested rule to a tolerance)."""

    def __init__(self, max: int = 100_000):
        super().__init__("int", min=1, max=max)

    def describe(self) -> str:
        return f"'auto' or an integer from {self.min} to {self.max}"

    def valid(self, value) -> bool:
        return value == AUTO or super().valid(value)


def resolve_rule(method: str, params: dict, default_fixed: str) -> None:
    """Check and complete the integration parameters of an IG method in place (called from
    ``check_params``, so the cache key and the Attribution's params hold the concrete rule).

    ``steps="auto"``: ``steps_method`` must be ``None`` or ``"patterson"`` (it becomes
    ``"patterson"``); an integer ``steps``: ``steps_method=None`` becomes ``default_fixed`` (the
    method's official rule), and ``"patterson"`` needs a ladder size. Raises ``ParameterError``."""
    steps, rule = params["steps"], params.get("steps_method")
    if steps == AUTO:
        if rule not in (None, NESTED_RULE):
            raise ParameterError(
                f"method {method!r}: steps='auto' integrates with the nested rule (steps_method='patterson'); "
                f"steps_method={rule!r} needs an integer steps")
        params["steps_method"] = NESTED_RULE
        return
    params["steps_method"] = default_fixed if rule is None else rule
    try:
        quadrature(steps, params["steps_method"])
    except ValueError as err:
        raise ParameterError(f"method {method!r}: {err}") from None


def relative_change(new, old, floor: float = 1e-12) -> float:
    """``‖new − old‖ / ‖new‖`` (Frobenius; numpy or torch tensors), the estimate's scale."""
    diff = float((new - old).double().norm()) if hasattr(new, "double") else float(np.linalg.norm(new - old))
    size = float(new.double().norm()) if hasattr(new, "double") else float(np.linalg.norm(new))
    return diff / max(size, floor)


LADDER_LEVELS_BEFORE_BISECTION = 5  # 1, 3, 7, 15, 31 nodes on [0, 1]; then bisection (a kink is not smooth)
MAX_PASSES = 255  # per item: where even bisection cannot meet the tolerance, the result says met=False


def first_level_from_history(passes: list[int], most: float = 0.5, highest: int = 2) -> int:
    """The ladder level (index into :data:`LADDER`) to fetch in one go at the start of the next
    integrals, from the passes the previous ones used (e.g. the previous layer's, in AttAttr): the
    highest level, at most ``highest`` (7 nodes), that more than ``most`` of them reached; 1 (Gauss 3,
    the first level with an estimate) without history. Fetching a level early changes no result
    (the ladder still decides level by level on the same nodes); it only merges the batches of the
    levels below into one, at the price of the extra nodes for the items that stop earlier."""
    level = 1
    if passes:
        for k in range(2, highest + 1):
            if sum(p >= LADDER[k] for p in passes) > most * len(passes):
                level = k
    return level


def integrate_adaptive(items: list, evaluate: Callable, finish: Callable, tolerance: float,
                       max_passes: int = MAX_PASSES, ladder_levels: int = LADDER_LEVELS_BEFORE_BISECTION,
                       first_level: int = 1, floor: float | None = None) -> dict:
    """Every item's integral to a relative error estimate of ``tolerance``, in as few passes as the
    estimate allows.

    Phase 1, the nested ladder on [0, 1] (:func:`_climb_ladder`): 1, 3, 7, 15, 31 nodes (each level
    evaluates only the nodes it adds). The change ``c_k = ‖Q_k − Q_{k−1}‖ / ‖Q_k‖`` is the error of
    the coarser level; the estimate of ``Q_k`` is ``c_k · min(1, 2 c_k / c_{k−1})`` (``c_1`` at the
    first level): where the ladder converges geometrically the error of a level is about its change
    times the observed ratio, doubled for safety. Smooth integrands (GELU/SiLU networks) stop here.
    Phase 2, for the items it leaves (a ReLU in a classifier head, or the sharp region near α = 0
    of a normalised embedding; :func:`_bisect`): global adaptive bisection (QUADPACK's ``qag``
    strategy, Piessens et al. 1983) with the nested Gauss 3 / Kronrod 7 pair on each piece,
    splitting the pieces whose estimate ``‖finish(K7 − G3)‖`` is at least half the largest, until
    ``(Σ estimates + ‖Q − Q_previous round‖) / ‖Q‖`` meets the tolerance (the change since the
    last round catches a jump of the gradient, from a ReLU, that falls between a piece's nodes) or
    ``max_passes`` nodes are spent (``met=False``).

    Args:
        items: the things integrated (e.g. example indices of a batch).
        evaluate: ``evaluate(pairs) -> list of gradients``, one per ``(item, alpha)`` pair of
            ``pairs`` (the caller batches them as it likes); a gradient is any tensor.
        finish: ``finish(item, integral) -> tensor``, the attribution from ``Σ_k w_k g(α_k)``;
            must be **linear** in ``integral`` (an elementwise product, a matrix product), as the
            estimate of a sum of pieces is the sum of their estimates.
        tolerance: relative, on the ``finish`` result.
        ladder_levels: levels of the ladder before bisection (5: up to 31 nodes; 6: up to 63, for
            a sharp region at an end of [0, 1], which the ladder's nodes cluster towards).
        first_level: the ladder level whose nodes the first evaluation fetches at once (1: Gauss 3;
            2: Kronrod 7, one batch instead of two where most items need 7 nodes; see
            :func:`first_level_from_history`). The same nodes and decisions, so the same results; the
            records count the nodes the rule used, not the ones fetched early.
        floor: the best relative error the gradients' precision resolves (:func:`precision_floor`;
            None in fp32): the items stop at ``max(tolerance, floor)``, and the records of those whose
            estimate is above ``tolerance`` hold ``floor``.

    Returns ``{item: (attribution, record, integral)}``, ``record = integration_record(...)``."""
    target = max(tolerance, floor or 0.0)
    floor = floor if floor is not None and floor > tolerance else None

    def record(rule, passes, estimate):  # the floor is recorded where it, not the tolerance, decided
        return integration_record(rule, passes, estimate, tolerance, floor if estimate > tolerance else None)

    done, left = _climb_ladder(items, evaluate, finish, target, ladder_levels, first_level, record)
    if left:
        done.update(_bisect(left, evaluate, finish, target, max_passes, LADDER[ladder_levels - 1], record))
    return done


def _climb_ladder(items, evaluate, finish, target, ladder_levels, first_level, record):
    """Phase 1 of :func:`integrate_adaptive`: ``(done, left)``, ``left = {item: its last result}``
    for the items whose estimate did not meet ``target`` within ``ladder_levels`` levels."""
    levels = nested_levels()
    grads: dict = {item: [] for item in items}
    previous: dict = {}
    changes: dict = {}
    done: dict = {}
    active = list(items)
    for k in range(ladder_levels):
        size = LADDER[k]
        weights = levels[k][1]
        # the first evaluation fetches Gauss 3 (Gauss 1's node is its centre), or the nodes of
        # ``first_level``, at once: one pass fewer per level merged; later levels fetch what is missing
        fetch_level = max(k, min(max(1, first_level), ladder_levels - 1)) if k == 0 else k
        fetch = LADDER[fetch_level]
        start = len(grads[active[0]])  # every active item holds the same nodes
        nodes = levels[fetch_level][0]
        values = evaluate([(item, nodes[j]) for item in active for j in range(start, fetch)]) if fetch > start else []
        per = fetch - start
        for a, item in enumerate(active):
            grads[item].extend(values[a * per:(a + 1) * per])
        still = []
        for item in active:
            integral = sum(w * g for w, g in zip(weights, grads[item][:size]))
            result = finish(item, integral)
            change = relative_change(result, previous[item]) if k else math.inf
            # the change is the error of the coarser level; where the ladder converges (each change
            # at most half the one before), the error of this level is about change * ratio
            # (Richardson-style; ratio 2x the observed one, and capped at 1, for safety)
            ratio = min(1.0, 2 * change / changes[item]) if k > 1 and changes[item] > 0 else 1.0
            changes[item], previous[item] = change, result
            if change * ratio <= target:
                done[item] = (result, record(NESTED_RULE, size, change * ratio), integral)
                grads[item] = []
            else:
                still.append(item)
        active = still
        if not active:
            break
    return done, {item: previous[item] for item in active}


def _bisect(previous: dict, evaluate, finish, target, max_passes, spent_on_ladder, record) -> dict:
    """Phase 2 of :func:`integrate_adaptive` for the items of ``previous`` (``{item: the ladder's
    result}``), each having spent ``spent_on_ladder`` nodes."""
    levels = nested_levels()
    k7, w7 = levels[2]
    w3 = levels[1][1]
    active = list(previous)
    spent = {item: spent_on_ladder for item in active}
    pieces = {item: [(0.0, 0.5), (0.5, 1.0)] for item in active}  # to be evaluated
    kept: dict = {item: [] for item in active}  # evaluated pieces: (estimate, a, b, Q7, Q3)
    done: dict = {}
    while active:
        order = [(item, a, b) for item in active for a, b in pieces[item]]
        values = evaluate([(item, a + (b - a) * x) for item, a, b in order for x in k7])
        for n, (item, a, b) in enumerate(order):
            g = values[n * 7:(n + 1) * 7]
            q7 = (b - a) * sum(w * v for w, v in zip(w7, g))
            q3 = (b - a) * sum(w * v for w, v in zip(w3, g[:3]))
            kept[item].append((_norm(finish(item, q7 - q3)), a, b, q7, q3))
            spent[item] += 7
        still = []
        for item in active:
            integral = sum(piece[3] for piece in kept[item])
            result = finish(item, integral)
            # the pieces' own estimates, plus the change since the last round (the ladder's result at
            # first): a jump between a piece's nodes can hide from its K7 - G3, not from the change
            change = _norm(result - previous[item])
            previous[item] = result
            estimate = (sum(piece[0] for piece in kept[item]) + change) / max(_norm(result), 1e-12)
            if estimate <= target or spent[item] + 14 > max_passes:
                done[item] = (result, record(NESTED_RULE + "+bisection", spent[item], estimate), integral)
                continue
            largest = max(piece[0] for piece in kept[item])
            split = [piece for piece in kept[item] if piece[0] >= 0.5 * largest]
            split = sorted(split, key=lambda piece: -piece[0])[:max(1, (max_passes - spent[item]) // 14)]
            kept[item] = [piece for piece in kept[item] if all(piece is not s for s in split)]
            pieces[item] = [half for _, a, b, _, _ in split for half in ((a, (a + b) / 2), ((a + b) / 2, b))]
            still.append(item)
        active = still
    return done


def _norm(tensor) -> float:
    return float(tensor.double().norm()) if hasattr(tensor, "double") else float(np.linalg.norm(tensor))


def integration_record(rule: str, passes: int, estimate: float | None, tolerance: float | None,
                       floor: float | None = None) -> dict:
    """What an IG result says about its integral: the rule, the passes (nodes) used, the relative
    error estimate (None for fixed rules, which have none), the requested ``tolerance``, the
    precision ``floor`` it stopped at instead (None where the tolerance itself applied; see
    :func:`precision_floor`) and whether it met ``max(tolerance, floor)``."""
    target = None if tolerance is None else max(tolerance, floor or 0.0)
    met = None if estimate is None or target is None else bool(estimate <= target)
    return {"rule": rule, "passes": int(passes),
            "error_estimate": None if estimate is None or not math.isfinite(estimate) else float(estimate),
            "tolerance": tolerance, "floor": floor, "met": met}
