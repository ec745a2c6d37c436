"""Public Python API: ``load_model`` and ``attribute``."""
from __future__ import annotations

from . import capture
from .engine import Engine
from .models import load_pretrained


def load_model(name_or_path: str, device=None, **kwargs):
    """``(model, tokenizer)`` from a hub id or a local folder via ``from_pretrained``, in eval mode,
    with the attrtools attention function selected (see ``capture.py``). A folder written by
    ``save_pruned`` (it holds ``pruned_heads.json``) is loaded with its pruning re-applied."""
    import os

    from .pruning.prune import PRUNED_HEADS_FILE, load_pruned

    if os.path.isdir(name_or_path) and os.path.exists(os.path.join(name_or_path, PRUNED_HEADS_FILE)):
        if kwargs.get("num_labels") is not None:
            raise ValueError(f"{name_or_path} holds a pruned model: its number of labels is fixed")
        return load_pruned(name_or_path, device=device, dtype=kwargs.get("dtype"))
    model, tokenizer = load_pretrained(name_or_path, device=device, **kwargs)
    capture.install(model)
    return model, tokenizer


def attribute(model, tokenizer, inputs, method: str = "attattr", target=None, cache=None,
              batch_size: int = 8, progress: bool | None = None, **params):
    """Attribute ``inputs`` (strings, (text, pair) tuples, dicts or Examples) with ``method``.

    ``target``: None (predicted class), "gold" (the examples' labels), a class index, or a list.
    ``cache``: None (no caching, the default), True (the default cache: ``$ATTRTOOLS_CACHE``, else
    ``$XDG_CACHE_HOME/attrtools``), a cache folder, or an ``attrtools.cache.AttributionCache``.
    Returns one ``Attribution`` per input, in order, as an ``Attributions`` list (a plain list that a
    notebook shows as a summary table).
    """
    from .types import Attributions

    if not capture.is_installed(model):
        capture.install(model)
    single = isinstance(inputs, (str, dict)) or (isinstance(inputs, tuple) and len(inputs) == 2
                                                 and all(isinstance(x, str) for x in inputs))
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, progress=progress)
    return Attributions(engine.attribute([inputs] if single else list(inputs), method=method, target=target,
                                         **params))
