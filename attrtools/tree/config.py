"""``TreeConfig``: the settings of the attribution-tree tool, and their defaults (torch-free)."""
from __future__ import annotations

from ..ranges import batch_size_field, max_length_field, option, progress_field, steps_field, tolerance_field, tool_config

DEFAULT_THRESHOLD = 0.4  # τ of the official tree code
ALL_FORMATS = ("graphml", "json", "dot", "png", "svg", "html")


@tool_config
class TreeConfig:
    """Settings of the attribution-tree tool (``attrtools tree``, ``attrtools.tree.run``); the
    defaults are the tool's. Each field declares its option, help and valid values
    (``attrtools.ranges.option``); a value outside them raises a one-line ``ParameterError`` naming
    the field when the config is built (also through ``dataclasses.replace`` and keyword overrides).
    """

    threshold: float = option(DEFAULT_THRESHOLD, kind="float", low=0, high=1,
                              help="τ: a normalised per-layer attribution above it is a salient dependency.")
    root: str = option("top", kind="str", choices=("top", "cls"),
                       help="top: the token with the largest total attribution (official code); cls: [CLS] "
                            "(paper/author).")
    use_last_layer: bool | None = option(None, kind="bool", optional=True, flag="--use-last-layer/--no-last-layer",
                                         help="Start at the last layer L-1 (default with --root cls) or at L-2 as "
                                              "the official code (default with --root top).")
    steps: int | str = steps_field(64, "the official tree code")
    tolerance: float = tolerance_field()
    target: str | int | None = option("pred", kind="int", low=0, choices=("pred", "predicted", "gold"), optional=True,
                                      help="Class explained: 'pred' (the predicted class), 'gold' (the label) or a "
                                           "class index.")
    # names: export.parse_formats ('all', any case)
    formats: tuple = option(ALL_FORMATS, kind="str", sequence=True,
                            help="Comma-separated per-tree outputs: graphml, json, dot, png, svg, html (or 'all').")
    max_pictures: int = option(20, kind="int", low=-1,
                               help="With --dataset, draw png/svg only for the first N examples (-1: all).")
    top_patterns: int = option(50, kind="int", low=0, help="Rows of patterns.csv.")
    batch_size: int = batch_size_field(8)
    max_length: int | None = max_length_field()
    progress: bool | None = progress_field()
