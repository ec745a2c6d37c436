"""The audit as a report (``report.html``): TextAttack's metrics per recipe as a table and a chart,
the paper's per-class accuracy under trigger insertion, the top trigger patterns, and example attacks
(TextAttack's ``[[word]]`` marks shown as highlights). One self-contained file, same renderer as every
attrtools report (``attrtools.report``)."""
from __future__ import annotations

import csv
import html
import json
import os
import re

from ..data import row_label

SUMMARY_KEYS = [("total", "examples"), ("original_accuracy", "accuracy %"), ("attack_accuracy_perc", "acc. under attack %"),
                ("attack_success_rate", "success rate %"), ("avg_num_queries", "avg queries"),
                ("avg_words_perturbed", "avg words perturbed"), ("avg_word_perturbed_perc", "avg % words perturbed"),
                ("avg_words_perturbed_positional", "avg words perturbed (TextAttack, positional)"),
                ("skipped_attacks", "skipped"), ("failed_attacks", "failed"), ("successful_attacks", "successful")]

_MARK_STYLE = ("<style>.attrtools mark.o{background:#fdd}.attrtools mark.p{background:#dfd}"
               ".attrtools .ex{border-left:3px solid #ccc;padding:4px 10px;margin:8px 0}</style>")


def _marked(text: str, cls: str) -> str:
    escaped = html.escape(str(text))
    return re.sub(r"\[\[(.*?)\]\]", lambda m: f'<mark class="{cls}">{m.group(1)}</mark>', escaped)


def _num(value):
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() and "." not in str(value) else number


def _cls(value, names) -> str:
    from ..report import class_name

    return class_name(value, names) if value not in (None, "") else "–"


