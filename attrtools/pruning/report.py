"""The pruning run as a report (``report.html`` in the run directory), built from the run's own
files: ``summary.json``, ``head_importance.csv``, ``pruning_curve.csv`` and ``pruned_heads.json``.

What a reader sees: the outcome in a few lines (heads pruned, accuracy masked and physically pruned,
parameters, latency); each strategy's head importance as a layer × head heat-map with its chosen
plan crossed out; accuracy and loss against the fraction of heads pruned, with the numbers in tables
beside the curves; the plan per layer; how long each strategy took."""
from __future__ import annotations

import csv
import json
import os

from ..report import Report, fmt_percent, fmt_seconds, model_label
from ..report.figures import head_importance_figure, line_figure
from ..report.page import Table, figure_from_matplotlib


def _read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def importance_tables(rows: list[dict]) -> dict:
    """``{strategy: (L, H) numpy array}`` from ``head_importance.csv`` rows."""
    import numpy as np

    tables: dict = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == strategy]
        L = max(int(r["layer"]) for r in mine) + 1
        H = max(int(r["head"]) for r in mine) + 1
        table = np.full((L, H), np.nan)
        for r in mine:
            table[int(r["layer"]), int(r["head"])] = float(r["importance"])
        tables[strategy] = table
    return tables


def _plan(raw: dict | None) -> dict:
    return {int(layer): [int(h) for h in heads] for layer, heads in (raw or {}).items()}


def _skipped_fact(rows) -> str:
    """``"2 (no letters in text: 1, empty text: 1) without content"``: rows left out by ``keep_content``."""
    from ..data import ExampleList

    return f"{ExampleList([], rows).skipped_summary()} without content"


def _shared_fact(groups) -> str:
    """ALBERT-style shared blocks: which layers run one block (a head pruned there goes from all)."""
    listed = "; ".join(", ".join(str(layer) for layer in group) for group in groups)
    return (f"layers {listed} run one shared block: a head pruned there is pruned in every one of these "
            "layers, so plans count and remove it once per block")


def _outcome_section(report: Report, summary: dict) -> None:
    """The plan's outcome: accuracy, loss, parameters and latency before and after pruning."""
    plan = summary.get("plan", {})
    total = summary.get("heads_total")
    outcome = report.section("Outcome", f"The plan of the {summary.get('plan_strategy')} strategy, pruning "
                                        f"{plan.get('heads_pruned')} of {total} heads "
                                        f"({fmt_percent(plan.get('fraction'), 0)}).")
    lat = summary.get("latency", {})
    params = summary.get("parameters", {})
    outcome.add(Table(
        ["", "before", "after pruning", "change"],
        [["accuracy", fmt_percent(summary.get("accuracy_unpruned")), fmt_percent(plan.get("accuracy_pruned")),
          _delta_points(summary.get("accuracy_unpruned"), plan.get("accuracy_pruned"))],
         ["loss (cross-entropy)", summary.get("loss_unpruned"), plan.get("loss_pruned"),
          _delta(summary.get("loss_unpruned"), plan.get("loss_pruned"))],
         ["parameters", params.get("before"), params.get("after"), f"−{fmt_percent(params.get('saving'))}"],
         [f"latency, batch of {lat.get('batch_size')} (median of {lat.get('repeats')})",
          fmt_seconds(lat.get("median_s_before")), fmt_seconds(lat.get("median_s_after")),
          _speed(lat.get("speedup"))],
         ["latency, one example", fmt_seconds(lat.get("single_median_s_before")),
          fmt_seconds(lat.get("single_median_s_after")), _speed(lat.get("single_speedup"))]],
        caption="Unpruned model against the physically pruned one",
        note=(f"Masking the same heads gives accuracy {fmt_percent(plan.get('accuracy_masked'))}; "
              + ("masked and physically pruned agree." if plan.get("masked_equals_pruned")
                 else "masked and physically pruned DIFFER — see summary.json.")
              + f" Latency on {lat.get('device', '?')} with {lat.get('threads', '?')} threads.")))


def _curve_section(report: Report, curve: list[dict]) -> None:
    """Accuracy and loss as heads are pruned: the figure and the tables per fraction."""
    strategies = list(dict.fromkeys(r["strategy"] for r in curve))
    fractions = sorted({float(r["fraction"]) for r in curve})
    value = {(r["strategy"], float(r["fraction"])): r for r in curve}
    series_acc = {s: ([100 * f for f in fractions], [_num(value.get((s, f), {}).get("accuracy")) for f in fractions])
                  for s in strategies}
    series_loss = {s: ([100 * f for f in fractions], [_num(value.get((s, f), {}).get("loss")) for f in fractions])
                   for s in strategies}
    fig = line_figure([{"title": "accuracy", "xlabel": "heads pruned (%)", "ylabel": "accuracy",
                        "series": series_acc, "dashed": {"random"}},
                       {"title": "loss", "xlabel": "heads pruned (%)", "ylabel": "cross-entropy",
                        "series": series_loss, "dashed": {"random"}}], width=10.5, height=3.8)
    section = report.section("Accuracy and loss as heads are pruned",
                             "Heads removed by masking, least important first, in steps of the fraction "
                             "of all heads. ★ the best strategy in a row (where they differ).")
    section.figure(figure_from_matplotlib(fig, "Accuracy (left) and loss (right) against the share of heads "
                                               "pruned; random is dashed.", wide=True))
    section.row(_curve_table(strategies, fractions, value, "accuracy", higher=True),
                _curve_table(strategies, fractions, value, "loss", higher=False))


