"""``TreeConfig``: the settings of the attribution-tree tool, and their defaults (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

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
    """

    threshold: float = DEFAULT_THRESHOLD
    root: str = "top"
    use_last_layer: bool | None = None
    steps: int | str = "auto"
    target: str | int = "pred"
    formats: tuple = ALL_FORMATS
    max_pictures: int = 20
    top_patterns: int = 50
    batch_size: int = 8
    max_length: int | None = None
