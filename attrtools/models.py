"""Loading models and tokenizers (hub id, folder, loaded objects, pipelines), devices and dtypes,
the one input-length rule (position table and tokenizer limit), and the fingerprints of a model and a
tokenizer that key the cache.

The adapter table is ``adapters.py``; the architecture queries (layers, heads, projections, pooling)
``architecture.py``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os

import torch
from torch import nn

from .adapters import ADAPTERS, adapter_for, infer_adapter
from .architecture import PoolingError  # noqa: F401
# OneOutputError, PoolingError, UnsupportedModelError: errors users catch, importable from here as before
from .errors import OneOutputError, UnsupportedModelError, UsageError  # noqa: F401


# ------------------------------------------------------------------------------------ input length
# Families whose position ids start after the padding index (fairseq's convention): the table holds
# ``max_position_embeddings`` rows, of which ``pad_token_id + 1`` are never used by a real token.
_PADDING_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text",
                                       "xmod", "roberta-prelayernorm", "luke", "mpnet", "ibert"})
# A tokenizer without a known limit reports this (``int(1e30)``, transformers' VERY_LARGE_INTEGER).
_UNSET_TOKENIZER_LIMIT = int(1e9)


def position_limit(model_or_config) -> int | None:
    """Longest input (tokens, special tokens included) the model's position table can encode.

    ``max_position_embeddings`` (``n_positions`` for GPT-2 style configs) minus the RoBERTa-style
    offset (position ids start at ``pad_token_id + 1`` in RoBERTa, XLM-R, CamemBERT, MPNet, ...);
    None when the config states no limit."""
    config = getattr(model_or_config, "config", model_or_config)
    table = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not table:
        return None
    offset = 0
    if getattr(config, "model_type", None) in _PADDING_OFFSET_POSITIONS:
        offset = (getattr(config, "pad_token_id", None) or 0) + 1
    return int(table) - offset


def tokenizer_limit(tokenizer) -> int | None:
    """``tokenizer.model_max_length``, or None when it is transformers' "no limit" sentinel."""
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is None or limit >= _UNSET_TOKENIZER_LIMIT:
        return None
    return int(limit)


def max_input_length(model, tokenizer, override: int | None = None) -> int | None:
    """The one truncation rule of attrtools: the longest input (in tokens, specials included) that
    every tool feeds ``model``.

    Default: the smaller of ``position_limit(model)`` and ``tokenizer_limit(tokenizer)`` (None if
    neither is known). ``override`` (``--max-length``) replaces the default; it must be >= 2 and
    may not exceed the position table, which would index past it.

    Raises ``ValueError`` for an override that is too small or beyond the position table."""
    positions = position_limit(model)
    if override is not None:
        override = int(override)
        if override < 2:
            raise ValueError(f"max length must be at least 2 tokens, got {override}")
        if positions is not None and override > positions:
            raise ValueError(f"max length {override} exceeds the {positions} positions this model can encode "
                             f"(model_type {getattr(model.config, 'model_type', '?')!r})")
        return override
    limits = [v for v in (positions, tokenizer_limit(tokenizer)) if v is not None]
    return min(limits) if limits else None


# ------------------------------------------------------------------------------------ fingerprint
def _tensor_digest(tensor: torch.Tensor) -> bytes:
    """xxh3-128 of a tensor's raw bytes (read in place for contiguous CPU tensors, else copied)."""
    import xxhash

    data = tensor.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    data = data.contiguous().reshape(-1)
    if data.numel() == 0:
        return xxhash.xxh3_128(b"").digest()
    return xxhash.xxh3_128(memoryview(data.view(torch.uint8).numpy())).digest()


