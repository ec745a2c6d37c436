"""Public Python API: ``load_model`` and ``attribute``."""
from __future__ import annotations

from . import capture
from .engine import Engine
from .models import load_pretrained


def load_model(name_or_path: str, device=None, **kwargs):
    """``(model, tokenizer)`` from a hub id or a local folder via ``from_pretrained``, in eval mode,
    with the attrtools attention function selected (see ``capture.py``)."""
    model, tokenizer = load_pretrained(name_or_path, device=device, **kwargs)
    capture.install(model)
    return model, tokenizer


def attribute(model, tokenizer, inputs, method: str = "attattr", target=None, cache=None,
              batch_size: int = 8, progress: bool | None = None, **params):
    """Attribute ``inputs`` (strings, (text, pair) tuples, dicts or Examples) with ``method``.

    ``target``: None (predicted class), "gold" (the examples' labels), a class index, or a list.
    ``cache``: None (no caching, the default), True (the default cache: ``$ATTRTOOLS_CACHE``, else
    ``$XDG_CACHE_HOME/attrtools``), a cache folder, or an ``attrtools.cache.AttributionCache``.
    Returns one ``Attribution`` per input, in order.
    """
    if not capture.is_installed(model):
        capture.install(model)
    single = isinstance(inputs, (str, dict)) or (isinstance(inputs, tuple) and len(inputs) == 2
                                                 and all(isinstance(x, str) for x in inputs))
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, progress=progress)
    return engine.attribute([inputs] if single else list(inputs), method=method, target=target, **params)
