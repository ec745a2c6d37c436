"""Completeness: the integrated-gradients report of a call (``Attribution.completeness``).

Integrated-gradients methods (AttAttr per layer, ig_embed) store a completeness record per unit
(the sum of the attribution against the output's change, ``methods.integration``).
``completeness_summary`` turns the records into ``Attribution.completeness``; a ``GapTally`` keeps
the worst gap of a call's results as they pass; ``report_gaps`` writes it to the engine's
``stats`` and the run report and raises one ``CompletenessWarning`` (and one
``IntegrationWarning`` for adaptive integrals that missed their tolerance) per call, whose hint
(``precision_hint``) names the option of the command that runs.
"""
from __future__ import annotations

from . import runreport
from .notices import warn

# Where each command sets the integration's precision (the completeness warning names the option of
# the command that runs; a test checks every option against the command). The demo has none.
STEPS_OPTIONS = {"attribute": ("--param",), "evaluate": ("--param",), "prune": ("--protocol", "--steps"),
                 "tree": ("--protocol", "--steps"), "triggers": ("--protocol", "--steps"),
                 "audit": ("--protocol", "--steps", "--rank-steps")}
STEPS_HINT = "; ".join(f"{' / '.join(o if o != '--param' else '--param tolerance=...' for o in opts)} in {cmd}"
                       for cmd, opts in STEPS_OPTIONS.items())


def precision_hint() -> str:
    """What raises an IG result's precision, in the words of where the user is (the one rule the
    completeness and tolerance warnings use): a Python keyword for API users, the running
    command's own flags for CLI users (``notices.cli_command``), nothing for the demo (no option)."""
    from .notices import cli_command

    command = cli_command()
    if command is None:
        return ("pass steps='auto' (the default) with a smaller tolerance=, e.g. tolerance=1e-4, or an integer steps "
                "with steps_method='gausslegendre'")
    options = STEPS_OPTIONS.get(command)
    if not options:
        return ""
    if options == ("--param",):
        return "add --param tolerance=1e-4 (with the default steps=auto), or --param steps=64 --param steps_method=gausslegendre"
    return "use " + " / ".join(options) + (" (--protocol converged, the default, integrates to 1e-3; --steps auto)"
                                            if "--protocol" in options else "")


class CompletenessWarning(UserWarning):
    """An integrated-gradients result misses completeness by more than the engine's tolerance."""


def completeness_summary(records: dict | None, units) -> dict | None:
    """``{unit: completeness_record}`` -> the ``Attribution.completeness`` dict: lists ``sum``,
    ``delta``, ``gap``, ``relative_gap`` in unit order (one per layer for AttAttr, one entry for
    single-unit methods), ``worst_relative_gap`` and ``worst_unit`` (the layer, or None), and
    where the method recorded its integral (``methods.integration.integration_record``) the lists
    ``rule``, ``passes``, ``error_estimate``, ``tolerance``, ``floor`` and ``met``."""
    if not records:
        return None
    order = [u for u in (units if units is not None else [None]) if u in records or str(u) in records]
    order = order or list(records)
    rows = [records.get(u, records.get(str(u))) for u in order]
    worst = max(range(len(rows)), key=lambda k: rows[k]["relative_gap"])
    out = {key: [float(row[key]) for row in rows] for key in ("sum", "delta", "gap", "relative_gap")}
    for key in ("rule", "passes", "error_estimate", "tolerance", "floor", "met"):  # the integral's record, where kept
        if all(key in row for row in rows):
            out[key] = [row[key] for row in rows]
    out.update(units=list(order), worst_relative_gap=float(rows[worst]["relative_gap"]), worst_unit=order[worst])
    return out


class GapTally:
    """The worst IG completeness gap of a call's results, kept as they pass (nothing else held)."""

    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.count = 0  # results with a completeness record
        self.over = 0  # ... whose worst relative gap exceeds the tolerance
        self.worst = None  # (gap, method, example_id, worst unit)
        self.unmet = 0  # ... whose adaptive integral missed its tolerance (methods.integration)
        self.worst_estimate = 0.0
        self.floored = 0  # ... integrated to their dtype's precision floor, above the tolerance asked
        self.floor = 0.0

    def add(self, result) -> None:
        if result is None or not result.completeness:
            return
        floors = [f for f in result.completeness.get("floor") or [] if f is not None]
        if floors:
            self.floored += 1
            self.floor = max([self.floor] + floors)
        missed = [e for e, met in zip(result.completeness.get("error_estimate") or [], result.completeness.get("met") or [])
                  if met is False]
        if missed:
            self.unmet += 1
            self.worst_estimate = max([self.worst_estimate] + [e for e in missed if e is not None])
        gap = result.completeness["worst_relative_gap"]
        self.count += 1
        self.over += gap > self.tolerance
        if self.worst is None or gap > self.worst[0]:
            self.worst = (gap, result.method, result.example_id, result.completeness.get("worst_unit"))


def report_gaps(tally: GapTally, tolerance: float, stats: dict) -> None:
    """``stats`` and the run report (``runreport``) from a call's completeness tally, and one
    ``CompletenessWarning`` when some result misses by more than the tolerance."""
    if tally.worst is None:
        stats.pop("worst_completeness_gap", None)
        return
    worst, method, example_id, where = tally.worst
    stats["worst_completeness_gap"] = worst
    runreport.note_completeness(worst, method, example_id, where)
    hint = precision_hint() if (tally.over or tally.unmet) else ""
    if tally.over:
        # In bf16/fp16 the forward's own rounding, not the rule, leaves the gap: a smaller tolerance cannot help
        cause = ("The model's reduced-precision (bf16/fp16) forward limits it: load the model in fp32 "
                 "(load_model(..., dtype='fp32'), --dtype fp32) for a converged integral" if tally.floored
                 else "The integral has not converged" + (f": {hint}" if hint else ""))
        on = f" on example {example_id!r}" if example_id is not None else ""
        warn(
            f"{method}: {tally.over} of {tally.count} attribution(s) miss IG completeness by more than "
            f"{tolerance:g} (relative); worst {worst:.3g}{on}{f' (layer {where})' if where is not None else ''}. "
            + cause, CompletenessWarning)
    if tally.unmet:
        from .methods.integration import IntegrationWarning

        warn(f"{method}: {tally.unmet} of {tally.count} attribution(s) did not meet their tolerance with the "
             f"nested rule's 63 nodes (worst estimate {tally.worst_estimate:.3g}; a kink or a sharp region in "
             "the integrand); their completeness records say met=False" + (f": {hint}" if hint else ""),
             IntegrationWarning)
    if tally.floored:
        from .methods.integration import IntegrationWarning

        warn(f"{method}: the tolerance asked is below what the model's reduced-precision (bf16/fp16) forward "
             f"resolves: {tally.floored} of {tally.count} attribution(s) integrated to its floor {tally.floor:g} "
             "instead (their completeness records hold 'floor'; fp32 resolves the tolerance)", IntegrationWarning)
