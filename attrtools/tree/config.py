"""``TreeConfig``: the settings of the attribution-tree tool, and their defaults (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ..ranges import check_ranges, option

DEFAULT_THRESHOLD = 0.4  # τ of the official tree code
ALL_FORMATS = ("graphml", "json", "dot", "png", "svg", "html")


@dataclass
class TreeConfig:
    """Settings of the attribution-tree tool (``attrtools tree``); the defaults are the tool's.

    ``threshold``: τ, a normalised per-layer attribution above it is a salient dependency;
    ``root``: 'top' (the token with the largest total attribution, official code) or 'cls';
    ``use_last_layer``: start at layer L-1 (None: yes with root 'cls', L-2 as the official code
    with 'top'); ``steps``: AttAttr integration ("auto": converged to 1e-3, the default; or m official left-Riemann steps, 64 in the official tree code);
    ``target``: 'pred' (official), 'gold' or a class index; ``formats``: per-tree files among
    graphml, json, dot, png, svg, html; ``max_pictures``: draw png/svg for the first N trees only
    (-1: all); ``top_patterns``: rows of patterns.csv; ``batch_size``: examples per attribution
    batch; ``max_length``: truncation in tokens (None: the engine's rule, ``models.max_input_length``).

    Each field declares its valid values (``attrtools.ranges.option``); a value outside them raises a
    one-line ``ParameterError`` naming the field when the config is built (also through
    ``dataclasses.replace`` and the pipelines' keyword overrides).
    """

    threshold: float = option(DEFAULT_THRESHOLD, kind="float", low=0, high=1)
    root: str = option("top", kind="str", choices=("top", "cls"))
    use_last_layer: bool | None = option(None, kind="bool", optional=True)
    steps: int | str = option("auto", kind="int", low=1, choices=("auto",))
    target: str | int | None = option("pred", kind="int", low=0, choices=("pred", "predicted", "gold"), optional=True)
    formats: tuple = option(ALL_FORMATS, kind="str", sequence=True)  # names: export.parse_formats ('all', any case)
    max_pictures: int = option(20, kind="int", low=-1)
    top_patterns: int = option(50, kind="int", low=0)
    batch_size: int = option(8, kind="int", low=1)
    max_length: int | None = option(None, kind="int", low=2, optional=True)

    def __post_init__(self):
        check_ranges(self)  # one line naming the field, before anything loads (attrtools.ranges)
