"""Loading models and tokenizers, fingerprints, and the per-architecture adapter table.

The adapter table is the only place that knows module *names* inside each architecture; methods
and tools ask it for "layer l's value projection" rather than spelling ``bert.encoder...``.
Nothing here knows how attention is computed: that is ``capture.py``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn


from .errors import UnsupportedModelError, UsageError  # UnsupportedModelError: also the old import path


@dataclass(frozen=True)
class Adapter:
    """Everything attrtools knows about one architecture family, in one place.

    Paths are attribute paths relative to the model root (``layers``, ``embeddings``,
    ``word_embeddings``, ``final_norm``, ``classifier_head``) or to one block (the rest).

    - ``query``/``key``/``value``/``output``: the projections. Families with one fused q/k/v
      projection (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``) name it in ``fused_qkv``; ``query``/``key``/
      ``value`` then name the same module and :func:`qkv_slices` gives the output ranges of each.
    - ``conv1d``: the projections are transformers ``Conv1D`` (weight stored ``(in, out)``).
    - ``ln_attention``: post-LN: the LayerNorm after attention + residual; pre-LN: the norm before
      attention. ``pre_norm`` tells which.
    - ``pooling``: ``"first"`` (the classifier reads token 0: [CLS] / <s>) or ``"last_non_pad"``
      (decoder classifiers: the rightmost token whose id is not ``config.pad_token_id``, the model's
      own rule; see :func:`pool_positions`).
    - ``classifier_head``: the linear layers applied in order to the pooled vector (the relevance
      rules of Chefer LRP and DecompX walk them; decoder classifiers: the one ``score`` layer on the
      final norm, which ALTI-Logit reads); ``None`` where the head is not a chain of linears with
      element-wise non-linearities in between.
    - ``head_count_attrs``: attributes of the attention module that hold its head count, read at
      forward time and updated by physical pruning (``width_attrs``: the same times the head dim);
      ``config_head_count``: the family reads ``self.config.num_attention_heads`` in forward (Phi-3),
      so a pruned layer gets its own config view.
    - ``attention_out_norm`` / ``ffn_out_norm``: "sandwich" norms applied to the attention / FFN
      output before its residual add (Gemma 2/3 ``post_attention_layernorm`` /
      ``post_feedforward_layernorm``); ``ln_ffn`` is then the norm before the FFN. The pre-LN
      decompositions (ALTI, ALTI-Logit) take their linear part with the real scale per token.
    - ``refuses``: ``{method: reason}`` for methods that do not apply to this family (beyond the
      generic rules of each method, e.g. GlobEnc and DecompX need post-LN blocks).
    - ``tiny_config``: extra config values for the tiny test models of :mod:`attrtools.testing`
      (what makes the family realistic: grouped KV heads, soft-capping, ...); a callable value
      receives the hidden size.
    - ``shared_block``: families that run one block for several layers (ALBERT). ``layers`` then
      names the list of *shared groups*; ``shared_block`` is the path, inside a group, of the list of
      its blocks (exactly one block per group is supported); ``shared_rule(layer, L, G)`` is the
      group the family's own loop runs at ``layer``; ``layer_loop`` the module whose forward runs
      the loop (capture numbers the block calls from there: the layer index comes from the call).
    """

    model_type: str
    layers: str
    embeddings: str
    word_embeddings: str
    attention: str
    query: str
    key: str
    value: str
    output: str
    ln_attention: str
    ffn_in: str
    ffn_out: str
    ln_ffn: str
    pre_norm: bool = False
    uses_token_type_ids: bool = True
    pooling: str = "first"
    final_norm: str | None = None
    classifier_head: tuple | None = None
    attention_out_norm: str | None = None  # Gemma 2/3: norm of the attention output before the residual add
    ffn_out_norm: str | None = None  # Gemma 2/3: norm of the FFN output before the residual add
    fused_qkv: str | None = None
    conv1d: bool = False
    head_count_attrs: tuple = ("num_attention_heads", "n_heads", "num_heads")
    width_attrs: tuple = ("all_head_size",)
    fused_width_attrs: tuple = ()  # attributes equal to the query width (GPT-2 ``split_size``)
    config_head_count: bool = False
    empty_layer_patch: bool = False  # the attention module cannot run with 0 heads (capture patches it)
    probs_hook: str | None = None  # second capture mechanism: module applied to the probabilities
    #   right after the softmax, from a layer (families whose attention bypasses AttentionInterface)
    head_projections: tuple = ()  # further per-head projections sliced like the key (DeBERTa's pos_*_proj)
    head_input: tuple | None = None  # (keyword, position) of a per-head (B, H, n, n) input the model computes
    #   once for all layers (MPNet's position_bias); a pruned layer's attention keeps its own heads' slice
    block_returns_tuple: bool = False  # a block returns (hidden, attention) rather than hidden
    refuses: tuple = ()  # ((method, reason), ...); "prune_heads" names a family that cannot be pruned physically
    tiny_config: tuple = ()  # ((config key, value), ...)
    family: str = ""  # the family group shown in the README ("encoder", "decoder")
    shared_block: str | None = None  # ALBERT: blocks shared across layers (see above)
    shared_rule: object = None  # (layer, num_layers, num_groups) -> group index
    layer_loop: str | None = None  # the module whose forward calls the shared blocks in layer order

    @property
    def pool_position(self) -> int:
        """0 for first-token pooling, -1 (the last real token) for last-non-pad pooling."""
        return 0 if self.pooling == "first" else -1

    def refusal(self, method: str) -> str | None:
        return dict(self.refuses).get(method)


def _bert_like(model_type: str, prefix: str, head=("classifier.dense", "classifier.out_proj"), **kw) -> Adapter:
    return Adapter(
        model_type, f"{prefix}.encoder.layer", f"{prefix}.embeddings", f"{prefix}.embeddings.word_embeddings",
        attention="attention.self", query="attention.self.query", key="attention.self.key",
        value="attention.self.value", output="attention.output.dense", ln_attention="attention.output.LayerNorm",
        ffn_in="intermediate.dense", ffn_out="output.dense", ln_ffn="output.LayerNorm",
        classifier_head=head, family="encoder", **kw)


_DECODER_NORM_REASON = ("pre-LN decoder (RMSNorm, rotary positions, last-token pooling): the official relevance "
                        "rules cover post-LN encoders only and no published extension to pre-LN blocks exists; "
                        "alti (pre-LN ALTI) and alti_logit explain decoder classifiers")


def _llama_like(model_type: str, tiny=(), refuses=(), ln_ffn="post_attention_layernorm", **kw) -> Adapter:
    return Adapter(
        model_type, "model.layers", "model.embed_tokens", "model.embed_tokens",
        attention="self_attn", query="self_attn.q_proj", key="self_attn.k_proj", value="self_attn.v_proj",
        output="self_attn.o_proj", ln_attention="input_layernorm", ffn_in="mlp.up_proj", ffn_out="mlp.down_proj",
        ln_ffn=ln_ffn, pre_norm=True, uses_token_type_ids=False, pooling="last_non_pad",
        final_norm="model.norm", classifier_head=("score",), family="decoder",
        refuses=(("chefer_lrp", _DECODER_NORM_REASON),) + tuple(refuses),
        tiny_config=(("num_key_value_heads", 2),) + tuple(tiny), **kw)


_GEMMA_NORMS = dict(ln_ffn="pre_feedforward_layernorm", attention_out_norm="post_attention_layernorm",
                    ffn_out_norm="post_feedforward_layernorm")

ADAPTERS: dict[str, Adapter] = {
    "bert": _bert_like("bert", "bert", head=("bert.pooler.dense", "classifier")),
    "roberta": _bert_like("roberta", "roberta", tiny_config=(("type_vocab_size", 1),)),
    # XLM-R and CamemBERT are RoBERTa under another name (same modules, same head).
    "xlm-roberta": _bert_like("xlm-roberta", "roberta", tiny_config=(("type_vocab_size", 1),)),
    "camembert": _bert_like("camembert", "roberta", tiny_config=(("type_vocab_size", 1),)),
    "electra": _bert_like("electra", "electra", tiny_config=(("embedding_size", lambda hidden: hidden),)),
    "ernie": _bert_like("ernie", "ernie", head=("ernie.pooler.dense", "classifier")),
    "distilbert": Adapter(
        "distilbert", "distilbert.transformer.layer", "distilbert.embeddings", "distilbert.embeddings.word_embeddings",
        attention="attention", query="attention.q_lin", key="attention.k_lin", value="attention.v_lin",
        output="attention.out_lin", ln_attention="sa_layer_norm", ffn_in="ffn.lin1", ffn_out="ffn.lin2",
        ln_ffn="output_layer_norm", uses_token_type_ids=False, classifier_head=("pre_classifier", "classifier"),
        family="encoder", tiny_config=(("hidden_dim", lambda hidden: 2 * hidden), ("dropout", 0.0))),
    "llama": _llama_like("llama"),
    "mistral": _llama_like("mistral"),
    "qwen2": _llama_like("qwen2"),
    "qwen3": _llama_like("qwen3", tiny=(("head_dim", 8),)),  # q_norm/k_norm per head, explicit head_dim
    # Gemma 2: tanh soft-capping of the attention scores (capture's eager branch applies it),
    # alternating sliding-window / global layers (the window comes in through the mask interface);
    # Gemma 2/3 blocks are "sandwiched": RMSNorms on the attention and FFN outputs before each residual add.
    "gemma2": _llama_like("gemma2", tiny=(("head_dim", 8), ("sliding_window", 4), ("attn_logit_softcapping", 20.0),
                                          ("query_pre_attn_scalar", 8)), **_GEMMA_NORMS),
    "gemma3_text": _llama_like("gemma3_text", tiny=(("head_dim", 8), ("sliding_window", 4),
                                                    ("layer_types", ["sliding_attention", "full_attention"])),
                               **_GEMMA_NORMS),
    # Phi-3: one fused qkv_proj (q | k | v rows); its attention reads config.num_attention_heads at
    # forward time, so a pruned layer gets its own config view.
    "phi3": Adapter(
        "phi3", "model.layers", "model.embed_tokens", "model.embed_tokens",
        attention="self_attn", query="self_attn.qkv_proj", key="self_attn.qkv_proj", value="self_attn.qkv_proj",
        output="self_attn.o_proj", ln_attention="input_layernorm", ffn_in="mlp.gate_up_proj",
        ffn_out="mlp.down_proj", ln_ffn="post_attention_layernorm", pre_norm=True, uses_token_type_ids=False,
        pooling="last_non_pad", final_norm="model.norm", classifier_head=("score",), fused_qkv="self_attn.qkv_proj",
        config_head_count=True,
        refuses=(("chefer_lrp", _DECODER_NORM_REASON),), tiny_config=(("num_key_value_heads", 2),),
        family="decoder"),
    # ModernBERT: pre-LN encoder, fused Wqkv (q | k | v blocks), rotary positions, alternating local
    # (sliding-window, through the mask interface) and global layers; first-token ("cls") pooling
    # by default (``classifier_pooling="mean"`` has no single pooled token: see pool_positions).
    "modernbert": Adapter(
        "modernbert", "model.layers", "model.embeddings", "model.embeddings.tok_embeddings",
        attention="attn", query="attn.Wqkv", key="attn.Wqkv", value="attn.Wqkv", output="attn.Wo",
        ln_attention="attn_norm", ffn_in="mlp.Wi", ffn_out="mlp.Wo", ln_ffn="mlp_norm", pre_norm=True,
        uses_token_type_ids=False, final_norm="model.final_norm", fused_qkv="attn.Wqkv", empty_layer_patch=True,
        refuses=(("chefer_lrp", "pre-LN encoder with a LayerNorm inside its classification head: the official "
                                "relevance rules cover post-LN encoders only and no published extension to pre-LN "
                                "blocks exists; alti (pre-LN ALTI) explains this family"),),
        tiny_config=(("global_attn_every_n_layers", 2), ("local_attention", 4), ("cls_token_id", 2),
                     ("sep_token_id", 3), ("mlp_dropout", 0.0), ("embedding_dropout", 0.0)),
        family="encoder"),
    # DeBERTa-v2/v3: disentangled attention (content + relative-position terms) computed in its own
    # module, not through AttentionInterface: captured at its probability step (the dropout applied
    # right after the softmax), capture.py's second mechanism. Tiny config in the v3 style.
    "deberta-v2": Adapter(
        "deberta-v2", "deberta.encoder.layer", "deberta.embeddings", "deberta.embeddings.word_embeddings",
        attention="attention.self", query="attention.self.query_proj", key="attention.self.key_proj",
        value="attention.self.value_proj", output="attention.output.dense", ln_attention="attention.output.LayerNorm",
        ffn_in="intermediate.dense", ffn_out="output.dense", ln_ffn="output.LayerNorm", uses_token_type_ids=False,
        classifier_head=("pooler.dense", "classifier"), probs_hook="attention.self.dropout",
        head_projections=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
        block_returns_tuple=True, empty_layer_patch=True,
        refuses=(("chefer_lrp", "disentangled attention adds relative-position terms to the scores, which the "
                                "official relevance rules (Q·Kᵀ only) do not cover"),),
        tiny_config=(("relative_attention", True), ("pos_att_type", ["p2c", "c2p"]), ("share_att_key", True),
                     ("position_buckets", 8), ("max_relative_positions", -1), ("norm_rel_ebd", "layer_norm"),
                     ("type_vocab_size", 0)),
        family="encoder"),
    # ALBERT: one block per hidden group, run for every layer of its group (the layer index comes
    # from the call: capture numbers the block calls of each forward); the embeddings (width E) go
    # through ``embedding_hidden_mapping_in`` (E -> H), whose output is the state entering layer 0.
    # Post-LN blocks whose attention module holds W_O and LN1 (``attention.dense``/``LayerNorm``).
    "albert": Adapter(
        "albert", "albert.encoder.albert_layer_groups", "albert.encoder.embedding_hidden_mapping_in",
        "albert.embeddings.word_embeddings", attention="attention", query="attention.query", key="attention.key",
        value="attention.value", output="attention.dense", ln_attention="attention.LayerNorm", ffn_in="ffn",
        ffn_out="ffn_output", ln_ffn="full_layer_layer_norm", classifier_head=("albert.pooler", "classifier"),
        shared_block="albert_layers", shared_rule=lambda layer, layers, groups: int(layer / (layers / groups)),
        layer_loop="albert.encoder", tiny_config=(("embedding_size", lambda hidden: hidden // 2),),
        family="encoder"),
    # MPNet: relative position bias added to the scores inside its own attention module (not through
    # AttentionInterface): captured at its probability step like DeBERTa.
    "mpnet": Adapter(
        "mpnet", "mpnet.encoder.layer", "mpnet.embeddings", "mpnet.embeddings.word_embeddings",
        attention="attention.attn", query="attention.attn.q", key="attention.attn.k", value="attention.attn.v",
        output="attention.attn.o", ln_attention="attention.LayerNorm", ffn_in="intermediate.dense",
        ffn_out="output.dense", ln_ffn="output.LayerNorm", uses_token_type_ids=False,
        classifier_head=("classifier.dense", "classifier.out_proj"), probs_hook="attention.attn.dropout",
        block_returns_tuple=True, empty_layer_patch=True, head_input=("position_bias", 2),
        refuses=(("chefer_lrp", "the relative position bias added to the scores has no rule in the official "
                                "relevance propagation (Q·Kᵀ only)"),),
        family="encoder"),
    # GPT-2: Conv1D projections (weight stored (in, out)), fused c_attn split at ``split_size``; the
    # hidden state entering block 0 is the output of ``transformer.drop`` (token + position embeddings).
    "gpt2": Adapter(
        "gpt2", "transformer.h", "transformer.drop", "transformer.wte",
        attention="attn", query="attn.c_attn", key="attn.c_attn", value="attn.c_attn", output="attn.c_proj",
        ln_attention="ln_1", ffn_in="mlp.c_fc", ffn_out="mlp.c_proj", ln_ffn="ln_2", pre_norm=True,
        uses_token_type_ids=False, pooling="last_non_pad", final_norm="transformer.ln_f", classifier_head=("score",),
        fused_qkv="attn.c_attn",
        conv1d=True, fused_width_attrs=("split_size",), refuses=(("chefer_lrp", _DECODER_NORM_REASON),),
        empty_layer_patch=True,
        family="decoder"),
}


def supported_model_types() -> list[str]:
    return sorted(t for t, a in ADAPTERS.items() if not a.family.startswith("inferred"))


def adapter_for(model_or_config) -> Adapter:
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UnsupportedModelError(
            f"attrtools cannot capture attention in model_type {model_type!r}; "
            f"supported: {', '.join(supported_model_types())}"
        )
    return ADAPTERS[model_type]


# ------------------------------------------------------------------------------------ unknown families
# Names under which the common ("Llama-like" or "BERT-like") blocks keep their projections.
_SEPARATE_QKVO = (("q_proj", "k_proj", "v_proj", "o_proj"), ("query", "key", "value", "dense"),
                  ("q", "k", "v", "o"), ("q_lin", "k_lin", "v_lin", "out_lin"))
_FUSED_QKV = (("qkv_proj", "o_proj"), ("Wqkv", "Wo"), ("query_key_value", "dense"))
_PRE_NORM_NAMES = ("input_layernorm", "ln_1", "attn_norm", "norm1")
_POST_ATTN_NORM = ("post_attention_layernorm", "ln_2", "mlp_norm", "norm2")
_FFN = (("mlp.up_proj", "mlp.down_proj"), ("mlp.c_fc", "mlp.c_proj"), ("mlp.fc1", "mlp.fc2"),
        ("mlp.gate_up_proj", "mlp.down_proj"), ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"))


def infer_adapter(model: nn.Module) -> Adapter:
    """A candidate adapter for a ``model_type`` not in the table, read from the module tree:
    the block list (a ModuleList of ``num_hidden_layers`` blocks), the attention module holding
    separate or fused q/k/v/o projections under the usual names, the input embeddings, pre-LN
    norms, and last-non-pad pooling for transformers' generic decoder classifiers.

    Structural only: ``capture.install`` accepts it after a self-check on the real model (capture
    ran in every layer; probabilities and logits equal the eager forward). Norm-based decompositions
    and Chefer LRP are refused on inferred adapters. Raises :class:`UnsupportedModelError` naming
    what was not found."""
    config = model.config
    model_type = getattr(config, "model_type", None)
    supported = ", ".join(supported_model_types())

    def refuse(missing: str):
        return UnsupportedModelError(
            f"attrtools cannot capture attention in model_type {model_type!r}: not in its adapter table, and "
            f"{missing}; supported: {supported}")

    num_layers = getattr(config, "num_hidden_layers", None)
    if getattr(config, "num_hidden_groups", None) is not None:
        raise refuse("it shares one block's weights across layers (ALBERT-style): the layer index comes from "
                     "the call, which needs the family's loop described in the adapter table (as for albert)")
    names = dict(model.named_modules())
    lists = [n for n, m in names.items() if isinstance(m, nn.ModuleList) and len(m) == num_layers and n]
    if not lists:
        raise refuse(f"no list of {num_layers} blocks was found")
    layers = min(lists, key=lambda n: n.count("."))
    block = names[layers][0]
    block_modules = dict(block.named_modules())
    found = None
    for path, module in block_modules.items():
        children = dict(module.named_children())
        for q, k, v, o in _SEPARATE_QKVO:
            if all(isinstance(children.get(x), nn.Linear) for x in (q, k, v, o)):
                found = (path, f"{path}.{q}", f"{path}.{k}", f"{path}.{v}", f"{path}.{o}", None)
                break
        if found is None and all(isinstance(children.get(x), nn.Linear) for x in ("query", "key", "value")) \
                and "." in path and isinstance(block_modules.get(path.rsplit(".", 1)[0] + ".output.dense"), nn.Linear):
            # BERT-like: W_O is the sibling ``output.dense`` of the self-attention module
            found = (path, f"{path}.query", f"{path}.key", f"{path}.value", path.rsplit(".", 1)[0] + ".output.dense",
                     None)
        for qkv, o in _FUSED_QKV:
            if found is None and all(isinstance(children.get(x), nn.Linear) for x in (qkv, o)):
                found = (path, f"{path}.{qkv}", f"{path}.{qkv}", f"{path}.{qkv}", f"{path}.{o}", f"{path}.{qkv}")
        if found:
            break
    if found is None or not found[0]:
        raise refuse("no attention module with q/k/v/o (or fused qkv/o) projections under the usual names was found "
                     f"in {layers}.0")
    attention, query, key, value, output, fused = found
    embeddings = model.get_input_embeddings()
    embedding_path = next((n for n, m in names.items() if m is embeddings), None)
    if embedding_path is None:
        raise refuse("the input embeddings were not found")
    pre = next((n for n in _PRE_NORM_NAMES if n in block_modules), None)
    post = next((n for n in _POST_ATTN_NORM if n in block_modules), None)
    ffn = next(((a, b) for a, b in _FFN if a in block_modules and b in block_modules), None)
    decoder = hasattr(model, "score") and not hasattr(model, "classifier")
    reason = "inferred adapter (a family attrtools has no relevance rules for)"
    return Adapter(
        model_type, layers, embedding_path, embedding_path, attention=attention, query=query, key=key, value=value,
        output=output, ln_attention=pre or post or output, ffn_in=(ffn or (output, output))[0],
        ffn_out=(ffn or (output, output))[1], ln_ffn=post or output, pre_norm=True,
        uses_token_type_ids=False, pooling="last_non_pad" if decoder else "first", fused_qkv=fused,
        refuses=tuple((m, reason) for m in ("chefer_lrp", "globenc", "alti", "alti_logit", "decompx")),
        family="inferred (decoder)" if decoder else "inferred (encoder)")


def register_adapter(adapter: Adapter) -> None:
    """Add an adapter (e.g. an inferred one that passed ``capture``'s self-check) to the table."""
    ADAPTERS[adapter.model_type] = adapter


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
from .errors import OneOutputError  # noqa: E402,F401  (defined in errors.py; importable from here as before)


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
