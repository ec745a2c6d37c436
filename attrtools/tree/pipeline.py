"""The attribution-tree tool in one call (used by ``attrtools tree``, ``scripts/build_trees.py`` and
the demo): AttAttr through the engine → one tree per example → its exports → dataset statistics."""
from __future__ import annotations

import os

from ..config import resolve_config
from .config import TreeConfig


Config = TreeConfig  # every tool's pipeline exposes ``Config`` and ``run`` the same way


def run(engine, examples, config: TreeConfig | None = None, run_dir: str = ".", *, tree_dir: str | None = None,
        stats_dir: str | None = None, file_name: str = "{index:06d}", export_limit: int | None = None,
        **options) -> dict:
    """Build, export and summarise the AttAttr trees of ``examples`` (Hao et al. 2021, §5).

    Args:
        engine: an ``attrtools.engine.Engine`` (attributions come from its cache when there).
        examples: ``Example`` items (or anything ``Example.coerce`` takes).
        config: a :class:`TreeConfig`; ``options``: overrides of its fields.
        run_dir: output folder; trees go to ``tree_dir`` (default ``run_dir/trees``) as
            ``file_name.format(index=i)`` plus each format's suffix, statistics to ``stats_dir``
            (default ``run_dir``): layer_stats.csv/.png, patterns.csv, trees.csv, edges.csv,
            tree_stats.json.
        export_limit: export files for the first N trees only (None: all); statistics use all.

    Returns ``{"trees": [nx.DiGraph], "attributions": [...], "written": [{format: path}],
    "statistics": {name: path}, "summary": dict, "first_picture": path | None,
    "drawn": [(text, picture path)] (the first five pictures, for the report), "examples": the
    examples the trees are of, "skipped_rows": [...]
    (rows without content, ``data.keep_content``: left out, with their reason)}``.

    Raises ``ParameterError`` for an unknown format or root, or a one-layer model without
    ``use_last_layer``.
    """
    from ..errors import ParameterError
    from ..architecture import num_layers_heads
    from .build import build_trees
    from .export import export_tree, parse_formats
    from .stats import TreeStatistics

    config = resolve_config(TreeConfig, config, options)
    formats = parse_formats(",".join(config.formats))
    use_last_layer = config.root == "cls" if config.use_last_layer is None else config.use_last_layer
    num_layers = num_layers_heads(engine.model)[0]
    if num_layers < 2 and not use_last_layer:
        raise ParameterError(f"the model has {num_layers} layer; the official tree starts at layer L-2: "
                             "use the last layer (--use-last-layer)")
    from ..data import keep_content
    from ..errors import InputDataError

    examples = keep_content(examples, engine.tokenizer)  # rows without content: skipped with their reason
    if not examples:
        raise InputDataError(f"no examples with content to build trees for ({examples.skipped_summary()} row(s) "
                             "skipped)")
    graphs, attributions = build_trees(engine, examples, threshold=config.threshold, root=config.root,
                                       use_last_layer=use_last_layer, steps=config.steps, target=config.target,
                                       tolerance=config.tolerance)
    tree_dir = tree_dir or os.path.join(run_dir, "trees")
    from ..progress import track

    written, first_picture, drawn = [], None, []
    chosen = graphs[:export_limit] if export_limit is not None else graphs
    for index, graph in track(list(enumerate(chosen)), "writing trees", unit="tree"):
        wanted = formats
        if 0 <= config.max_pictures <= index:
            wanted = tuple(f for f in formats if f not in ("png", "svg"))
        files = export_tree(graph, os.path.join(tree_dir, file_name.format(index=index)), wanted)
        written.append(files)
        first_picture = first_picture or files.get("png") or files.get("svg") or files.get("html")
        if (files.get("svg") or files.get("png")) and len(drawn) < 5:  # pictures shown in the report
            drawn.append((examples[index].text if hasattr(examples[index], "text") else str(examples[index]),
                          files.get("svg") or files["png"]))
    stats = TreeStatistics().extend(graphs)
    statistics = stats.write(stats_dir or run_dir, top_patterns=config.top_patterns)
    return {"trees": graphs, "attributions": attributions, "written": written, "statistics": statistics,
            "summary": stats.summary(), "first_picture": first_picture, "use_last_layer": use_last_layer,
            "drawn": drawn, "examples": examples, "skipped_rows": list(examples.skipped)}
