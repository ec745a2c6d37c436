"""Architecture queries answered from the adapter table: layers and blocks, heads (pruned or not,
grouped KV), projections (fused slices, ``Conv1D`` transposed), the pooled position, the number of
classes.

Methods, capture and the tools ask here for "layer l's value projection" rather than spelling
``bert.encoder...``; the names come from ``adapters.py``.
"""
from __future__ import annotations

import torch
from torch import nn

from .adapters import adapter_for
from .errors import OneOutputError, UnsupportedModelError

def get_module(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


def get_layers(model: nn.Module):
    """The block run at each layer, indexable by layer (``len`` = number of layers). A ModuleList,
    or for families sharing blocks across layers (ALBERT) a list in which one block appears at
    every layer of its group (see :func:`tied_layers`)."""
    adapter = adapter_for(model)
    if adapter.shared_block is None:
        return get_module(model, adapter.layers)
    groups = get_module(model, adapter.layers)
    blocks = [get_module(group, adapter.shared_block) for group in groups]
    if any(len(inner) != 1 for inner in blocks):
        raise UnsupportedModelError(
            f"model_type {adapter.model_type!r} with {max(len(inner) for inner in blocks)} blocks per shared group "
            "(inner_group_num > 1) is not supported: attrtools numbers one block call per layer")
    count = int(model.config.num_hidden_layers)
    return [blocks[adapter.shared_rule(layer, count, len(groups))][0] for layer in range(count)]


def tied_layers(model: nn.Module) -> list[list[int]]:
    """Layers that run one and the same block, as sorted lists in layer order: ``[[0], [1], ...]``
    for every family but ALBERT, whose hidden groups each share one block across their layers
    (pruning a head of such a block removes it in every layer of the list)."""
    groups: dict[int, list[int]] = {}
    for layer, block in enumerate(get_layers(model)):
        groups.setdefault(id(block), []).append(layer)
    return sorted(groups.values())


def layer_module(model: nn.Module, layer: int, part: str) -> nn.Module:
    """``layer_module(model, 3, "value")``: the value projection of block 3 (adapter names)."""
    adapter = adapter_for(model)
    return get_module(get_layers(model)[layer], getattr(adapter, part))


def attention_module(model: nn.Module, layer: int) -> nn.Module:
    return layer_module(model, layer, "attention")


# ------------------------------------------------------------------------------------ heads
def original_heads(model_or_config) -> int:
    """Query heads per layer of the unpruned architecture (from the config)."""
    config = getattr(model_or_config, "config", model_or_config)
    return int(config.num_attention_heads)


def config_head_count(config) -> int | None:
    """``L × H`` heads of the unpruned architecture read from a config alone (``num_hidden_layers`` ×
    ``num_attention_heads``), so that a head count can be checked before the weights load; None
    when the config does not say (the loaded model's ``num_layers_heads`` decides then)."""
    config = getattr(config, "config", config)
    try:
        return int(config.num_hidden_layers) * original_heads(config)
    except (AttributeError, TypeError, ValueError):
        return None


def kv_heads(model_or_config) -> int:
    """Key/value heads per layer of the unpruned architecture (= query heads without GQA)."""
    config = getattr(model_or_config, "config", model_or_config)
    return int(getattr(config, "num_key_value_heads", None) or original_heads(config))


def kv_group_size(model_or_config) -> int:
    """How many query heads share one key/value head (1 without GQA)."""
    return original_heads(model_or_config) // kv_heads(model_or_config)


def head_dim(model_or_config) -> int:
    """Dimension of one head (the config's ``head_dim`` where the family has one, else hidden / heads)."""
    config = getattr(model_or_config, "config", model_or_config)
    explicit = getattr(config, "head_dim", None)
    if explicit:
        return int(explicit)
    return int(config.hidden_size) // original_heads(config)


def pruned_heads(model: nn.Module) -> dict[int, list[int]]:
    """``{layer: [original head indices removed]}`` of a physically pruned model (empty if unpruned)."""
    return {int(l): sorted(h) for l, h in getattr(model, "_attrtools_pruned_heads", {}).items() if h}


def kept_heads(model: nn.Module, layer: int) -> list[int]:
    """Original indices of the heads still present in ``layer``, in their physical order."""
    gone = set(pruned_heads(model).get(int(layer), ()))
    return [h for h in range(original_heads(model)) if h not in gone]


def heads_per_layer(model: nn.Module) -> list[int]:
    """Current number of query heads in each layer (differs between layers once a model is pruned)."""
    return [len(kept_heads(model, l)) for l in range(len(get_layers(model)))]


def num_layers_heads(model: nn.Module) -> tuple[int, int]:
    """``(L, H)``: layers and heads per layer of the *original* architecture. Per-head tables and
    matrices of a pruned model keep this numbering (pruned heads read 0; see ``pruned_heads``)."""
    return len(get_layers(model)), original_heads(model)


def select_kept(model: nn.Module, layer: int, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The heads of ``tensor`` (original numbering along ``dim``) still present in ``layer``."""
    gone = pruned_heads(model).get(int(layer))
    if not gone:
        return tensor
    index = torch.tensor(kept_heads(model, layer), dtype=torch.long, device=tensor.device)
    return tensor.index_select(dim, index)


def expand_kept(model: nn.Module, layer: int, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Inverse of :func:`select_kept`: physical heads back at their original indices, 0 for pruned ones."""
    gone = pruned_heads(model).get(int(layer))
    if not gone:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = original_heads(model)
    index = torch.tensor(kept_heads(model, layer), dtype=torch.long, device=tensor.device)
    return tensor.new_zeros(shape).index_copy(dim, index, tensor)


def qkv_slices(model: nn.Module, layer: int) -> dict[str, slice]:
    """Output ranges of q, k and v in a fused projection of ``layer`` (current, possibly pruned, sizes)."""
    d = head_dim(model)
    q = heads_per_layer(model)[layer] * d
    kv = q // kv_group_size(model)
    return {"query": slice(0, q), "key": slice(q, q + kv), "value": slice(q + kv, q + 2 * kv)}


def projection(model: nn.Module, layer: int, part: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight (out, in), bias or None)`` of ``part`` ("query", "key", "value", "output") of a
    block in ``nn.Linear`` layout, fused projections sliced and ``Conv1D`` transposed (views)."""
    adapter = adapter_for(model)
    module = layer_module(model, layer, part)
    weight = module.weight.t() if adapter.conv1d else module.weight
    bias = module.bias
    if adapter.fused_qkv and part in ("query", "key", "value"):
        rows = qkv_slices(model, layer)[part]
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    return weight, bias


# ------------------------------------------------------------------------------------ pooling
def pool_position(model: nn.Module) -> int:
    return adapter_for(model).pool_position


class PoolingError(UnsupportedModelError):
    """A model that cannot pad a batch (a pad id outside its embedding table) or, for a decoder
    classifier, cannot tell which token it reads (no pad token, or another one than it looks for)."""


def check_pooling(model: nn.Module, tokenizer=None) -> None:
    """Decoder classifiers read the last non-pad token, found through ``config.pad_token_id``; without
    one (and a batch of more than one) the model cannot find it. Refuse that clearly (and a model pad
    id outside the embedding table). A tokenizer that pads with another id, or has no pad token, is
    accepted: batches are padded with the model's id (``batch_pad_id``), so the model reads the token
    it reads alone. ``Engine`` calls it, so every tool refuses such a model before computing.
    Any model: a tokenizer whose pad id is outside the embedding table (transformers may add a pad
    token to a decoder's tokenizer without a row for it) is refused too, since every padded batch
    would index past the table.
    Raises ``PoolingError`` (an ``UnsupportedModelError``) saying what to set."""
    pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if pad_id is not None and rows is not None and not 0 <= pad_id < rows:
        raise PoolingError(
            f"the tokenizer pads with id {pad_id} ({tokenizer.pad_token!r}), outside the model's embedding table "
            f"of {rows} tokens, so every padded batch would fail: set tokenizer.pad_token to a token of the "
            "vocabulary (for a decoder, e.g. its eos token) and model.config.pad_token_id to its id")
    adapter = adapter_for(model)
    if adapter.pooling != "last_non_pad":
        return
    pad = _model_pad_id(model)
    if pad is None:
        raise PoolingError(
            f"model_type {adapter.model_type!r} classifies the last non-pad token and finds it through "
            "config.pad_token_id, which is not set (nor does the tokenizer have a pad token): set "
            "tokenizer.pad_token (e.g. to its eos token) and model.config.pad_token_id to its id")
    if rows is not None and not 0 <= pad < rows:
        raise PoolingError(f"config.pad_token_id {pad} is outside the model's embedding table of {rows} tokens: "
                           "set it to the id of a token of the vocabulary (e.g. the eos token)")
    # A tokenizer padding with another id (or none) is fine: batches of a last-non-pad classifier are
    # padded with the model's own pad id (batch_pad_id), so the model reads the token it would read alone.


def _model_pad_id(model):
    config = model.config
    return (config.get_text_config() if hasattr(config, "get_text_config") else config).pad_token_id


def batch_pad_id(model: nn.Module, tokenizer) -> int | None:
    """The id a batch is padded with: for a decoder classifier (last-non-pad pooling) the model's own
    ``config.pad_token_id``, whatever the tokenizer pads with (a pad the model does not recognise
    would be read as the last token); for other models the tokenizer's pad id."""
    if adapter_for(model).pooling == "last_non_pad" and _model_pad_id(model) is not None:
        return _model_pad_id(model)
    return getattr(tokenizer, "pad_token_id", None)


def pool_positions(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """``(B,)`` position of the token the classifier reads, by the model's own rule: 0, or the
    rightmost token whose id is not ``config.pad_token_id`` (transformers' decoder classifiers).

    The decoder rule is transformers 5's own (``GenericForSequenceClassification.forward`` in
    ``transformers/modeling_layers.py``, ``GPT2ForSequenceClassification``): ``(arange(n) *
    (input_ids != pad)).argmax(-1)`` with ``pad = config.get_text_config().pad_token_id``. So when the
    pad token is also a token of the text (``tokenizer.pad_token = tokenizer.eos_token`` and an EOS at
    the end), the model reads the token *before* those trailing EOS/pad ids, not the last token; left
    and right padding give the same real token. This is the one rule: the engine (each
    ``Attribution.pool_position``) and the methods (``methods.shared.pool_rows``) call it."""
    adapter = adapter_for(model)
    batch, length = input_ids.shape
    if getattr(model.config, "classifier_pooling", "cls") == "mean":
        raise PoolingError(f"this {adapter.model_type} classifier averages every token (classifier_pooling='mean'): "
                           "there is no single pooled token")
    if adapter.pooling == "first":
        return torch.zeros(batch, dtype=torch.long, device=input_ids.device)
    pad = _model_pad_id(model)
    if pad is None:
        if batch != 1:
            check_pooling(model)
        return torch.full((batch,), length - 1, dtype=torch.long, device=input_ids.device)
    positions = torch.arange(length, device=input_ids.device)
    return ((input_ids != pad).long() * positions).argmax(-1)


def pool_index(model: nn.Module, input_ids) -> int:
    """The position the classifier reads in one unpadded sequence of ids (:func:`pool_positions`)."""
    ids = torch.as_tensor(list(input_ids), dtype=torch.long).view(1, -1)
    return int(pool_positions(model, ids)[0])


def method_refusal(model: nn.Module, method: str) -> str | None:
    """Why ``method`` does not apply to this family, or None (the adapter's ``refuses``)."""
    return adapter_for(model).refusal(method)


# ------------------------------------------------------------------------------------ outputs


def require_classes(model, what: str) -> int:
    """The number of classes; raises ``OneOutputError`` naming ``what`` for a one-output model
    (a regressor or a single-logit scorer: its softmax is constantly 1, so probabilities,
    accuracies and probability drops would all be meaningless constants)."""
    count = int(getattr(model.config, "num_labels", 0) or 0)
    if count < 2:
        raise OneOutputError(f"{what} needs class probabilities, but this model has a single output "
                             f"(num_labels={count}); attribute its raw output with a logit target instead "
                             f"(e.g. attrtools attribute --method grad_input, or --param target_kind=logit)")
    return count
