"""``attrtools tree``: AttAttr attribution trees for texts or a dataset, their exports and statistics.

Imports torch only when the command runs (``attrtools --help`` stays torch-free).
"""
from __future__ import annotations

import os

import click

from ..cli_kit import (UserError, command, common_run_options, dataset_options, echo_summary, examples_from,
                       field_option, load_model_or_fail, make_run_dir, model_option, open_cache_or_fail, parse_target,
                       resolve_progress, steps_option, target_option, text_options)
from .config import TreeConfig


@command()
@model_option()
@text_options
@dataset_options
@field_option(TreeConfig, "threshold", help="τ: a normalised per-layer attribution above it is a salient dependency.")
@field_option(TreeConfig, "root",
              help="top: the token with the largest total attribution (official code); cls: [CLS] (paper/author).")
@click.option("--use-last-layer/--no-last-layer", default=None, show_default=False,
              help="Start at the last layer L-1 (default with --root cls) or at L-2 as the official code "
                   "(default with --root top).")
@steps_option(64, "the official tree code")
@target_option()
@click.option("--formats", default="graphml,json,dot,png,svg,html",
              help="Comma-separated per-tree outputs: graphml, json, dot, png, svg, html (or 'all').")
@field_option(TreeConfig, "max_pictures", help="With --dataset, draw png/svg only for the first N examples (-1: all).")
@field_option(TreeConfig, "top_patterns", help="Rows of patterns.csv.")
@common_run_options
def tree(model_name, texts, pairs, dataset, text_column, pair_column, label_column, label_names, limit, threshold,
         root, use_last_layer, steps, target, formats, max_pictures, top_patterns, cache_dir, no_cache, batch_size,
         max_length, progress, output_dir, device):
    """Build AttAttr attribution trees (Hao et al. 2021, §5) and dataset statistics.

    Per example: trees/NNNNNN.{graphml,json,dot,png,svg,html}. For the whole run: layer_stats.csv
    (edges and mean interaction distance |i-j| per layer), patterns.csv (most frequent token pairs),
    trees.csv (nodes, edges, depth per tree), edges.csv, tree_stats.json, layer_stats.png.
    """
    from ..config import config_dict
    from ..engine import Engine
    from .export import parse_formats
    from .pipeline import run_trees

    config = TreeConfig(threshold=threshold, root=root, use_last_layer=use_last_layer, steps=steps,
                        target=parse_target(target), formats=parse_formats(formats),
                        max_pictures=max_pictures if dataset else -1, top_patterns=top_patterns,
                        batch_size=batch_size, max_length=max_length)
    examples = examples_from(texts, pairs, dataset, text_column, pair_column, label_column, limit, label_names,
                             model=model_name)
    if config.use_last_layer is None:
        config.use_last_layer = root == "cls"
    run_dir = make_run_dir(output_dir, "tree", {"model": model_name, "dataset": dataset, "n": len(examples),
                                                "method": "attattr", **config_dict(config)},
                           examples=examples)  # before the model loads: an unusable folder fails at once
    model, tokenizer = load_model_or_fail(model_name, device)
    engine = Engine(model, tokenizer, cache=open_cache_or_fail(cache_dir, enabled=not no_cache),
                    batch_size=config.batch_size, max_length=config.max_length, progress=resolve_progress(progress))
    from ..architecture import num_layers_heads

    if num_layers_heads(model)[0] < 2 and not config.use_last_layer:
        raise UserError(f"{model_name} has 1 layer; the official tree starts at layer L-2: add --use-last-layer")
    result = run_trees(engine, examples, run_dir, config)
    summary = result["summary"]
    from ..models import fingerprint
    from ..report import model_label
    from .report import tree_report

    report_path = tree_report(run_dir, result["drawn"], threshold=config.threshold,
                              model=model_label(model_name, fingerprint(model))).save(os.path.join(run_dir, "report.html"))
    distances = ", ".join(f"{layer}:{row['mean_distance']}" for layer, row in summary["layers"].items()
                          if row["mean_distance"] != "")
    echo_summary({
        "trees": summary["trees"], "mean edges per tree": summary["mean_edges_per_tree"],
        "mean depth": summary["mean_depth"], "mean |i-j| per layer": distances or "-",
        "computed / from cache": f"{engine.stats['computed']} / {engine.stats['hits']}",
        "cache": engine.cache.directory if getattr(engine.cache, "directory", None) else "off",
        "first picture": result["first_picture"] or "-", "statistics": result["statistics"]["layer_stats"],
        "report": report_path,
        "output": run_dir,
    })
