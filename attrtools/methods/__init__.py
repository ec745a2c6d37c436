"""The method registry: ``get(name)``, ``list_methods()``, ``register``.

Each method lives in its own module of this package and registers itself with ``@register``; the
registry imports every module of the package (found on disk, no hand-kept list) except the helpers
of ``HELPER_MODULES`` (``base``, ``shared``, ``integration``, ``decomposition``: used by several methods)
and names starting with ``_``. Adding a method is one new file. A method module imports helpers only,
never another method (``tests/test_layers.py`` checks it). Importing is cheap: no model work happens at import.
"""
from __future__ import annotations

import importlib

from .base import Batch, Method

_REGISTRY: dict[str, Method] = {}

#: modules of this package that hold helpers shared by methods, not methods
HELPER_MODULES = frozenset({"base", "shared", "integration", "decomposition"})
_loaded = False


def method_modules() -> list[str]:
    """The modules of this package that hold methods (every module but the ``HELPER_MODULES`` and
    private ones), sorted."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in HELPER_MODULES and not m.ispkg)


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
    for module in method_modules():
        importlib.import_module(f"{__name__}.{module}")
    _loaded = True


def get(name: str) -> Method:
    """The registered method called ``name``; ``UnknownMethodError`` (a ``KeyError``) otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        from ..errors import UnknownMethodError

        from ..errors import did_you_mean

        raise UnknownMethodError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}"
                                 f"{did_you_mean(str(name).lower().replace('-', '_'), _REGISTRY)}") from None


def list_methods() -> list[str]:
    """Names of every registered method, sorted."""
    _load_all()
    return sorted(_REGISTRY)


__all__ = ["Batch", "Method", "get", "list_methods", "method_modules", "register"]
