"""``attrtools tree``: AttAttr attribution trees for texts or a dataset, their exports and statistics.

Its options are the fields of :class:`TreeConfig` (``cli_kit.config_options``). Imports torch only
when the command runs (``attrtools --help`` stays torch-free).
"""
from __future__ import annotations

import os

from ..cli_kit import (command, config_from_options, config_options, dataset_options, echo_summary, examples_from,
                       load_model_or_fail, make_run_dir, model_option, open_cache_or_fail, resolve_progress,
                       run_options, text_options)
from .config import TreeConfig


@command()
@model_option()
@text_options
@dataset_options
@config_options(TreeConfig)
@run_options
def tree(model_name, texts, pairs, dataset, text_column, pair_column, label_column, label_names, limit, cache_dir,
         no_cache, output_dir, device, **settings):
    """Build AttAttr attribution trees (Hao et al. 2021, §5) and dataset statistics.

    Per example: trees/NNNNNN.{graphml,json,dot,png,svg,html}. For the whole run: layer_stats.csv
    (edges and mean interaction distance |i-j| per layer), patterns.csv (most frequent token pairs),
    trees.csv (nodes, edges, depth per tree), edges.csv, tree_stats.json, layer_stats.png.
    """
    from ..config import config_dict
    from ..engine import Engine
    from .export import parse_formats
    from .pipeline import run

    config = config_from_options(TreeConfig, settings, formats=parse_formats(settings["formats"]),
                                 max_pictures=settings["max_pictures"] if dataset else -1)
    if config.target == "predicted":
        config.target = "pred"
    examples = examples_from(texts, pairs, dataset, text_column, pair_column, label_column, limit, label_names,
                             model=model_name)
    if config.use_last_layer is None:
        config.use_last_layer = config.root == "cls"
    run_dir = make_run_dir(output_dir, "tree", {"model": model_name, "dataset": dataset, "n": len(examples),
                                                "method": "attattr", **config_dict(config)},
                           examples=examples)  # before the model loads: an unusable folder fails at once
    model, tokenizer = load_model_or_fail(model_name, device)
    engine = Engine(model, tokenizer, cache=open_cache_or_fail(cache_dir, enabled=not no_cache),
                    batch_size=config.batch_size, max_length=config.max_length,
                    progress=resolve_progress(config.progress))
    result = run(engine, examples, config, run_dir)
    echo_summary(_summary_lines(result, engine, model_name, run_dir, config))


def _summary_lines(result: dict, engine, model_name: str, run_dir: str, config: TreeConfig) -> dict:
    """Write the run's report.html; the lines the command prints."""
    from ..models import fingerprint
    from ..report import model_label
    from .report import tree_report

    summary = result["summary"]
    report_path = tree_report(run_dir, result["drawn"], threshold=config.threshold,
                              model=model_label(model_name, fingerprint(engine.model))).save(
        os.path.join(run_dir, "report.html"))
    distances = ", ".join(f"{layer}:{row['mean_distance']}" for layer, row in summary["layers"].items()
                          if row["mean_distance"] != "")
    return {
        "trees": summary["trees"], "mean edges per tree": summary["mean_edges_per_tree"],
        "mean depth": summary["mean_depth"], "mean |i-j| per layer": distances or "-",
        "computed / from cache": f"{engine.stats['computed']} / {engine.stats['hits']}",
        "cache": engine.cache.directory if getattr(engine.cache, "directory", None) else "off",
        "first picture": result["first_picture"] or "-", "statistics": result["statistics"]["layer_stats"],
        "report": report_path,
        "output": run_dir,
    }
