"""Loading models and tokenizers, fingerprints, and the per-architecture adapter table.

The adapter table is the only place that knows module *names* inside each architecture; methods
and tools ask it for "layer l's value projection" rather than spelling ``bert.encoder...``.
Nothing here knows how attention is computed: that is ``capture.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import torch
from torch import nn


class UnsupportedModelError(ValueError):
    """The model's architecture is not in the adapter table."""


@dataclass(frozen=True)
class Adapter:
    """Where things live inside one architecture (paths relative to the model or to one layer)."""

    model_type: str
    layers: str  # ModuleList of transformer blocks, from the model root
    embeddings: str  # module whose output enters layer 0, from the model root
    word_embeddings: str  # token embedding table, from the model root
    attention: str  # module that calls the attention function, from a layer
    query: str
    key: str
    value: str
    output: str  # attention output projection W_O, from a layer
    ln_attention: str  # post-LN: LayerNorm after attention+residual; pre-LN: norm before attention
    ffn_in: str
    ffn_out: str
    ln_ffn: str
    pre_norm: bool = False  # True for pre-LN blocks (Llama); the norm-based methods need post-LN
    uses_token_type_ids: bool = True
    pool_position: int = 0  # which token the classifier reads: 0 = first ([CLS]/<s>), -1 = last token
    final_norm: str | None = None  # pre-LN models normalise after the last layer


_BERT_LIKE = dict(
    attention="attention.self",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    output="attention.output.dense",
    ln_attention="attention.output.LayerNorm",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    ln_ffn="output.LayerNorm",
)

ADAPTERS: dict[str, Adapter] = {
    "bert": Adapter("bert", "bert.encoder.layer", "bert.embeddings", "bert.embeddings.word_embeddings", **_BERT_LIKE),
    "roberta": Adapter(
        "roberta", "roberta.encoder.layer", "roberta.embeddings", "roberta.embeddings.word_embeddings", **_BERT_LIKE
    ),
    "electra": Adapter(
        "electra", "electra.encoder.layer", "electra.embeddings", "electra.embeddings.word_embeddings", **_BERT_LIKE
    ),
    "distilbert": Adapter(
        "distilbert",
        "distilbert.transformer.layer",
        "distilbert.embeddings",
        "distilbert.embeddings.word_embeddings",
        attention="attention",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        output="attention.out_lin",
        ln_attention="sa_layer_norm",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        ln_ffn="output_layer_norm",
        uses_token_type_ids=False,
    ),
    "llama": Adapter(
        "llama",
        "model.layers",
        "model.embed_tokens",
        "model.embed_tokens",
        attention="self_attn",
        query="self_attn.q_proj",
        key="self_attn.k_proj",
        value="self_attn.v_proj",
        output="self_attn.o_proj",
        ln_attention="input_layernorm",
        ffn_in="mlp.up_proj",
        ffn_out="mlp.down_proj",
        ln_ffn="post_attention_layernorm",
        pre_norm=True,
        uses_token_type_ids=False,
        pool_position=-1,
        final_norm="model.norm",
    ),
}


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)


def adapter_for(model_or_config) -> Adapter:
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UnsupportedModelError(
            f"attrtools cannot capture attention in model_type {model_type!r}; "
            f"supported: {', '.join(supported_model_types())}"
        )
    return ADAPTERS[model_type]


def get_module(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


def get_layers(model: nn.Module) -> nn.ModuleList:
    return get_module(model, adapter_for(model).layers)


def layer_module(model: nn.Module, layer: int, part: str) -> nn.Module:
    """``layer_module(model, 3, "value")``: the value projection of block 3 (adapter names)."""
    adapter = adapter_for(model)
    return get_module(get_layers(model)[layer], getattr(adapter, part))


def num_layers_heads(model: nn.Module) -> tuple[int, int]:
    layers = get_layers(model)
    attention = get_module(layers[0], adapter_for(model).attention)
    heads = getattr(attention, "num_attention_heads", None) or getattr(attention, "n_heads", None)
    if heads is None:
        heads = model.config.num_attention_heads
    return len(layers), int(heads)


def heads_per_layer(model: nn.Module) -> list[int]:
    """Current number of heads in each layer (differs between layers once a model is pruned)."""
    adapter = adapter_for(model)
    out = []
    for block in get_layers(model):
        attn = get_module(block, adapter.attention)
        head_dim = _head_dim(attn, model.config)
        out.append(get_module(block, adapter.query).out_features // head_dim)
    return out


def _head_dim(attention: nn.Module, config) -> int:
    for name in ("attention_head_size", "head_dim"):
        if hasattr(attention, name):
            return int(getattr(attention, name))
    return config.hidden_size // config.num_attention_heads


def pool_position(model: nn.Module) -> int:
    return adapter_for(model).pool_position


# ------------------------------------------------------------------------------------ fingerprint
_FINGERPRINTS: dict[int, tuple[tuple, str]] = {}


def fingerprint(model: nn.Module) -> str:
    """sha256 over the config and every parameter's bytes.

    Memoised on (data pointer, in-place version counter) of every parameter, so editing a weight
    in place or loading new weights changes the fingerprint without rehashing unchanged models.
    """
    params = list(model.state_dict(keep_vars=True).items())
    stamp = tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype)) for name, t in params)
    memo = _FINGERPRINTS.get(id(model))
    if memo is not None and memo[0] == stamp:
        return memo[1]
    digest = hashlib.sha256()
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "_attn_implementation_autoset", "dtype", "torch_dtype"):
        config.pop(volatile, None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in params:
        digest.update(name.encode())
        data = tensor.detach()
        if data.dtype == torch.bfloat16:
            data = data.float()
        digest.update(data.cpu().contiguous().numpy().tobytes())
    value = digest.hexdigest()
    _FINGERPRINTS[id(model)] = (stamp, value)
    return value


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
def load_pretrained(name_or_path: str, device=None, num_labels: int | None = None, dtype=None, **kwargs):
    """``(model, tokenizer)`` through the real ``from_pretrained`` (hub id or local folder), eval mode.

    The attention implementation is left to the caller (``attrtools.load_model`` selects the
    attrtools one). A pruned model saved by attrtools carries ``pruned_heads.json``; reload it
    with ``attrtools.load_pruned`` so the pruning is re-applied.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if os.path.isdir(name_or_path) and os.path.exists(os.path.join(name_or_path, "pruned_heads.json")) \
            and not kwargs.pop("_allow_pruned", False):
        raise ValueError(f"{name_or_path} holds a pruned model: load it with attrtools.load_pruned()")
    from .guard import check_device, check_model_folder, check_tokenizer, explain_load_error

    check_device(device)
    check_model_folder(name_or_path)  # config.json, tokenizer files, no custom code
    model_kwargs = dict(kwargs)
    model_kwargs["trust_remote_code"] = False  # never run a folder's Python (also no interactive prompt)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
        if num_labels is not None:
            model_kwargs["num_labels"] = num_labels
        if dtype is not None:
            model_kwargs["dtype"] = dtype
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **model_kwargs)
    except Exception as err:  # noqa: BLE001 - re-raised unless it is one we can say in a sentence
        reason = explain_load_error(err, name_or_path)
        if reason is None:
            raise
        raise ValueError(reason) from None
    adapter_for(model)  # fail early, naming the model type
    check_tokenizer(tokenizer, model.config, name_or_path)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def resolve_device(device=None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
