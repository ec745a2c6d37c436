"""The per-architecture adapter table: the single description of each family attrtools explains.

One :class:`Adapter` per ``model_type`` (module paths, fused-projection slices, norms, pooling, the
methods that do not apply); ``infer_adapter`` reads a candidate for an unknown family from the module
tree. This table (with ``architecture.py``, which answers queries from it) is the only place that
knows module *names* inside an architecture; a new family is one entry here. Nothing here knows how
attention is computed (``capture.py``) or loads a model (``models.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import UnsupportedModelError

@dataclass(frozen=True)
class Adapter:
    """Everything attrtools knows about one architecture family, in one place.

    Paths are attribute paths relative to the model root (``layers``, ``embeddings``,
    ``word_embeddings``, ``final_norm``, ``classifier_head``) or to one block (the rest).

    - ``query``/``key``/``value``/``output``: the projections. Families with one fused q/k/v
      projection (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``) name it in ``fused_qkv``; ``query``/``key``/
      ``value`` then name the same module and ``architecture.qkv_slices`` gives the output ranges of each.
    - ``conv1d``: the projections are transformers ``Conv1D`` (weight stored ``(in, out)``).
    - ``ln_attention``: post-LN: the LayerNorm after attention + residual; pre-LN: the norm before
      attention. ``pre_norm`` tells which.
    - ``pooling``: ``"first"`` (the classifier reads token 0: [CLS] / <s>) or ``"last_non_pad"``
      (decoder classifiers: the rightmost token whose id is not ``config.pad_token_id``, the model's
      own rule; see ``architecture.pool_positions``).
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

