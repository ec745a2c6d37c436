"""Public Python API: ``load_model`` and ``attribute``."""
from __future__ import annotations

from . import capture
from .engine import Engine
from .model_state import unwrap_compiled
from .models import load_pretrained


def load_model(name_or_path: str, device=None, **kwargs):
    """``(model, tokenizer)`` from a hub id or a local folder via ``from_pretrained``, in eval mode,
    with the attrtools attention function selected (see ``capture.py``). A folder written by
    ``save_pruned`` (it holds ``pruned_heads.json``) is loaded with its pruning re-applied."""
    import os

    from .pruned import PRUNED_HEADS_FILE, load_pruned

    if os.path.isdir(name_or_path) and os.path.exists(os.path.join(name_or_path, PRUNED_HEADS_FILE)):
        if kwargs.get("num_labels") is not None:
            raise ValueError(f"{name_or_path} holds a pruned model: its number of labels is fixed")
        return load_pruned(name_or_path, device=device, dtype=kwargs.get("dtype"))
    model, tokenizer = load_pretrained(name_or_path, device=device, **kwargs)
    capture.install(model)
    return model, tokenizer


def attribute(model, tokenizer, inputs, method: str = "attattr", target=None, cache=None,
              batch_size: int = 8, progress: bool | None = None, **params):
    """Attribute ``inputs`` with ``method``; one ``Attribution`` per input, in input order.

    Args:
        model, tokenizer: from ``load_model`` (any supported family; the attention capture is
            installed here if it is not yet).
        inputs: one input or a sequence of them: a string, a ``(text, text_pair)`` tuple, a dict
            with ``text`` (and ``text_pair``, ``label``, ``id``), or an ``Example``. A single input
            still gives a list (of one).
        method: a registered method name (``attrtools.list_methods()``; ``attrtools methods``
            on the command line): ``attattr`` (Hao et al. 2021), ``gradsam``, ``chefer_lrp``,
            ``chefer_grad``, ``globenc``, ``alti``, ``decompx``, ``rollout``, ``flow``, ``raw``,
            ``grad_input``, ``ig_embed``.
        target: the class explained: None or "pred" (the class predicted on the clean input),
            "gold" (each example's label), a class index, or one of those per input. Ignored by
            class-agnostic methods (``target == "none"``).
        cache: None (no caching, the default), True (the default cache: ``$ATTRTOOLS_CACHE``,
            else ``$XDG_CACHE_HOME/attrtools``), a cache folder, or an ``AttributionCache``.
        batch_size: examples per batch (padded to the batch's longest); progress: a progress
            bar (None: when stderr is a terminal).
        **params: the method's parameters (its ``defaults``; e.g. ``steps`` for AttAttr).

    Returns an ``Attributions`` list (a plain list a notebook shows as a summary table) of
    ``Attribution``: ``scores`` cropped to each input's ``n`` tokens (special
    tokens included), shaped by ``kind``: ``(L, H, n, n)`` for ``matrix``, ``(L, n, n)`` for
    ``layer_matrix``, ``(n,)`` for ``tokens``; in the method's own units (AttAttr: probability
    times attention; gradient methods: logit or probability gradients times activations).

    Raises ``UnknownMethodError`` (a ``KeyError``) for an unregistered method,
    ``ParameterError`` for an unknown or out-of-range parameter or target,
    ``UnsupportedModelError`` / ``UnsupportedArchitecture`` for a model the method cannot run on,
    ``InputDataError`` for an input without a label when ``target="gold"`` or one that tokenizes
    to nothing. Sources: each method's ``paper`` (``attrtools.get_method(name).paper``).
    """
    from .types import Attributions

    model = unwrap_compiled(model)  # attrtools.model_state: capture runs on the original module
    if not capture.is_installed(model):
        capture.install(model)
    single = isinstance(inputs, (str, dict)) or (isinstance(inputs, tuple) and len(inputs) == 2
                                                 and all(isinstance(x, str) for x in inputs))
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, progress=progress)
    return Attributions(engine.attribute([inputs] if single else list(inputs), method=method, target=target,
                                         **params))
