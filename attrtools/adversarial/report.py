"""One self-contained HTML page for an audit: summary per recipe, per-class trigger table, the
top triggers and example attacks (TextAttack's ``[[word]]`` marks shown as highlights).
No scripts, no external files; imports nothing but the standard library."""
from __future__ import annotations

import html
import re

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.num{text-align:right}mark.o{background:#fdd}mark.p{background:#dfd}
.ex{border-left:3px solid #ccc;padding:4px 10px;margin:8px 0}.small{color:#666;font-size:90%}
"""

SUMMARY_KEYS = [("total", "examples"), ("original_accuracy", "accuracy %"), ("attack_accuracy_perc", "acc. under attack %"),
                ("attack_success_rate", "success rate %"), ("avg_num_queries", "avg queries"),
                ("avg_words_perturbed", "avg words perturbed"), ("avg_word_perturbed_perc", "avg % words perturbed"),
                ("skipped_attacks", "skipped"), ("failed_attacks", "failed"), ("successful_attacks", "successful")]


def _marked(text: str, cls: str) -> str:
    escaped = html.escape(str(text))
    return re.sub(r"\[\[(.*?)\]\]", lambda m: f'<mark class="{cls}">{m.group(1)}</mark>', escaped)


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(summary: dict, rows: list[dict], per_class: list[dict] | None = None, patterns=None,
                  title: str = "attrtools robustness audit", config: dict | None = None,
                  examples_per_recipe: int = 8) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if config:
        parts.append("<p class='small'>" + html.escape(", ".join(f"{k}={v}" for k, v in config.items())) + "</p>")
    recipes = summary.get("recipes", {})
    attacks = {n: s for n, s in recipes.items() if s.get("kind") != "input-reduction"}
    reductions = {n: s for n, s in recipes.items() if s.get("kind") == "input-reduction"}
    rows_line = f"{summary.get('num_examples')} example(s) attacked"
    if summary.get("num_rows") is not None:
        rows_line += f" of {summary['num_rows']} row(s) read"
    if summary.get("class_mix"):
        rows_line += "; gold classes: " + ", ".join(f"{k}: {v}" for k, v in summary["class_mix"].items())
    parts.append(f"<p>{html.escape(rows_line)}</p>")
    for note in summary.get("notes") or []:
        parts.append(f"<p class='small'>{html.escape(note)}</p>")
    parts.append("<h2>Summary (TextAttack metrics)</h2>")
    parts.append(_table(["recipe"] + [label for _, label in SUMMARY_KEYS],
                        [[name] + [s.get(k) for k, _ in SUMMARY_KEYS] for name, s in attacks.items()]))
    if reductions:
        parts.append("<h2>Input reduction (not an attack: the prediction is kept while words are removed)</h2>")
        keys = [("total", "examples"), ("original_accuracy", "accuracy %"), ("reduced", "reduced"),
                ("reached_target", "down to 1 word"), ("not_reduced", "not reduced"),
                ("skipped_attacks", "skipped (misclassified)"),
                ("avg_words_kept_perc", "avg % words kept"), ("avg_num_queries", "avg queries")]
        parts.append(_table(["recipe"] + [label for _, label in keys],
                            [[name] + [s.get(k) for k, _ in keys] for name, s in reductions.items()]))
    if summary.get("skipped_rows"):
        parts.append("<h2>Rows without content (not attacked)</h2>")
        parts.append(_table(["row", "id", "reason"], [[r.get("index"), r.get("id"), r.get("reason")]
                                                       for r in summary["skipped_rows"]]))
    ranking = {n: s["this_session"]["ranking"] for n, s in recipes.items() if "ranking" in s.get("this_session", {})}
    if ranking:
        parts.append("<p class='small'>Attribution-ranked search: word ranking costs no model queries; "
                     "attributions computed: " + html.escape(str(ranking)) + "</p>")
    if per_class:
        parts.append("<h2>Per-class accuracy with fixed trigger insertion (Hao et al. 2021, §6)</h2>")
        cols = ["trigger_rank", "trigger", "source_class", "gold_class", "n", "accuracy", "accuracy_drop"]
        parts.append(_table(cols, [[r[c] for c in cols] for r in per_class]))
    if patterns:
        parts.append("<h2>Top trigger patterns</h2>")
        parts.append(_table(["rank", "trigger", "class", "v1+v2", "layer", "head", "relative positions"],
                            [[i + 1, " ".join(p.trigger), p.target, round(p.score, 4), p.layer, p.head,
                              ", ".join(f"{w.relative:.2f}" for w in p.words)] for i, p in enumerate(patterns[:15])]))
    parts.append("<h2>Examples</h2>")
    for name in recipes:
        mine = [r for r in rows if r["recipe"] == name and r["result_type"] not in ("Skipped",)]
        mine.sort(key=lambda r: r["result_type"] == "Failed")
        if not mine:
            continue
        parts.append(f"<h3>{html.escape(name)}</h3>")
        for r in mine[:examples_per_recipe]:
            parts.append(
                f"<div class='ex'><div class='small'>#{r['example_index']} {html.escape(str(r['result_type']))}: "
                f"gold {r['ground_truth_output']}, {r['original_output']} → {r['perturbed_output']}, "
                f"{r['num_queries']} queries</div><div>{_marked(r['original_text'], 'o')}</div>"
                f"<div>{_marked(r['perturbed_text'], 'p')}</div></div>")
    parts.append("</body></html>")
    return "\n".join(parts)
