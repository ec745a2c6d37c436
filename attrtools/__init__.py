"""attrtools: self-attention attribution for transformer classifiers, and tools built on it.

Imports are lazy so that ``attrtools --help`` and ``import attrtools`` do not load torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_model": "attrtools.api",
    "attribute": "attrtools.api",
    "Engine": "attrtools.engine",
    "Attribution": "attrtools.types",
    "Attributions": "attrtools.types",
    "Example": "attrtools.types",
    "fingerprint": "attrtools.models",
    "supported_model_types": "attrtools.adapters",
    "UnsupportedModelError": "attrtools.errors",
    "load_pruned": "attrtools.pruned",
}


def list_methods():
    from .methods import list_methods as _list

    return _list()


def get_method(name: str):
    from .methods import get

    return get(name)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attrtools' has no attribute {name!r}")


__all__ = ["load_model", "attribute", "list_methods", "get_method", "Engine", "Attribution", "Attributions", "Example",
           "fingerprint", "supported_model_types", "UnsupportedModelError"]
