"""``attrtools tree``: AttAttr attribution trees for texts or a dataset, their exports and statistics.

Imports torch only when the command runs (``attrtools --help`` stays torch-free).
"""
from __future__ import annotations

import os

import click

from ..commands.common import (UserError, finite, cache_options, load_examples_or_fail, open_cache_or_fail, dataset_options, device_option, echo_summary, load_model_or_fail,
                               make_run_dir, model_option, output_dir_option, quiet_transformers)


@click.command()
@model_option
@click.option("--text", "texts", multiple=True, help="Text to explain (repeatable).")
@click.option("--text-pair", "pairs", multiple=True, help="Second segment for each --text (repeatable).")
@dataset_options
@click.option("--threshold", type=float, default=0.4, show_default=True,
              help="τ: a normalised per-layer attribution above it is a salient dependency.")
@click.option("--root", type=click.Choice(["top", "cls"]), default="top", show_default=True,
              help="top: the token with the largest total attribution (official code); cls: [CLS] (paper/author).")
@click.option("--use-last-layer/--no-last-layer", default=None,
              help="Start at the last layer L-1 (default with --root cls) or at L-2 as the official code "
                   "(default with --root top).")
@click.option("--steps", type=int, default=20, show_default=True, help="AttAttr IG steps (the official tree used 64).")
@click.option("--target", default="pred", show_default=True, help="'pred' (official), 'gold' or a class index.")
@click.option("--formats", default="graphml,json,dot,png,svg,html", show_default=True,
              help="Comma-separated per-tree outputs: graphml, json, dot, png, svg, html (or 'all').")
@click.option("--max-pictures", type=int, default=20, show_default=True,
              help="With --dataset, draw png/svg only for the first N examples (-1: all).")
@click.option("--top-patterns", type=int, default=50, show_default=True, help="Rows of patterns.csv.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@cache_options
@output_dir_option
@device_option
def tree(model_name, texts, pairs, dataset, text_column, pair_column, label_column, limit, threshold, root,
         use_last_layer, steps, target, formats, max_pictures, top_patterns, batch_size, cache_dir, no_cache,
         output_dir, device):
    """Build AttAttr attribution trees (Hao et al. 2021, §5) and dataset statistics.

    Per example: trees/NNNNNN.{graphml,json,dot,png,svg,html}. For the whole run: layer_stats.csv
    (edges and mean interaction distance |i-j| per layer), patterns.csv (most frequent token pairs),
    trees.csv (nodes, edges, depth per tree), edges.csv, tree_stats.json, layer_stats.png.
    """
    from .export import parse_formats

    if bool(texts) == bool(dataset):
        raise UserError("give either --text (one or more) or --dataset")
    if pairs and len(pairs) != len(texts):
        raise UserError("give one --text-pair for every --text")
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    finite("--threshold", threshold, 0.0)
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    try:
        chosen = parse_formats(formats)
    except ValueError as err:
        raise UserError(str(err)) from None
    target_spec = int(target) if target.lstrip("-").isdigit() else target
    if target_spec not in ("pred", "gold") and not isinstance(target_spec, int):
        raise UserError(f"--target must be 'pred', 'gold' or a class index, got {target!r}")

    quiet_transformers()
    from ..types import Example

    if dataset:
        examples = load_examples_or_fail(dataset, text_column, pair_column, label_column, limit, model=model_name)
    else:
        examples = [Example(t, pairs[i] if pairs else None, id=str(i)) for i, t in enumerate(texts)]

    run_dir = make_run_dir(output_dir, "tree", {
        "model": model_name, "dataset": dataset, "n": len(examples), "threshold": threshold, "root": root,
        "use_last_layer": use_last_layer, "steps": steps, "target": target, "formats": list(chosen),
        "method": "attattr"}, examples=examples)
    model, tokenizer = load_model_or_fail(model_name, device)
    from ..models import num_layers_heads

    num_layers = num_layers_heads(model)[0]
    if use_last_layer is None:
        use_last_layer = root == "cls"
    if num_layers < 2 and not use_last_layer:
        raise UserError(f"{model_name} has {num_layers} layer; the official tree starts at layer L-2: "
                        "add --use-last-layer")

    from ..engine import Engine
    from .build import build_trees
    from .export import export_tree
    from .stats import TreeStatistics

    engine = Engine(model, tokenizer, cache=open_cache_or_fail(cache_dir, enabled=not no_cache), batch_size=batch_size)
    try:
        graphs, _ = build_trees(engine, examples, threshold=threshold, root=root, use_last_layer=use_last_layer,
                                steps=steps, target=target_spec)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None

    tree_dir = os.path.join(run_dir, "trees")
    first_picture = None
    drawn = []
    from ..progress import track

    for index, graph in track(list(enumerate(graphs)), "writing trees", unit="tree"):
        wanted = chosen
        if dataset and 0 <= max_pictures <= index:
            wanted = tuple(f for f in chosen if f not in ("png", "svg"))
        written = export_tree(graph, os.path.join(tree_dir, f"{index:06d}"), wanted)
        first_picture = first_picture or written.get("png") or written.get("svg") or written.get("html")
        if (written.get("svg") or written.get("png")) and len(drawn) < 5:
            drawn.append((examples[index].text, written.get("svg") or written["png"]))
    stats = TreeStatistics()
    stats.extend(graphs)
    files = stats.write(run_dir, top_patterns=top_patterns)
    summary = stats.summary()
    from ..models import fingerprint
    from ..report import model_label
    from .report import tree_report

    report_path = tree_report(run_dir, drawn, threshold=threshold,
                              model=model_label(model_name, fingerprint(model))).save(os.path.join(run_dir, "report.html"))
    distances = ", ".join(f"{layer}:{row['mean_distance']}" for layer, row in summary["layers"].items()
                          if row["mean_distance"] != "")
    echo_summary({
        "trees": summary["trees"], "mean edges per tree": summary["mean_edges_per_tree"],
        "mean depth": summary["mean_depth"], "mean |i-j| per layer": distances or "-",
        "computed / from cache": f"{engine.stats['computed']} / {engine.stats['hits']}",
        "cache": engine.cache.directory if getattr(engine.cache, "directory", None) else "off",
        "first picture": first_picture or "-", "statistics": files["layer_stats"], "report": report_path,
        "output": run_dir,
    })