def build_audit_report(summary: dict, rows: list[dict], per_class: list[dict] | None = None, patterns=None,
                       title: str = "attrtools robustness audit", config: dict | None = None,
                       examples_per_recipe: int = 8, label_names=None, model: str | None = None):
    """The audit as an ``attrtools.report.Report``."""
    from ..report import Report
    from ..report.page import Table

    facts = [("model", model)] if model else []
    facts += [(str(k).replace("_", " "), ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
              for k, v in (config or {}).items() if not (model and k == "model")]  # named once, with its fingerprint
    report = Report(title, "How the classifier holds up when its input is attacked: attribution triggers "
                           "(Hao et al. 2021, §6) next to TextAttack recipes, scored with TextAttack's own metrics.",
                    facts=facts)
    all_recipes = summary.get("recipes", {})
    _attacks_section(report, summary, label_names)
    reductions = {n: s for n, s in all_recipes.items() if s.get("kind") == "input-reduction"}
    if reductions:
        keys = [("total", "examples"), ("original_accuracy", "accuracy %"), ("reduced", "reduced"),
                ("reached_target", "down to 1 word"), ("not_reduced", "not reduced"),
                ("skipped_attacks", "skipped (misclassified)"),
                ("avg_words_kept_perc", "avg % words kept"), ("avg_num_queries", "avg queries")]
        report.section("Input reduction (not an attack)", "Words are removed while the prediction is kept.").add(
            Table(["recipe"] + [label for _, label in keys],
                  [[name] + [_num(s.get(k)) for k, _ in keys] for name, s in reductions.items()], digits=2))
    if summary.get("skipped_rows"):
        report.section("Rows without content (not attacked)").add(
            Table(["data row", "id", "reason"], [[row_label(r), str(r.get("id") if r.get("id") is not None else "–"),
                                                  str(r.get("reason"))] for r in summary["skipped_rows"]]))
    _trigger_sections(report, per_class, patterns, label_names)
    _examples_section(report, all_recipes, rows, examples_per_recipe, label_names)
    return report


def _attacks_section(report, summary: dict, label_names) -> None:
    """The attacks table (TextAttack's metrics per recipe, the strongest marked), the accuracy under
    each attack as bars, and the attribution ranking's counts."""
    from ..report.figures import bar_figure
    from ..report.page import Table, figure_from_matplotlib

    recipes = {n: s for n, s in summary.get("recipes", {}).items() if s.get("kind") != "input-reduction"}
    rows_line = f"{summary.get('num_examples', '?')} example(s) attacked"
    if summary.get("num_rows") is not None:
        rows_line += f" of {summary['num_rows']} row(s) read"
    if summary.get("class_mix"):
        rows_line += "; gold classes: " + ", ".join(f"{_cls(_num(k), label_names) if label_names else k}: {v}"
                                                    for k, v in summary["class_mix"].items())
    section = report.section("Attacks", rows_line + ". One row per attack on the same examples. Success rate: "
                                        "share of correctly classified examples whose prediction the attack "
                                        "flipped.")
    for note in summary.get("notes") or []:
        section.text(str(note), muted=True)
    if not recipes:
        section.text("No attack results yet.")
        return
    table_rows = [[name] + [_num(s.get(k)) for k, _ in SUMMARY_KEYS] for name, s in recipes.items()]
    best = set()
    column = 1 + [k for k, _ in SUMMARY_KEYS].index("attack_success_rate")
    values = [r[column] for r in table_rows if isinstance(r[column], (int, float))]
    if values and len(table_rows) > 1:
        best = {(i, column) for i, r in enumerate(table_rows) if r[column] == max(values)}
    section.add(Table(["attack"] + [label for _, label in SUMMARY_KEYS], table_rows, best=best, digits=2,
                      note="★ the strongest attack (highest success rate)." if best else None))
    names = list(recipes)
    fig = bar_figure(names, [_num(recipes[n].get("attack_accuracy_perc")) for n in names],
                     "accuracy under attack (%)", title="accuracy under attack (lower = stronger attack)")
    section.figure(figure_from_matplotlib(fig, "Accuracy under each attack, in percent of the examples."))
    ranking = {n: s["this_session"]["ranking"] for n, s in recipes.items() if "ranking" in s.get("this_session", {})}
    if ranking:
        section.add(Table(["attack", "attribution ranking"],
                          [[n, ", ".join(f"{k} {v}" for k, v in r.items()) if isinstance(r, dict) else str(r)]
                           for n, r in ranking.items()],
                          caption="Attribution-ranked word search (ranking costs no model queries)"))


def _trigger_sections(report, per_class, patterns, label_names) -> None:
    """The paper's per-class table with a fixed trigger inserted, and the top trigger patterns."""
    from ..report import fmt_percent
    from ..report.page import Table

    if per_class:
        report.section("Per-class accuracy with a fixed trigger inserted",
                       "Each top trigger inserted at its relative positions into every example of a class "
                       "(Hao et al. 2021, §6); accuracy drop in points against the clean examples.").add(
            Table(["rank", "trigger", "trigger from class", "gold class", "examples", "accuracy", "accuracy drop"],
                  [[_num(r["trigger_rank"]), str(r["trigger"] or "none (clean examples)"),
                    _cls(r["source_class"], label_names) if r["trigger"] else "–",
                    _cls(r["gold_class"], label_names), _num(r["n"]), fmt_percent(_num(r["accuracy"])),
                    f"{100 * float(_num(r['accuracy_drop']) or 0):.1f} points"]
                   for r in per_class], digits=3))
    if patterns:
        report.section("Top trigger patterns",
                       "Token pairs with the highest attribution between them in correctly classified training "
                       "examples; v1+v2 is their combined attribution score.").add(
            Table(["rank", "trigger", "class", "v1+v2", "layer", "head", "relative positions"],
                  [[i + 1, " ".join(p.trigger), _cls(p.target, label_names), round(p.score, 4), p.layer, p.head,
                    ", ".join(f"{w.relative:.2f}" for w in p.words)] for i, p in enumerate(patterns[:15])], digits=4))


def _examples_section(report, all_recipes: dict, rows: list[dict], examples_per_recipe: int, label_names) -> None:
    """Up to ``examples_per_recipe`` attacks per recipe (successes first): original and attacked
    text with the changed words marked, the model's output before and after."""
    examples = report.section("Example attacks", "Original (deleted or replaced words in red) and attacked text "
                                                 "(inserted or replacing words in green), from an alignment of the "
                                                 "two word sequences, with the model's output before and after.")
    parts = [_MARK_STYLE]
    for name in all_recipes:
        mine = [r for r in rows if r["recipe"] == name and r["result_type"] not in ("Skipped",)]
        mine.sort(key=lambda r: r["result_type"] == "Failed")
        if not mine:
            continue
        parts.append(f"<h3>{html.escape(name)}</h3>")
        for r in mine[:examples_per_recipe]:
            parts.append(
                f"<div class='ex'><div class='muted'>#{html.escape(str(r['example_index']))} "
                f"{html.escape(str(r['result_type']))}: gold {html.escape(_cls(r['ground_truth_output'], label_names))}, "
                f"{html.escape(_cls(r['original_output'], label_names))} → "
                f"{html.escape(_cls(r['perturbed_output'], label_names))}, {html.escape(str(r['num_queries']))} queries"
                f"</div><div>{_marked(r['original_text'], 'o')}</div><div>{_marked(r['perturbed_text'], 'p')}</div></div>")
    if len(parts) > 1:
        examples.html("".join(parts))
    else:
        examples.text("Every example was skipped (misclassified before any attack).")


def render_report(summary: dict, rows: list[dict], per_class: list[dict] | None = None, patterns=None,
                  title: str = "attrtools robustness audit", config: dict | None = None,
                  examples_per_recipe: int = 8, label_names=None, model: str | None = None) -> str:
    """The whole page as HTML text (see ``build_audit_report``)."""
    return build_audit_report(summary, rows, per_class, patterns, title, config, examples_per_recipe,
                              label_names, model).to_html()


def audit_report(out_dir: str, top_triggers: int = 10, title: str = "Robustness audit", label_names=None,
                 model: str | None = None):
    """The report of a finished audit directory (summary.json, results.csv, per_class.csv, triggers.json)."""
    from .audit import read_rows
    from .triggers import load_triggers, unique_triggers

    with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    per_class = None
    path = os.path.join(out_dir, "per_class.csv")
    if os.path.exists(path):
        with open(path, newline="", encoding="utf-8") as f:
            per_class = list(csv.DictReader(f))
    patterns = None
    path = os.path.join(out_dir, "triggers.json")
    if os.path.exists(path):
        patterns = unique_triggers(load_triggers(path)[0])[:top_triggers]
    return build_audit_report(summary, read_rows(os.path.join(out_dir, "results.csv")), per_class, patterns, title,
                              label_names=label_names, model=model)
