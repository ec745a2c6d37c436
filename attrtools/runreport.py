"""What attrtools' input rules did during one run, whichever tool applied them.

Each command's summary says how many inputs were truncated, which rows were left out and why, and
the worst integrated-gradients completeness gap, although these happen deep inside the engine
(``Engine.encode``, ``Engine.attribute``) and the data rules (``data.keep_content``), often in
several engines of one command (pruning builds one per model variant). They note them here; the
CLI resets the record when a command starts (``cli_kit.Command.invoke``) and prints it at the end
(``cli_kit.echo_summary``).

Torch-free, so the CLI kit can reset it without importing the engine. Counts are of distinct
inputs: the same text truncated by two engines, or the same row skipped by two tools, counts once.
Truncations are counted in rows of the user's data when the command says which rows it read
(``note_rows``, called by the CLI kit's loaders): the texts a tool derives from them (TextAttack's
perturbations, trigger insertions) are counted apart, so "3 rows truncated" means three rows of
the user's file, not thirty perturbed variants of one.
"""
from __future__ import annotations

# Keyed by hash, not by the texts: a long Python session (a notebook) must not keep every text it
# ever truncated or skipped. Python's string hash is stable within a process, which is all it needs.
_TRUNCATED: dict = {}   # hash((text, pair)) -> (original tokens, kept tokens)
_SKIPPED: dict = {}     # hash((id, text)) -> reason kind
_WORST_GAP: list = []   # [(relative gap, method, example id, unit)] (at most one)
_ROWS: set = set()      # hash((text, pair)) of the rows of the user's data this command read


def reset() -> None:
    """Forget everything noted so far (called when a command starts)."""
    _TRUNCATED.clear()
    _SKIPPED.clear()
    _WORST_GAP.clear()
    _ROWS.clear()


def note_rows(examples) -> None:
    """``examples`` (``Example`` items) are rows of the user's data: truncations of exactly these
    inputs are the rows the summary counts; any other truncated input was derived by a tool."""
    for example in examples:
        _ROWS.add(hash((example.text, example.text_pair)))


def note_truncated(text: str, text_pair: str | None, original: int, kept: int) -> None:
    """An input of ``original`` tokens was cut to ``kept`` (``Engine.encode``)."""
    _TRUNCATED.setdefault(hash((text, text_pair)), (int(original), int(kept)))


def note_completeness(gap: float, method: str, example_id, unit=None) -> None:
    """An IG result missed completeness by ``gap`` (relative); the worst one is kept."""
    if not _WORST_GAP or gap > _WORST_GAP[0][0]:
        _WORST_GAP[:] = [(float(gap), method, example_id, unit)]


def note_skipped(rows) -> None:
    """Rows left out of a run (``data.keep_content``'s ``skipped`` dicts: ``id``, ``reason``, ``text``)."""
    for row in rows:
        _SKIPPED.setdefault(hash((row.get("id"), row.get("text"))), reason_kind(row.get("reason") or ""))


def reason_kind(reason: str) -> str:
    """``"no letters in text ('123')"`` -> ``"no letters in text"`` (the reason without its sample)."""
    return reason.split(" (")[0]


def count_reasons(reasons) -> dict:
    """``{kind: count}`` of skip reasons, in first-seen order (``reason_kind`` of each)."""
    counts: dict[str, int] = {}
    for reason in reasons:
        kind = reason_kind(reason or "")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def report() -> dict:
    """``{"truncated": n, "truncated_unit": "row" | "input", "truncated_derived": n,
    "worst_completeness_gap": (gap, method, example_id, unit), "skipped": n, "skipped_reasons":
    {kind: n}}``, each key only when something happened.

    ``truncated``: rows of the user's data truncated (``truncated_unit`` "row") when rows were
    noted (``note_rows``), with ``truncated_derived`` the other truncated inputs (texts a tool
    built from the rows); else every distinct truncated input ("input")."""
    out: dict = {}
    if _TRUNCATED:
        if _ROWS:
            rows = sum(1 for key in _TRUNCATED if key in _ROWS)
            derived = len(_TRUNCATED) - rows
            out.update(truncated=rows, truncated_unit="row")
            if derived:
                out["truncated_derived"] = derived
        else:
            out.update(truncated=len(_TRUNCATED), truncated_unit="input")
    if _WORST_GAP:
        out["worst_completeness_gap"] = _WORST_GAP[0]
    if _SKIPPED:
        out["skipped"] = len(_SKIPPED)
        out["skipped_reasons"] = count_reasons(_SKIPPED.values())
    return out
