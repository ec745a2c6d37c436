"""Faithfulness reports: ``faithfulness.csv``, ``faithfulness.md``, ``curves.csv``, ``per_example.csv``
and ``faithfulness_curves.png`` (deletion, insertion and accuracy curves, one line per method).
Every file is written atomically."""
from __future__ import annotations

import csv
import io
import math
import os

from ..io import atomic_path, write_text
from .metrics import DIRECTION

COLUMNS = ("method", "status", "n_examples", "aopc_comp", "aopc_suff", "deletion_auc", "insertion_auc",
           "log_odds", "accuracy", "spearman_gxi", "spearman_gxi_std", "attribution_seconds", "from_cache",
           "params", "reason")
HEADERS = {"aopc_comp": "AOPC comp ↑", "aopc_suff": "AOPC suff ↓", "deletion_auc": "deletion AUC ↓",
           "insertion_auc": "insertion AUC ↑", "log_odds": "log-odds ↓", "accuracy": "ACC ↓",
           "spearman_gxi": "ρ vs G×I ↑"}


def rows(evaluation) -> list[dict]:
    out = []
    for r in evaluation.results:
        s = r.summary
        out.append({
            "method": r.name, "status": r.status, "n_examples": r.n_examples if r.status == "ok" else 0,
            **{k: s.get(k, float("nan")) for k in ("aopc_comp", "aopc_suff", "deletion_auc", "insertion_auc",
                                                    "log_odds", "accuracy")},
            "spearman_gxi": r.spearman, "spearman_gxi_std": r.spearman_std,
            "attribution_seconds": round(r.seconds, 2), "from_cache": r.from_cache,
            "params": ";".join(f"{k}={v}" for k, v in sorted(r.params.items())), "reason": r.reason,
        })
    return out


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_csv(evaluation, path: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows(evaluation):
        writer.writerow({k: _fmt(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    return write_text(path, buffer.getvalue())


def write_curves_csv(evaluation, path: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "curve", "fraction", "value"])
    for r in evaluation.ok():
        curves = r.summary.get("curves", {})
        for curve, axis in (("comprehensiveness", "bins"), ("sufficiency", "bins"), ("accuracy", "bins"),
                            ("deletion", "grid"), ("insertion", "grid")):
            for x, y in zip(curves.get(axis, []), curves.get(curve) or []):
                writer.writerow([r.name, curve, f"{x:g}", _fmt(y, 6)])
    return write_text(path, buffer.getvalue())


def write_per_example_csv(evaluation, path: str, example_ids=None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = ("f0", "aopc_comp", "aopc_suff", "deletion_auc", "insertion_auc", "log_odds", "accuracy", "spearman_gxi")
    writer.writerow(["method", "example"] + list(names))
    for r in evaluation.ok():
        for i, m in enumerate(r.per_example):
            ident = example_ids[i] if example_ids else i
            writer.writerow([r.name, ident] + [_fmt(m.get(k), 6) for k in names])
    return write_text(path, buffer.getvalue())


def markdown(evaluation, title: str = "Faithfulness", command: str | None = None) -> str:
    ok = sorted(evaluation.ok(), key=lambda r: -_sort_key(r.summary.get("aopc_comp")))
    metrics = ["aopc_comp", "aopc_suff", "deletion_auc", "insertion_auc", "log_odds", "accuracy"]
    if evaluation.reference:
        metrics.append("spearman_gxi")
    lines = [f"# {title}", ""]
    skipped = len(getattr(evaluation, "skipped_rows", []) or [])
    lines.append(f"Preset `{evaluation.preset}`, operator `{evaluation.operator}`, {evaluation.n_examples} examples"
                 + (f" ({skipped} row(s) without content skipped, {evaluation.n_examples + skipped} rows read)"
                    if skipped else "") + ", "
                 f"clean accuracy {_fmt(evaluation.clean_accuracy)}; {evaluation.forwards} perturbed forwards. "
                 "Target: class predicted on the clean input; special tokens never ranked or perturbed.")
    if command:
        lines += ["", f"Command: `{command}`"]
    lines += ["", "| method | n | " + " | ".join(HEADERS[m] for m in metrics) + " | time (s) |",
              "|---|---:|" + "---:|" * len(metrics) + "---:|"]
    best = {}
    for m in metrics:
        values = [_value(r, m) for r in ok if _competes(r, m, evaluation.reference)]
        if values:
            best[m] = max(values) if DIRECTION[m] > 0 else min(values)
    for r in ok:
        cells = []
        for m in metrics:
            v = _value(r, m)
            text = _fmt(v)
            if m == "spearman_gxi" and text:
                text += f" ± {_fmt(r.spearman_std, 2)}"
            marked = text and m in best and v == best[m] and _competes(r, m, evaluation.reference)
            cells.append(f"**{text}**" if marked else text)
        seconds = _fmt(r.seconds, 1) + (f" ({r.from_cache} cached)" if r.from_cache else "")
        lines.append(f"| {r.name} | {r.n_examples} | " + " | ".join(cells) + f" | {seconds} |")
    subsets = [r for r in ok if r.n_examples != evaluation.n_examples]
    if subsets:
        lines += ["", "Evaluated on a subset (first N examples): " +
                  ", ".join(f"{r.name} (N={r.n_examples})" for r in subsets) + "."]
    params = [r for r in ok if r.params and r.name != "random"]
    if params:
        lines += ["", "Parameters: " + "; ".join(f"{r.name}: " + ", ".join(f"{k}={v}" for k, v in r.params.items())
                                                  for r in params) + "."]
    if evaluation.skipped():
        lines += ["", "Skipped:"] + [f"- `{r.name}`: {r.reason}" for r in evaluation.skipped()]
    if evaluation.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in evaluation.notes]
    return "\n".join(lines) + "\n"


def _competes(result, metric, reference) -> bool:
    """Whether ``result``'s value can be a column's best: a number, and in the agreement column not
    the reference method itself (its ρ with itself is 1 by construction, not a finding)."""
    if math.isnan(_value(result, metric)):
        return False
    return not (metric == "spearman_gxi" and result.name == reference)


def _value(result, metric):
    if metric == "spearman_gxi":
        return result.spearman
    v = result.summary.get(metric)
    return float("nan") if v is None else v


def _sort_key(v):
    return -math.inf if v is None or math.isnan(v) else v


def plot_curves(evaluation, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("deletion", "grid", "deletion (MoRF): p(ŷ) ↓"), ("insertion", "grid", "insertion: p(ŷ) ↑"),
              ("accuracy", "bins", "accuracy after removing top-k ↓")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    palette = plt.get_cmap("tab20").colors
    for ax, (curve, axis, label) in zip(axes, panels):
        for index, r in enumerate(sorted(evaluation.ok(), key=lambda r: r.name)):
            c = r.summary.get("curves", {})
            ys = c.get(curve)
            if not ys or all(y is None or (isinstance(y, float) and math.isnan(y)) for y in ys):
                continue
            style = dict(color="black", linestyle="--") if r.name == "random" else \
                dict(color=palette[(2 * index) % 20 + (index // 10) % 2], linestyle=("-", ":", "-.")[index % 3])
            ax.plot([100 * x for x in c[axis]], ys, marker=".", label=r.name, **style)
        ax.set_xlabel(f"% of non-special tokens ({evaluation.operator})")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Faithfulness, preset {evaluation.preset}, {evaluation.n_examples} examples")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def html_report(evaluation, command: str | None = None, model: str | None = None, curves_png: str | None = None):
    """The faithfulness table as an ``attrtools.report.Report``: methods sorted by AOPC comprehensiveness,
    the best value per column marked, the curves, and the accuracy-after-removal numbers beside them."""
    from ..report import Report, fmt_number, fmt_seconds
    from ..report.page import Table, figure_from_png

    ok = sorted(evaluation.ok(), key=lambda r: -_sort_key(r.summary.get("aopc_comp")))
    metrics = ["aopc_comp", "aopc_suff", "deletion_auc", "insertion_auc", "log_odds", "accuracy"]
    if evaluation.reference:
        metrics.append("spearman_gxi")
    facts = [("model", model)] if model else []
    facts += [("examples", evaluation.n_examples), ("perturbation", f"{evaluation.operator} (preset {evaluation.preset})"),
              ("clean accuracy", fmt_number(evaluation.clean_accuracy)), ("perturbed forwards", evaluation.forwards)]
    if command:
        facts.append(("command", command))
    report = Report("Faithfulness", "Do the attributions point at the tokens the model really uses? Tokens are "
                                    "removed (or kept) in the order each method ranks them and the prediction is "
                                    "re-measured.", facts=facts)
    rows, best = [], set()
    for m_index, m in enumerate(metrics):
        values = [_value(r, m) for r in ok if _competes(r, m, evaluation.reference)]
        if values and len(set(values)) > 1:  # nothing to mark where every method ties
            target = max(values) if DIRECTION[m] > 0 else min(values)
            best |= {(r_index, 2 + m_index) for r_index, r in enumerate(ok)
                     if _value(r, m) == target and _competes(r, m, evaluation.reference)}
    for r in ok:
        cells = [None if math.isnan(_value(r, m)) else _value(r, m) for m in metrics]
        seconds = fmt_seconds(r.seconds) + (f" ({r.from_cache} cached)" if r.from_cache else "")
        rows.append([r.name, r.n_examples] + cells + [seconds])
    section = report.section("Methods, best first",
                             "Sorted by AOPC comprehensiveness; arrows give the better direction; ★ marks the best "
                             "value of each column.")
    section.add(Table(["method", "examples"] + [HEADERS[m] for m in metrics] + ["attribution time"], rows, best=best))
    if evaluation.skipped():
        section.add(Table(["skipped method", "reason"], [[r.name, r.reason or ""] for r in evaluation.skipped()]))
    if evaluation.notes:
        for note in evaluation.notes:
            section.text(note, muted=True)
    if ok:
        curves = report.section("Curves", "Probability of the predicted class as tokens are deleted (most "
                                          "important first) or inserted, and accuracy after removing the top-k %.")
        if curves_png and os.path.exists(curves_png):
            with open(curves_png, "rb") as f:
                curves.figure(figure_from_png(f.read(), "Deletion (lower is better), insertion (higher is better) "
                                                        "and accuracy after removing the top tokens; random "
                                                        "attribution dashed.", wide=True))
        bins = next((r.summary.get("curves", {}).get("bins") for r in ok if r.summary.get("curves", {}).get("bins")), [])
        if bins:
            table = [[r.name] + [_none(y) for y in (r.summary.get("curves", {}).get("accuracy") or [None] * len(bins))]
                     for r in sorted(ok, key=lambda r: r.name)]
            curves.add(Table(["method"] + [f"{100 * b:g} %" for b in bins], table,
                             caption="Accuracy after removing the top-k % of tokens (lower = more faithful)"))
            table = [[r.name] + [_none(y) for y in (r.summary.get("curves", {}).get("comprehensiveness") or
                                                    [None] * len(bins))] for r in sorted(ok, key=lambda r: r.name)]
            curves.add(Table(["method"] + [f"{100 * b:g} %" for b in bins], table,
                             caption="p(ŷ) after removing the top-k % of tokens (AOPC comprehensiveness averages "
                                     "p(ŷ|x) minus these; lower = more faithful)"))
    return report


def _none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def write_all(evaluation, output_dir: str, command: str | None = None, example_ids=None,
              model: str | None = None) -> dict:
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "csv": write_csv(evaluation, os.path.join(output_dir, "faithfulness.csv")),
        "markdown": write_text(os.path.join(output_dir, "faithfulness.md"), markdown(evaluation, command=command)),
        "curves": write_curves_csv(evaluation, os.path.join(output_dir, "curves.csv")),
        "per_example": write_per_example_csv(evaluation, os.path.join(output_dir, "per_example.csv"),
                                             getattr(evaluation, "example_ids", None) or example_ids),
    }
    if evaluation.ok():
        paths["png"] = plot_curves(evaluation, os.path.join(output_dir, "faithfulness_curves.png"))
    paths["html"] = html_report(evaluation, command, model, paths.get("png")).save(
        os.path.join(output_dir, "report.html"))
    return paths
