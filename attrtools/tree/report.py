"""Attribution trees as a report (``report.html`` of ``attrtools tree``, and the demo's tree section),
built from the statistics files (``layer_stats.csv``, ``trees.csv``, ``patterns_words.csv``,
``tree_stats.json``) and the trees' SVG pictures.

What a reader sees: how many trees and how large; edges per layer and the mean interaction distance
|i − j| per layer as charts with the numbers in a table beside them (Hao et al. 2021, §5); depth and
root-token tables; the most frequent word-to-word dependencies; a few trees drawn."""
from __future__ import annotations

import csv
import json
import os

from ..report import Report, fmt_number
from ..report.figures import layer_bars_figure
from ..report.format import truncate
from ..report.page import Table, figure_from_matplotlib, figure_from_png, figure_from_svg


def _read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def tree_report(stats_dir: str, pictures=(), title: str = "Attribution trees", threshold=None,
                model: str | None = None, top_patterns: int = 15) -> Report:
    """Report of a tree run. ``stats_dir``: where ``TreeStatistics.write`` put its files;
    ``pictures``: ``[(caption, svg_path)]`` of trees to draw inline."""
    summary = {}
    path = os.path.join(stats_dir, "tree_stats.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    layers = _read_csv(os.path.join(stats_dir, "layer_stats.csv"))
    trees = _read_csv(os.path.join(stats_dir, "trees.csv"))
    patterns = _read_csv(os.path.join(stats_dir, "patterns_words.csv"))
    facts = [("trees", summary.get("trees", len(trees))),
             ("edges per tree (mean)", summary.get("mean_edges_per_tree")),
             ("depth (mean / max)", f"{fmt_number(summary.get('mean_depth'), 2)} / {summary.get('max_depth', '–')}"),
             ("interaction distance |i − j| (mean over all edges)", summary.get("mean_distance"))]
    if threshold is not None:
        facts.insert(0, ("threshold τ", threshold))
    if model:
        facts.insert(0, ("model", model))
    report = Report(title, "AttAttr attribution trees (Hao et al. 2021, §5): per layer, the token pairs whose "
                           "normalised attribution passes the threshold, assembled from the top layer down.",
                    facts=facts)

    if layers:
        numbers = [int(r["layer"]) for r in layers]
        fig = layer_bars_figure(numbers, [_float(r["edges_per_tree"]) or 0 for r in layers], "tree edges per example",
                                [_float(r["mean_distance"]) for r in layers], "mean interaction distance |i − j|")
        section = report.section("Per layer",
                                 "Where in the network the tree's dependencies are found, and how far apart the "
                                 "tokens that interact there are.")
        section.row(figure_from_matplotlib(fig, "Left: tree edges per example at each layer. Right: mean distance "
                                                "|i − j| (in tokens) between the two ends of those edges."),
                    Table(["layer", "edges", "per tree", "mean |i − j|", "median |i − j|", "mean score"],
                          [[int(r["layer"]), int(r["edges"]), _float(r["edges_per_tree"]), _float(r["mean_distance"]),
                            _float(r["median_distance"]), _float(r["mean_score"])] for r in layers], digits=2))
    if trees:
        depth = {}
        for t in trees:
            depth[int(t["depth"])] = depth.get(int(t["depth"]), 0) + 1
        roots = summary.get("root_tokens") or {}
        section = report.section("Tree shapes", "How deep the trees are and which token they grow from.")
        section.row(Table(["depth (edges)", "trees"], [[d, c] for d, c in sorted(depth.items())]),
                    Table(["root token", "trees"], [[str(k), int(v)] for k, v in roots.items()]))
    if patterns:
        unit = "word" if "source_word" in patterns[0] else "token"  # older files: tokens
        report.section("Most frequent word dependencies",
                       f"Query → key {unit} pairs of tree edges (tokens shown as the words of the original text "
                       "holding them), counted over all trees (edges with [CLS]/[SEP] left out)."
                       if unit == "word" else "Query → key token pairs of tree edges, counted over all trees (edges "
                       "with [CLS]/[SEP] left out).").add(
                           Table([f"query {unit}", f"key {unit}", "edges", "trees", "mean |i − j|", "layer:edges"],
                                 [[r[f"source_{unit}"], r[f"target_{unit}"], int(r["count"]), int(r["trees"]),
                                   _float(r["mean_distance"]), r["layers"]] for r in patterns[:top_patterns]],
                                 digits=2))
    if pictures:
        section = report.section("Example trees", "Boxes are tokens placed by position (x) and the layer where they "
                                                  "joined the tree (y); arrows go from query to key, thicker = larger "
                                                  "attribution; the whole sentence is written along the bottom.")
        for caption, picture in pictures:
            if not picture or not os.path.exists(picture):
                continue
            if picture.endswith(".png"):
                with open(picture, "rb") as f:
                    section.figure(figure_from_png(f.read(), truncate(caption, 160), wide=True))
            else:
                with open(picture, encoding="utf-8") as f:
                    section.figure(figure_from_svg(f.read(), truncate(caption, 160)))
    return report