def pruning_report(run_dir: str, title: str = "Head pruning") -> Report:
    """Build the report of a finished planner run directory (``pruning.pipeline.run``)."""
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    plans_file = _read_json(os.path.join(run_dir, "pruned_heads.json"))
    curve = _read_csv(os.path.join(run_dir, "pruning_curve.csv"))
    importance = _read_csv(os.path.join(run_dir, "head_importance.csv"))
    plan = summary.get("plan", {})
    total = summary.get("heads_total")
    name = model_label(summary.get("model") or summary.get("model_type"), summary.get("fingerprint"))
    report = Report(title, f"Which attention heads can go, ranked by {len(summary.get('strategies', []))} "
                           "importance strategies, checked by masking and by physically removing them.",
                    facts=[("model", name),
                           ("heads", f"{total} ({summary.get('layers')} layers × {summary.get('heads_per_layer')})"),
                           ("importance from", f"{summary.get('importance_examples')} examples"),
                           ("accuracy measured on", f"{summary.get('eval_examples')} examples")]
                    + ([("rows skipped", _skipped_fact(summary["skipped_rows"]))] if summary.get("skipped_rows") else [])
                    + ([("shared layers", _shared_fact(summary["shared_layers"]))] if summary.get("shared_layers") else []))

    _outcome_section(report, summary)
    if importance:
        tables = importance_tables(importance)
        chosen = {s: _plan(p) for s, p in (plans_file.get("all_strategies") or {}).items()}
        fig = head_importance_figure(tables, chosen)
        report.section("Head importance (layer × head)",
                       "Each strategy's score for every head (own colour scale per strategy: their units differ). "
                       f"Red crosses: the heads that strategy's plan prunes at {fmt_percent(plan.get('fraction'), 0)}."
                       ).figure(figure_from_matplotlib(fig, "Head importance per strategy; rows are layers, columns "
                                                            "heads; × = pruned by the plan.", wide=True))

    if curve:
        _curve_section(report, curve)

    chosen_plan = _plan(plans_file.get("pruned_heads"))
    if chosen_plan or plans_file:
        heads_per_layer = summary.get("heads_per_layer") or 0
        rows = [[layer, ", ".join(map(str, sorted(chosen_plan.get(layer, [])))) or "–",
                 heads_per_layer - len(chosen_plan.get(layer, []))]
                for layer in range(summary.get("layers") or 0)]
        report.section("The plan", f"Heads removed per layer ({plans_file.get('strategy')}); written to "
                                   "pruned_heads.json and applied to pruned_model/.").add(
            Table(["layer", "heads pruned", "heads kept"], rows))

    seconds = summary.get("importance_seconds") or {}
    if seconds:
        report.section("Time", "Wall time of each strategy's head-importance pass (cached attributions make "
                               "re-runs faster).").add(
            Table(["strategy", "time"], [[s, fmt_seconds(v)] for s, v in seconds.items()]))
    return report


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _speed(ratio) -> str:
    if not ratio:
        return "–"
    return f"×{ratio:.2f} faster" if ratio >= 1 else f"×{1 / ratio:.2f} slower"


def _delta(before, after) -> str:
    if before is None or after is None:
        return "–"
    return f"{after - before:+.3f}"


def _delta_points(before, after) -> str:
    if before is None or after is None:
        return "–"
    return f"{100 * (after - before):+.1f} points"


def _curve_table(strategies, fractions, value, metric: str, higher: bool) -> Table:
    rows, best = [], set()
    for r, f in enumerate(fractions):
        cells = [_num(value.get((s, f), {}).get(metric)) for s in strategies]
        heads = next((value[(s, f)]["heads_pruned"] for s in strategies if (s, f) in value), "")
        rows.append([f"{100 * f:.0f} %", int(heads) if str(heads).isdigit() else heads] + cells)
        present = [c for c in cells if c is not None]
        if present and len(strategies) > 1 and len(set(present)) > 1:
            target = max(present) if higher else min(present)
            best |= {(r, 2 + k) for k, c in enumerate(cells) if c == target}
    return Table(["pruned", "heads"] + strategies, rows, caption=f"{metric} ({'higher' if higher else 'lower'} is "
                                                                  "better)", best=best)


def write_figures(run_dir: str, formats) -> str | None:
    """``run_dir/figures/head-importance-STRATEGY.{fmt}`` for each strategy of a finished run, at
    paper sizes (``report.plots.heads_figure``), the strategy's plan crossed out; a diverging scale
    where a strategy's scores have both signs. Returns the folder (None without head_importance.csv)."""
    from ..report.plots import heads_figure

    rows = _read_csv(os.path.join(run_dir, "head_importance.csv"))
    if not rows or not formats:
        return None
    plans = {s: _plan(p) for s, p in (_read_json(os.path.join(run_dir, "pruned_heads.json")).get("all_strategies")
                                      or {}).items()}
    folder = os.path.join(run_dir, "figures")
    for strategy, table in importance_tables(rows).items():
        import numpy as np

        signed = bool(np.nanmin(table) < 0)
        fig = heads_figure(table, signed, f"{strategy} importance", title=f"head importance: {strategy}",
                           plan=plans.get(strategy))
        for fmt in formats:
            fig.save(os.path.join(folder, f"head-importance-{strategy}.{fmt}"))
    return folder


def write_pruning_report(run_dir: str) -> str:
    """Write ``run_dir/report.html``; returns its path."""
    return pruning_report(run_dir).save(os.path.join(run_dir, "report.html"))
