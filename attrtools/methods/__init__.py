"""The method registry: ``get(name)``, ``list_methods()``, ``register``.

Each method lives in its own module; importing this package imports them all (cheap: no model
work happens at import).
"""
from __future__ import annotations

import importlib

from .base import Batch, Method

_REGISTRY: dict[str, Method] = {}

# Modules holding one method each; a module may be absent while its method is being written.
_MODULES = ("raw", "attattr", "gradsam", "chefer_lrp", "chefer_grad", "globenc", "rollout", "flow",
            "grad_input", "ig_embed", "alti", "decompx")
_loaded = False


def register(cls):
    """Class decorator: add a Method subclass to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def _load_all():
    global _loaded
    if _loaded:
        return
    for module in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise
    _loaded = True


def get(name: str) -> Method:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        from ..errors import UnknownMethodError

        raise UnknownMethodError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def list_methods() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


__all__ = ["Batch", "Method", "get", "list_methods", "register"]
