"""Attribution trees (Hao et al. 2021, §5) as NetworkX graphs, their exports and dataset statistics.

Light on import (no torch, no networkx until used)::

    from attrtools.tree import build_tree, tree_from_attribution, build_trees, export_tree, TreeStatistics
"""
from __future__ import annotations

_EXPORTS = {
    "build_tree": "build", "tree_from_attribution": "build", "build_trees": "build", "normalise_layers": "build",
    "top_token": "build", "export_tree": "export", "to_dot": "export", "to_html": "export", "draw": "export",
    "read_node_link": "export", "FORMATS": "export", "TreeStatistics": "stats", "view": "export",
    "tree_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
