"""Robustness of several models on the same examples: one audit per model, one table, one plot.

``run_comparison`` runs, for each model, exactly the single-model audit
(:func:`attrtools.adversarial.pipeline.run`) into ``models/<label>/`` of the run
directory, on the same examples with the same recipes, seed and resources, then writes
``comparison.csv`` / ``comparison.json`` (per model and recipe: clean accuracy, accuracy under
attack, attack success rate, average queries, words perturbed, queries per second) and
``comparison.png``. The trigger attack uses one set of triggers for every model: a given
``triggers.json``, or the one extracted once from the reference (first) model, so every model
faces the same trigger candidates.

Models are plain ``(model, tokenizer)`` pairs, or one model with a head mask (``head_mask``,
``(L, H)``, 0 = pruned): a prune run directory gives its unpruned model and, per importance
strategy, the plan chosen at the planner's fraction, applied as a mask (masked equals physically
pruned, as the planner checks).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from ..errors import InputDataError
from ..io import atomic_path, write_json, write_text

TABLE_COLUMNS = [("original_accuracy", "clean_accuracy"), ("attack_accuracy_perc", "accuracy_under_attack"),
                 ("attack_success_rate", "attack_success_rate"), ("avg_num_queries", "avg_queries"),
                 ("avg_words_perturbed", "avg_words_perturbed"), ("avg_word_perturbed_perc", "avg_words_perturbed_perc"),
                 ("total", "examples")]


@dataclass
class AuditedModel:
    """One model of a comparison. ``head_mask``: ``(L, H)`` with 0 for heads pruned by masking."""

    label: str
    model: object
    tokenizer: object
    head_mask: object = None
    source: dict = field(default_factory=dict)


def slug(label: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")
    return text or "model"


def plan_mask(plan: dict, num_layers: int, num_heads: int):
    """``(L, H)`` float mask with 0 at the heads of ``plan`` (``{layer: [heads]}``, keys str or int)."""
    import torch

    mask = torch.ones(num_layers, num_heads)
    for layer, heads in plan.items():
        for head in heads:
            if not (0 <= int(layer) < num_layers and 0 <= int(head) < num_heads):
                raise InputDataError(f"plan head ({layer}, {head}) outside the model's {num_layers} x {num_heads} heads")
            mask[int(layer), int(head)] = 0
    return mask


def read_prune_run(run_dir: str) -> dict:
    """``{"model": unpruned model name, "plans": {strategy: plan}, "heads_total", "plan_strategy"}`` of a
    directory written by ``attrtools prune`` (``run_config.json`` + ``pruned_heads.json``)."""
    config_path = os.path.join(run_dir, "run_config.json")
    plans_path = os.path.join(run_dir, "pruned_heads.json")
    for path in (config_path, plans_path):
        if not os.path.exists(path):
            raise InputDataError(f"{run_dir} is not an attrtools prune run directory (no {os.path.basename(path)})")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    with open(plans_path, encoding="utf-8") as f:
        pruned = json.load(f)
    plans = pruned.get("all_strategies") or {pruned.get("strategy", "plan"): pruned.get("pruned_heads", {})}
    return {"model": config.get("model"), "plans": plans, "heads_total": pruned.get("heads_total"),
            "plan_strategy": pruned.get("strategy")}


def prune_run_variants(model, tokenizer, run_dir: str) -> list[AuditedModel]:
    """One masked variant of ``model`` per strategy of the prune run in ``run_dir``."""
    from ..architecture import num_layers_heads

    run = read_prune_run(run_dir)
    num_layers, num_heads = num_layers_heads(model)
    total = num_layers * num_heads
    variants = []
    for strategy, plan in run["plans"].items():
        count = sum(len(h) for h in plan.values())
        variants.append(AuditedModel(f"{strategy}-{round(100 * count / total)}pct", model, tokenizer,
                                     plan_mask(plan, num_layers, num_heads),
                                     {"prune_run": run_dir, "strategy": strategy, "heads_pruned": count,
                                      "heads_total": total}))
    return variants


def run_comparison(models: list[AuditedModel], dev, out_dir: str, train=None, triggers_path: str | None = None,
                   config=None, cache=None, resources=None, attacks=None, report: dict | None = None,
                   num_requested=None, **options) -> dict:
    """Audit every model of ``models`` on ``dev``; return ``{"table": rows, "summaries", "run_dir"}``.

    Each model's audit is :func:`attrtools.adversarial.pipeline.run` into ``out_dir/models/<label>/`` (resumable like a
    single audit) with the same ``config`` (an :class:`AuditConfig`; ``options``: overrides of its
    fields), ``resources`` and ``attacks``. Everything is checked before the first model runs
    (recipes, resources, labels). ``report``: settings shown in the reports.
    Raises ``ParameterError`` for an empty list or clashing labels, ``AuditError`` /
    ``RecipeError`` as a single audit does."""
    from ..config import resolve_config
    from ..errors import ParameterError
    from .audit import check_audit
    from .config import AuditConfig
    from ..engine import Engine
    from .pipeline import AuditError, extract_and_save, run
    from .resources import AttackResources, LoadedResources

    if not models:
        raise ParameterError("a comparison needs at least one model")
    labels = [slug(m.label) for m in models]
    if len(set(labels)) != len(labels):
        raise ParameterError(f"model labels must differ (as folder names): {labels}")
    # One resolution: the trigger attack is use_triggers, never a recipe of each model's audit.
    recipes = options.get("recipes", getattr(config if config is not None else AuditConfig(), "recipes", ()))
    c = resolve_config(AuditConfig, config, {**options, "recipes": tuple(r for r in recipes if r != "triggers")})
    resources = resources or AttackResources()
    check_audit(list(c.recipes), resources, attacks, masked=any(m.head_mask is not None for m in models),
                query_budget=c.query_budget)
    os.makedirs(out_dir, exist_ok=True)
    if c.use_triggers and triggers_path is None:
        existing = os.path.join(out_dir, "triggers.json")
        if _triggers_on_main(existing):
            triggers_path = existing
        elif train is None:
            raise AuditError("the trigger attack needs training data or a triggers.json")
        else:
            reference = models[0]
            if reference.head_mask is not None:
                raise AuditError("the reference (first) model of a comparison must be unmasked to extract triggers")
            extract_and_save(reference.model, reference.tokenizer, train, out_dir, c, cache)
            triggers_path = existing
    parts = LoadedResources(resources)
    summaries = {}
    for m, label in zip(models, labels):
        sub = os.path.join(out_dir, "models", label)
        os.makedirs(sub, exist_ok=True)
        summaries[label] = run(
            Engine(m.model, m.tokenizer, cache=cache), dev, c, sub, triggers_path=triggers_path, resources=resources,
            attacks=attacks, head_mask=m.head_mask, parts=parts, num_requested=num_requested,
            report={**(report or {}), "model": m.label, **m.source, "examples": len(dev)})
    table = comparison_table(summaries)
    write_table(os.path.join(out_dir, "comparison.csv"), table)
    write_json(os.path.join(out_dir, "comparison.json"),
               {"models": {label: {"label": m.label, **m.source} for m, label in zip(models, labels)},
                "num_examples": len(dev), "table": table, "resources": resources.to_config(),
                "triggers": triggers_path})
    png = plot_comparison(os.path.join(out_dir, "comparison.png"), table)
    write_text(os.path.join(out_dir, "comparison.html"), render_comparison(table, report or {}, png))
    return {"table": table, "summaries": summaries, "run_dir": out_dir}


def _triggers_on_main(path: str) -> bool:
    """Whether a resumed comparison has its triggers at ``path``. Under a launcher rank 0's run
    folder decides (the other ranks write to private folders): its file is copied to every rank,
    so that no rank extracts triggers (collectives) while the others attack."""
    from .. import distributed

    if not distributed.sharding():
        return os.path.exists(path)
    payload = None
    if distributed.is_main() and os.path.exists(path):
        with open(path, "rb") as f:
            payload = f.read()
    payload = distributed.broadcast(payload)
    if payload is None:
        return False
    if not distributed.is_main():
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(payload)
    return True


def comparison_table(summaries: dict) -> list[dict]:
    """Rows ``model, recipe, clean_accuracy, accuracy_under_attack, ...`` from per-model summaries."""
    rows = []
    for label, summary in summaries.items():
        for recipe, s in summary["recipes"].items():
            row = {"model": label, "recipe": recipe}
            row.update({name: s.get(key) for key, name in TABLE_COLUMNS})
            row["queries_per_second"] = s.get("this_session", {}).get("queries_per_second")
            row["dropped_constraints"] = ",".join(s.get("dropped_constraints") or [])
            rows.append(row)
    return rows


def write_table(path: str, rows: list[dict]) -> str:
    import csv

    columns = ["model", "recipe"] + [name for _, name in TABLE_COLUMNS] + ["queries_per_second",
                                                                         "dropped_constraints"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return path


def comparison_figure(rows: list[dict]):
    """Grouped bars per recipe: accuracy under attack of each model (value on each bar; clean
    accuracy as a black tick). A matplotlib ``Figure`` made without pyplot."""
    from ..report.figures import blank_figure

    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["recipe"]): r for r in rows}
    width = 0.8 / max(1, len(models))
    fig = blank_figure(max(5.5, 0.9 * len(recipes) * max(1, len(models)) + 2.5), 3.8)
    ax = fig.add_subplot()
    for i, model in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(recipes))]
        under = [by.get((model, r), {}).get("accuracy_under_attack") or 0 for r in recipes]
        clean = [by.get((model, r), {}).get("clean_accuracy") or 0 for r in recipes]
        bars = ax.bar(xs, under, width, label=model)
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.scatter(xs, clean, marker="_", s=200, color="black", zorder=3)
    ax.set_xticks(range(len(recipes)))
    ax.set_xticklabels(recipes, rotation=20, ha="right")
    ax.set_ylabel("accuracy under attack (%)")
    ax.set_ylim(0, 108)
    ax.set_title("Accuracy under attack per recipe and model")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_comparison(path: str, rows: list[dict]) -> str:
    """``comparison_figure`` written as a PNG to ``path`` (atomically)."""
    fig = comparison_figure(rows)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def render_comparison(rows: list[dict], config: dict, png_path: str | None = None) -> str:
    """One self-contained HTML page through the shared report renderer: the comparison table (per
    recipe, the most robust model's accuracy under attack marked), the figure, and links to each
    model's own audit report (``models/<label>/report.html``)."""
    import html

    from ..report import Report
    from ..report.page import Table, figure_from_png

    report = Report("attrtools robustness comparison",
                    "Every model attacked on the same examples with the same recipes, seed and resources; "
                    "TextAttack's own metrics.",
                    facts=[(str(k).replace("_", " "), v) for k, v in (config or {}).items()])
    columns = ["model", "recipe"] + [name for _, name in TABLE_COLUMNS] + ["queries_per_second"]
    under = columns.index("accuracy_under_attack")
    table_rows = [[r.get(c) if r.get(c) is not None else "–" for c in columns] for r in rows]
    best = set()
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        values = [row[under] for row in table_rows if row[1] == recipe and isinstance(row[under], (int, float))]
        if len(values) > 1 and max(values) > min(values):
            best |= {(i, under) for i, row in enumerate(table_rows) if row[1] == recipe and row[under] == max(values)}
    section = report.section("Robustness per model and recipe",
                             "Clean accuracy, accuracy under attack and attack success rate in percent of the "
                             "examples; queries per model call of TextAttack's goal function.")
    section.add(Table([c.replace("_", " ") for c in columns], table_rows, best=best, digits=2,
                      note="★ the most robust model for that recipe (highest accuracy under attack)." if best else None))
    dropped = {(r["model"], r["recipe"]): r["dropped_constraints"] for r in rows if r.get("dropped_constraints")}
    if dropped:
        section.text("Constraints left out by request: " + "; ".join(f"{m} / {rc}: {d}" for (m, rc), d in dropped.items()),
                     muted=True)
    if png_path and os.path.exists(png_path):
        with open(png_path, "rb") as f:
            section.figure(figure_from_png(f.read(), "Accuracy under attack (bars, value on top) and clean accuracy "
                                                     "(black tick) per recipe and model."))
    models = list(dict.fromkeys(r["model"] for r in rows))
    links = "".join(f"<li><a href='models/{html.escape(slug(m))}/report.html'>{html.escape(m)}</a></li>" for m in models)
    report.section("Per-model reports", "Each model's own audit report: example attacks, per-class accuracy, "
                                        "triggers.").html(f"<ul>{links}</ul>")
    return report.to_html()