def fingerprint(model: nn.Module) -> str:
    """sha256 over the config and the content of every parameter and buffer (name, shape, dtype,
    and an xxh3-128 digest of its bytes).

    Nothing is memoised: the bytes are read on every call, so an edit through any route (in-place
    ops, ``.data`` edits that leave the version counter alone, numpy views, ``load_state_dict``)
    changes the fingerprint. xxh3 reads memory at several GB/s, so a warm call on a BERT-base
    model costs a few tens of milliseconds (``scripts/bench_fingerprint.py`` measures it)."""
    digest = hashlib.sha256()
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "_attn_implementation_autoset", "dtype", "torch_dtype"):
        config.pop(volatile, None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    seen: dict[tuple, bytes] = {}  # tied weights (same storage, shape, dtype) are read once
    for name, tensor in model.state_dict(keep_vars=True).items():
        ident = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype, tensor.device)
        if ident not in seen or tensor.data_ptr() == 0:
            seen[ident] = _tensor_digest(tensor)
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(seen[ident])
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's vocabulary and the settings that change ids."""
    digest = hashlib.sha256()
    vocab = tokenizer.get_vocab()
    digest.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
    digest.update(json.dumps([type(tokenizer).__name__, getattr(tokenizer, "do_lower_case", None),
                              tokenizer.model_max_length if tokenizer.model_max_length < 1e9 else None],
                             default=str).encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ loading
PRUNED_HEADS_FILE = "pruned_heads.json"  # marks a folder written by attrtools.save_pruned


class CheckpointMismatchError(UnsupportedModelError):
    """Weights whose shapes differ from config.json (a pruned model without its pruned_heads.json)."""


@contextlib.contextmanager
def held_transformers_logs():
    """Hold back what transformers logs inside (its multi-line load report of a checkpoint whose
    shapes do not fit, ...). On leaving, the records are passed on to transformers' own handlers as
    they would have been, unless the body set ``state["drop"] = True`` because attrtools replaces
    them with its own one-line error. Yields that ``state`` dict."""
    from transformers.utils import logging as hf_logging

    root = hf_logging.get_logger()  # the library's root logger: every transformers logger ends there
    held: list[logging.LogRecord] = []

    class _Hold(logging.Handler):
        def emit(self, record):
            held.append(record)

    saved = (root.handlers[:], root.propagate)
    root.handlers, root.propagate = [_Hold()], False
    state = {"drop": False}
    try:
        yield state
    finally:
        root.handlers, root.propagate = saved
        if not state["drop"]:
            for record in held:  # as logging would have: the handlers from the root up, filters and levels kept
                root.callHandlers(record)


#: ``from_pretrained`` keyword arguments that say *which files* to load: passed to the model and to
#: the tokenizer alike (a ``revision`` reaching only the weights would pair v1 weights with the
#: default branch's tokenizer).
HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download", "proxies")
#: ``dtype=`` spellings (``attrtools.load_model``, ``--dtype``) -> torch dtype names.
DTYPE_NAMES = {"fp32": "float32", "float32": "float32", "float": "float32", "fp16": "float16", "float16": "float16",
               "half": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


class DtypeError(UsageError):
    """A ``dtype`` that is not one of the accepted spellings."""


def resolve_dtype(dtype):
    """``None`` (the checkpoint's own), a ``torch.dtype`` (float32/float16/bfloat16), or one of
    ``DTYPE_NAMES`` ('fp32', 'fp16', 'bf16', 'float32', ...) or "auto" -> what ``from_pretrained``
    takes. Raises ``DtypeError`` naming the accepted spellings."""
    if dtype is None or dtype == "auto":
        return dtype
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise DtypeError(f"dtype {dtype} is not a floating point compute dtype: use torch.float32, torch.float16 "
                             "or torch.bfloat16")
        return dtype
    name = DTYPE_NAMES.get(str(dtype).lower().replace("torch.", ""))
    if name is None:
        raise DtypeError(f"unknown dtype {dtype!r}: use one of {sorted(set(DTYPE_NAMES))}, 'auto', or a torch dtype")
    return getattr(torch, name)


def unwrap_pipeline(obj):
    """``(model, tokenizer)`` of a transformers ``Pipeline`` (e.g. ``pipeline("text-classification")``),
    None for anything else."""
    try:
        from transformers import Pipeline
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    if isinstance(obj, Pipeline):
        return obj.model, obj.tokenizer
    return None


def prepare_loaded(model, tokenizer, device=None, dtype=None, name: str | None = None):
    """An already loaded ``(model, tokenizer)`` made ready as ``load_pretrained`` leaves its own:
    a known (or inferred) family, a tokenizer that fits the vocabulary, ``config.pad_token_id``
    from the tokenizer when unset, eval mode, ``device`` / ``dtype`` when given.

    Raises ``UsageError`` for a model that is not a ``torch.nn.Module`` with a config or a missing
    tokenizer, ``UnsupportedModelError`` for a family attrtools cannot explain."""
    from .guard import check_device, check_tokenizer

    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise UsageError(f"cannot use {type(model).__name__} as a model: give a hub id or folder, a loaded "
                         "transformers sequence classifier (with tokenizer=), or a transformers pipeline")
    if tokenizer is None or not callable(tokenizer):
        raise UsageError("a loaded model needs its tokenizer: attrtools.load_model(model, tokenizer=tokenizer)")
    check_device(device)
    name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
    if getattr(model.config, "model_type", None) not in ADAPTERS:
        infer_adapter(model)
    check_tokenizer(tokenizer, model.config, name)
    rows = model.get_input_embeddings().num_embeddings
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None and tokenizer.pad_token_id < rows:
        model.config.pad_token_id = tokenizer.pad_token_id  # an id past the table stays unset (check_pooling refuses it)
    model.eval()
    dtype = resolve_dtype(dtype)
    if dtype not in (None, "auto"):
        model.to(dtype)
    if device is not None:
        model.to(device)
    return model, tokenizer


def load_pretrained(name_or_path: str, device=None, num_labels: int | None = None, dtype=None, **kwargs):
    """``(model, tokenizer)`` through the real ``from_pretrained`` (hub id or local folder), eval mode.

    ``dtype``: see :func:`resolve_dtype`. The hub arguments of ``HUB_KWARGS`` (``revision``,
    ``token``, ``cache_dir``, ...) reach the tokenizer as well as the model; other ``kwargs`` go to
    the model's ``from_pretrained`` only.
    The attention implementation is left to the caller (``attrtools.load_model`` selects the
    attrtools one). A pruned model saved by attrtools carries ``pruned_heads.json``; reload it
    with ``attrtools.load_pruned`` so the pruning is re-applied.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dtype = resolve_dtype(dtype)
    hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None}

    if os.path.isdir(name_or_path) and os.path.exists(os.path.join(name_or_path, PRUNED_HEADS_FILE)) \
            and not kwargs.pop("_allow_pruned", False):
        raise ValueError(f"{name_or_path} holds a pruned model: load it with attrtools.load_pruned()")
    from .guard import check_device, check_model_folder, check_tokenizer, explain_load_error

    check_device(device)
    check_model_folder(name_or_path)  # config.json, tokenizer files, no custom code
    model_kwargs = dict(kwargs)
    model_kwargs["trust_remote_code"] = False  # never run a folder's Python (also no interactive prompt)
    # transformers logs a multi-line load report before it raises on a checkpoint whose shapes do not
    # fit (a pruned folder without its pruned_heads.json): held back, and dropped where our one line
    # says it; passed on unchanged after a load that succeeds.
    with held_transformers_logs() as logs:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False, **hub)
            if num_labels is not None:
                model_kwargs["num_labels"] = num_labels
            if dtype is not None:
                model_kwargs["dtype"] = dtype
            model, loading = AutoModelForSequenceClassification.from_pretrained(name_or_path, output_loading_info=True,
                                                                                **model_kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised unless it is one we can say in a sentence
            if isinstance(err, RuntimeError) and "mismatch" in str(err):
                logs["drop"] = True
                raise CheckpointMismatchError(
                    f"{name_or_path}: the weights do not have the shapes config.json describes (size mismatch); "
                    f"a model pruned with attrtools loads only with its {PRUNED_HEADS_FILE} beside it (written by "
                    "attrtools.save_pruned)") from None
            reason = explain_load_error(err, name_or_path)
            if reason is None:
                raise
            logs["drop"] = True
            raise ValueError(reason) from None
    if getattr(model.config, "model_type", None) not in ADAPTERS:
        infer_adapter(model)  # fail early, naming the model type and what is missing
    warn_new_head(model, loading.get("missing_keys") or (), name_or_path)
    check_tokenizer(tokenizer, model.config, name_or_path)
    rows = model.get_input_embeddings().num_embeddings
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None and tokenizer.pad_token_id < rows:
        model.config.pad_token_id = tokenizer.pad_token_id  # an id past the table stays unset (check_pooling refuses it)
    model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


class NewHeadWarning(UserWarning):
    """The checkpoint has no classification head: transformers initialised it at random."""


def warn_new_head(model, missing_keys, name) -> None:
    """One warning when ``from_pretrained`` initialised the classifier head at random (a checkpoint
    saved without a sequence-classification head, e.g. a sentence encoder's ``BertModel``): every
    prediction, probability and attribution would then explain a random head. The head's modules
    are the adapter's ``classifier_head`` (``score``, ``classifier``, ...)."""
    try:
        heads = tuple(adapter_for(model).classifier_head or ())
    except UnsupportedModelError:  # a family without an adapter yet: the common head names
        heads = ("classifier", "score")
    missing = [k for k in missing_keys if any(k == h or k.startswith(h + ".") for h in heads)]
    if missing:
        from .notices import warn

        warn(f"{name}: the checkpoint has no classification head ({', '.join(sorted(missing)[:3])} initialised at "
             "random), so its predictions and attributions explain a random head; fine-tune it first "
             "(`attrtools finetune`) or load a sequence-classification checkpoint", NewHeadWarning)


def load_auxiliary(name_or_path: str, kind: str):
    """``(model, tokenizer)`` of a model that is not explained but used by a tool (the audit's
    masked LM or sentence encoder), in eval mode, never running remote code.

    ``kind``: ``"masked-lm"`` (``AutoModelForMaskedLM``) or ``"encoder"`` (``AutoModel``).
    Raises ``OSError`` / ``ValueError`` as ``from_pretrained`` does (missing or broken folder)."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    classes = {"masked-lm": AutoModelForMaskedLM, "encoder": AutoModel}
    if kind not in classes:
        raise ValueError(f"unknown auxiliary model kind {kind!r}; choose from {sorted(classes)}")
    model = classes[kind].from_pretrained(name_or_path, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
    return model.eval(), tokenizer


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def resolve_device(device=None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------------------------ for the CLI
def quiet_loaders() -> None:
    """Silence the load reports and progress bars of transformers and datasets (attrtools' own
    progress bars stay): the command line's output is its summary."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()


def load_config(name_or_path: str, revision: str | None = None):
    """The model's config (hub id or local folder; ``revision``: its branch, tag or commit) without
    its weights, never running remote code, or None when it cannot be read here (the model load that
    follows reports why). The CLI reads it before the data, so that string labels map through the
    model's own ``label2id``."""
    return _read_without_weights("AutoConfig", name_or_path, revision)


def load_tokenizer(name_or_path: str, revision: str | None = None):
    """The model's tokenizer alone (hub id or local folder, at ``revision``), never running remote
    code, or None when it cannot be read here. The CLI checks options that depend on it before the
    weights load."""
    return _read_without_weights("AutoTokenizer", name_or_path, revision)


def _read_without_weights(kind: str, name_or_path: str, revision: str | None = None):
    import transformers

    if not name_or_path:
        return None
    hub = {"revision": revision} if revision is not None else {}
    try:
        return getattr(transformers, kind).from_pretrained(name_or_path, trust_remote_code=False, **hub)
    except Exception:  # noqa: BLE001 - a peek only; the model load gives the real error
        return None
