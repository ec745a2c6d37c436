"""Public Python API: ``load_model`` and ``attribute``."""
from __future__ import annotations

from . import capture
from .errors import UsageError
from .engine import Encoded, Engine
from .model_state import unwrap_compiled
from .models import load_pretrained


def load_model(name_or_path, device=None, *, tokenizer=None, dtype=None, revision: str | None = None,
               token=None, cache_dir: str | None = None, **kwargs):
    """``(model, tokenizer)`` in eval mode with the attrtools attention function selected (see
    ``capture.py``), from any of:

    - a hub id or a local folder (``from_pretrained``); ``revision`` (branch, tag or commit),
      ``token`` and ``cache_dir`` reach the model *and* the tokenizer; other ``kwargs`` (e.g.
      ``num_labels``) go to the model's ``from_pretrained``. A folder written by ``save_pruned``
      (it holds ``pruned_heads.json``) is loaded with its pruning re-applied;
    - an already loaded transformers sequence classifier with ``tokenizer=`` its tokenizer;
    - a transformers ``pipeline`` object (its ``model`` and ``tokenizer``).
    A loaded model or pipeline is set to eval mode and moved / cast in place (``device``, ``dtype``);
    hub arguments are refused for it (there are no files to choose).

    ``dtype``: None (the checkpoint's), a ``torch.dtype`` or 'fp32' / 'fp16' / 'bf16' (also
    'float32', 'float16', 'bfloat16', 'auto'); ``device``: 'cpu', 'cuda', 'cuda:1', ...
    Raises ``UsageError`` (a model object without its tokenizer, an unknown dtype),
    ``UnsupportedModelError`` (a family attrtools cannot explain), ``ModelFolderError``."""
    import os

    from .models import prepare_loaded, resolve_dtype, unwrap_pipeline
    from .pruned import PRUNED_HEADS_FILE, load_pruned

    piped = unwrap_pipeline(name_or_path)
    if piped is not None or not isinstance(name_or_path, (str, os.PathLike)):
        given = sorted(k for k, v in dict(kwargs, revision=revision, token=token, cache_dir=cache_dir).items()
                       if v is not None)
        if given:  # they choose files to load: a loaded model has none
            raise UsageError(f"{', '.join(given)} apply to loading a model by name or folder, not to a loaded "
                             "model or pipeline")
        model, tok = piped if piped is not None else (name_or_path, tokenizer)
        model, tok = prepare_loaded(model, tokenizer if tokenizer is not None else tok, device=device, dtype=dtype)
        if not capture.is_installed(model):
            capture.install(model)
        return model, tok
    name_or_path = os.fspath(name_or_path)
    hub = {k: v for k, v in (("revision", revision), ("token", token), ("cache_dir", cache_dir)) if v is not None}
    kwargs.update(hub)
    if dtype is not None:
        kwargs["dtype"] = resolve_dtype(dtype)
    if os.path.isdir(name_or_path) and os.path.exists(os.path.join(name_or_path, PRUNED_HEADS_FILE)):
        if kwargs.get("num_labels") is not None:
            raise ValueError(f"{name_or_path} holds a pruned model: its number of labels is fixed")
        return load_pruned(name_or_path, device=device, dtype=kwargs.get("dtype"))
    model, tokenizer = load_pretrained(name_or_path, device=device, **kwargs)
    capture.install(model)
    return model, tokenizer


def attribute(model, tokenizer=None, inputs=None, method: str = "attattr", target=None, cache=None,
              batch_size: int = 8, progress: bool | None = None, *, text_column: str | None = None,
              pair_column: str | None = None, label_column: str | None = None, split: str | None = None,
              label_names=None, **params):
    """Attribute ``inputs`` with ``method``; one ``Attribution`` per input, in input order.

    Args:
        model, tokenizer: from ``load_model`` (any supported family; the attention capture is
            installed here if it is not yet), or a transformers ``pipeline`` as ``model`` (then
            ``attribute(pipe, inputs)``: its model and tokenizer are used).
        inputs: one input or many, by the one rule of ``attrtools.inputs`` (docs/python-inputs.md):
            a string, a ``(text, text_pair)`` tuple, a dict with ``text`` (and ``text_pair``,
            ``label``, ``id``), an ``Example``, a list of these, a pandas ``DataFrame`` / ``Series``,
            a ``datasets.Dataset`` or ``DatasetDict`` (``split=``), a list of dicts, or token ids
            (``BatchEncoding``, integer tensors, lists of ints). A single input still gives a list
            (of one); anything else raises ``InputDataError``.
        text_column, pair_column, label_column: the columns of a DataFrame / dataset / list of
            dicts (default: guessed as for files: ``text``, ``sentence``, ``premise``, ...);
            split: the split of a ``DatasetDict``; label_names: names of string labels (default:
            the model's own ``label2id``).
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
    from .models import unwrap_pipeline

    piped = unwrap_pipeline(model)
    if piped is not None:  # attribute(pipe, inputs) or attribute(pipe, inputs=...)
        if inputs is None and tokenizer is not None and unwrap_pipeline(tokenizer) is None and \
                not hasattr(tokenizer, "convert_ids_to_tokens"):
            inputs, tokenizer = tokenizer, None
        model, tokenizer = load_model(model)
    if tokenizer is None:
        raise UsageError("attribute() needs the model's tokenizer: attribute(model, tokenizer, inputs), or a "
                         "transformers pipeline: attribute(pipe, inputs)")
    model = unwrap_compiled(model)  # attrtools.model_state: capture runs on the original module
    if not capture.is_installed(model):
        capture.install(model)
    from .inputs import normalize

    items, _ = normalize(inputs, tokenizer, text_column=text_column, pair_column=pair_column,
                         label_column=label_column, split=split, label_names=label_names, model_config=model.config,
                         passthrough=(Encoded,))  # an engine's encodings: no second tokenization
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, progress=progress)
    return engine.attribute_items(list(items), method=method, target=target, **params)  # normalized once, here
