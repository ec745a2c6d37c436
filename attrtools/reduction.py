"""Lean payloads: a declared reduction of a per-head ``matrix`` payload, applied right after the method
computes and before the cache write (issue 28), so a tool that keeps a few numbers per head or per
layer never writes ``L·H·n²`` numbers per example.

``reduce`` is a parameter every ``matrix`` method takes (``Method.params`` validates it with
``check``); it is part of the params, so of the cache key and of ``Attribution.params``:

- ``None`` (default): the full payload ``(L, H, n, n)``;
- ``"heads_sum"``: heads summed, ``(L, 1, n, n)``; ``Attribution.layer_matrices()`` gives what it
  gives on the full payload, bit for bit (the attribution tree sums heads, as the AttAttr code does),
  ``token_scores()`` the same up to fp32 summation order; ``head_importance()`` is refused;
- ``"head_max"``: the maximum over ``(i, j)`` of each head, ``(L, H, 1, 1)``;
  ``Attribution.head_importance()`` gives what it gives on the full payload, bit for bit (Hao et al. 2021 §4:
  ``max_{i,j} Attr_h``); the token-level views are refused.

The kind stays ``matrix``; ``payload_tail`` gives the shape a cache entry must end with. A reduced
request whose own entry is missing is served from the full entry when the cache holds it
(``from_full``; the engine's existence check, ``full_params``, counts it as present too, so every
path of a job, single-process, streamed or distributed, reads the same numbers), so tools still
share what ``attrtools attribute`` wrote; a reduced computation also writes the other reductions
(``compute``'s siblings: ``heads_sum`` costs ``L·n²`` numbers, ``head_max`` ``L·H``), so prune and
tree share one AttAttr computation. Values are unchanged: the
reduction of the fp32 payload is the one the tools computed on the full payload (tests/test_reduction.py).
Bytes per example: docs/precision-and-state.md ("Lean payloads").
"""
from __future__ import annotations

REDUCTIONS = ("heads_sum", "head_max")


def check(kind: str, method: str, value) -> None:
    """Raise ``ParameterError`` unless ``value`` is None or a reduction a ``kind`` payload has."""
    if value is None:
        return
    from .errors import ParameterError

    if kind != "matrix":
        raise ParameterError(f"method {method!r}: parameter 'reduce' applies to per-head 'matrix' payloads; "
                             f"{method} gives {kind!r}")
    if value not in REDUCTIONS:
        raise ParameterError(f"method {method!r}: parameter 'reduce' must be one of None, "
                             f"{', '.join(map(repr, REDUCTIONS))}, got {str(value)[:40]!r}")


def reduce_payload(scores, reduction):
    """``scores (units, H, n, n)`` reduced by ``reduction`` (module docstring); as is for None."""
    if reduction is None:
        return scores
    if reduction == "heads_sum":
        return scores.sum(1, keepdim=True)
    return scores.amax((2, 3), keepdim=True)


def compute(impl, model, batch, units, params: dict) -> tuple[list, list[dict]]:
    """``impl.compute`` with ``params`` minus ``reduce``, each example's payload reduced: the engine's
    one call of a method (``Engine._compute_batch``). Returns ``(payloads, siblings)``: ``siblings[r]``
    maps every other reduction to example ``r``'s payload reduced so, for the engine to write beside
    the one asked, so that the tools share one computation (prune keeps ``head_max``, the tree
    ``heads_sum``: after ``attrtools prune`` a tree of the same examples and class is read from the
    cache). Empty dicts for a full request (the full entry serves every reduction, ``from_full``)."""
    reduction = params.get("reduce")
    given = {k: v for k, v in params.items() if k != "reduce"}
    payloads = impl.compute(model, batch, units=units, **given)
    if reduction is None:
        return payloads, [{} for _ in payloads]
    siblings = [{other: reduce_payload(p, other) for other in REDUCTIONS if other != reduction} for p in payloads]
    return [reduce_payload(p, reduction) for p in payloads], siblings


def payload_tail(kind: str, n: int, reduction=None) -> tuple:
    """The shape a ``kind`` payload of an ``n``-token example ends with, after ``reduction``."""
    if kind == "matrix" and reduction == "head_max":
        return (1, 1)
    return {"tokens": (n,), "layer_matrix": (n, n), "matrix": (n, n)}.get(kind, ())


def full_params(params: dict) -> dict | None:
    """The params of the full payload a reduced request can be made from; None when none is reduced."""
    return {k: v for k, v in params.items() if k != "reduce"} if params.get("reduce") is not None else None


def from_full(get, key_for, params: dict):
    """A reduced request's hit made from the full entry: ``get(key_for(full params))`` reduced, or None
    (no reduction asked, or no full entry). ``get`` and ``key_for`` are the engine's cache read and key."""
    full = full_params(params)
    hit = get(key_for(full)) if full is not None else None
    if hit is None:
        return None
    scores, meta = hit
    return reduce_payload(scores, params["reduce"]), meta


__all__ = ["REDUCTIONS", "check", "compute", "from_full", "full_params", "payload_tail", "reduce_payload"]
