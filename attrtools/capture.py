"""The only module that touches attention.

transformers 5 removed ``head_mask`` and ``prune_heads``, and only eager attention returns
probabilities. attrtools registers its own attention function ("attrtools") with
``transformers.AttentionInterface`` **and** ``AttentionMaskInterface`` (without the latter the
padding and causal masks silently become ``None``). While no :class:`Capture` is active, or for a
layer the active capture does not touch, the function takes the fused SDPA path; otherwise it
computes the softmax itself and, per layer, can

- record the probabilities (optionally keeping them on the autograd graph),
- replace them by a given tensor (AttAttr: scaled attention, one row per (example, step): the
  inputs are repeated to that batch, and ``replay`` makes sure only the blocks from the target
  layer up are recomputed for those rows),
- multiply heads by a mask (head pruning by masking; a mask that requires grad gives the head-gate
  gradients of Michel et al. 2019),
- record per-head context vectors ``A_h V_h`` (Taylor importance).

:class:`Capture` can also *replay* the bottom of the network: the hidden states entering layer
``l`` are given, the embedding output is replaced by them and the blocks below ``l`` are skipped.
AttAttr uses this to run only layers ``l..L-1`` for its interpolation steps.

Every use is scoped by a context manager that removes what it installed, also on error.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from .models import adapter_for, get_layers, get_module

ATTN_IMPLEMENTATION = "attrtools"
_ACTIVE: contextvars.ContextVar["Capture | None"] = contextvars.ContextVar("attrtools_capture", default=None)
_REGISTERED = False


class CaptureNotInstalledError(RuntimeError):
    pass


def register() -> None:
    """Register the attrtools attention and mask functions with transformers (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, attrtools_attention)
    # A float additive mask serves both the eager branch and SDPA.
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)
    _REGISTERED = True


def install(model: nn.Module) -> nn.Module:
    """Select the attrtools attention function on ``model`` and tag each attention module with its
    layer index (DistilBERT's attention modules carry no ``layer_idx``)."""
    register()
    adapter = adapter_for(model)
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    for index, block in enumerate(get_layers(model)):
        get_module(block, adapter.attention)._attrtools_layer = index
    model._attrtools_installed = True
    return model


def is_installed(model: nn.Module) -> bool:
    return getattr(model, "_attrtools_installed", False) and \
        getattr(model.config, "_attn_implementation", None) == ATTN_IMPLEMENTATION


@dataclass
class Capture:
    """What to do with attention during the forward passes run inside ``with capture(...)``.

    Attributes filled during the forward:
      ``attentions[l]``: probabilities ``(B, H, n, n)`` of recorded layers (after override and mask);
      ``contexts[l]``: per-head context ``(B, H, n, d_h)`` of layers in ``record_context``;
      ``hidden_inputs[l]``: hidden states ``(B, n, d)`` entering block ``l`` (``record_hidden``);
      ``calls[l]``: how many times the attention function ran for layer ``l`` (proof it ran).
    """

    num_layers: int
    record: frozenset = frozenset()
    retain_grad: bool = False
    override: dict = field(default_factory=dict)
    head_mask: torch.Tensor | None = None
    record_context: frozenset = frozenset()
    record_hidden: bool = False
    attentions: dict = field(default_factory=dict)
    contexts: dict = field(default_factory=dict)
    hidden_inputs: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)

    def touches(self, layer: int) -> bool:
        return (layer in self.record or layer in self.override or layer in self.record_context
                or (self.head_mask is not None and layer < self.head_mask.shape[0]
                    and bool(self._mask_is_active(layer))))

    def _mask_is_active(self, layer: int) -> bool:
        row = self.head_mask[layer]
        return row.requires_grad or not bool(torch.all(row == 1))

    def attention_list(self) -> list[torch.Tensor]:
        missing = [l for l in range(self.num_layers) if l not in self.attentions]
        if missing:
            raise RuntimeError(f"attention of layers {missing} was not recorded: capture did not run there")
        return [self.attentions[l] for l in range(self.num_layers)]


def _layers_arg(value, num_layers: int) -> frozenset:
    if value is None or value is False:
        return frozenset()
    if value is True or value == "all":
        return frozenset(range(num_layers))
    if isinstance(value, int):
        return frozenset([value])
    return frozenset(int(v) for v in value)


@contextmanager
def capture(
    model: nn.Module,
    record: bool | str | int | Iterable[int] | None = None,
    retain_grad: bool = False,
    override: dict[int, torch.Tensor] | None = None,
    head_mask: torch.Tensor | None = None,
    record_context: bool | str | int | Iterable[int] | None = None,
    record_hidden: bool = False,
    replay: tuple[int, torch.Tensor] | None = None,
    replace: dict | None = None,
):
    """Scope one set of attention interventions over the forward passes run inside the block.

    ``replay=(l, h)``: the blocks below ``l`` are skipped and ``h`` (batch x n x d) enters block
    ``l``; the model must still be called with inputs of the same batch and length as ``h``.
    ``replace={l: fn}``: block ``l`` computes ``fn(hidden_states) -> hidden_states`` instead of its
    own forward (AttAttr's decomposed schedule: :class:`PostLNBlock` pieces).
    """
    if not is_installed(model):
        raise CaptureNotInstalledError(
            "this model does not use the attrtools attention function: load it with attrtools.load_model() "
            "or call attrtools.capture.install(model)"
        )
    layers = get_layers(model)
    num_layers = len(layers)
    state = Capture(
        num_layers=num_layers,
        record=_layers_arg(record, num_layers),
        retain_grad=retain_grad,
        override=dict(override or {}),
        head_mask=head_mask,
        record_context=_layers_arg(record_context, num_layers),
        record_hidden=record_hidden,
    )
    if head_mask is not None and head_mask.dim() != 2:
        raise ValueError(f"head_mask must be (layers, heads), got shape {tuple(head_mask.shape)}")
    handles = []
    patched: list[nn.Module] = []
    token = _ACTIVE.set(state)
    try:
        if record_hidden:
            for index, block in enumerate(layers):
                handles.append(block.register_forward_pre_hook(_hidden_recorder(state, index), with_kwargs=True))
        if replay is not None:
            start, hidden = replay
            if not 0 <= start < num_layers:
                raise ValueError(f"replay layer {start} out of range 0..{num_layers - 1}")
            # The embedding module returns the replayed states without computing anything.
            embeddings = get_module(model, adapter_for(model).embeddings)
            embeddings.forward = lambda *args, **kwargs: hidden
            patched.append(embeddings)
            for block in layers[:start]:
                # Instance attribute shadows the class forward: the block returns its input unchanged.
                block.forward = _passthrough
                patched.append(block)
        for index, fn in (replace or {}).items():
            block = layers[index]
            if block not in patched:
                block.forward = _replacement(fn)
                patched.append(block)
        yield state
    finally:
        _ACTIVE.reset(token)
        for handle in handles:
            handle.remove()
        for block in patched:
            del block.forward


def _passthrough(hidden_states, *args, **kwargs):
    return hidden_states


def _replacement(fn):
    def forward(hidden_states, *args, **kwargs):
        return fn(hidden_states)
    return forward


def _hidden_recorder(state: Capture, index: int):
    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        state.hidden_inputs[index] = hidden.detach()
    return hook


def active() -> Capture | None:
    return _ACTIVE.get()


# ----------------------------------------------------------------------------------- the function
def attrtools_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention function registered as "attrtools" (signature of transformers' attention interface).

    query ``(B, H, q, d_h)``, key/value ``(B, H_kv, k, d_h)``, additive float mask ``(B, 1, q, k)``
    or ``None``. Returns ``(context (B, q, H, d_h), probabilities or None)``.
    """
    state = _ACTIVE.get()
    layer = getattr(module, "_attrtools_layer", None)
    if state is not None and layer is not None:
        state.calls[layer] = state.calls.get(layer, 0) + 1
    if state is None or layer is None or not state.touches(layer):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)

    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5

    replacement = state.override.get(layer)
    if replacement is None:
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask[:, :, :, : key.shape[-2]]
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    else:
        probs = replacement.to(value.dtype)
        if probs.shape[0] != value.shape[0]:
            # transformers 5 reshapes the context with the *input's* batch right after this
            # function, so the official broadcast of a batch-m override over a batch-1 input cannot
            # work here. Give inputs of the override's batch; with `replay`, the blocks below the
            # layer are not recomputed, which is what the broadcast saved.
            raise ValueError(
                f"override for layer {layer} has batch {probs.shape[0]} but the input batch is {value.shape[0]}: "
                "repeat the inputs (and use replay=) instead")

    if state.head_mask is not None and layer < state.head_mask.shape[0]:
        probs = probs * state.head_mask[layer].to(probs.dtype).view(1, -1, 1, 1)

    if layer in state.record:
        if state.retain_grad and probs.requires_grad:
            probs.retain_grad()
        state.attentions[layer] = probs if state.retain_grad else probs.detach()

    context = torch.matmul(probs, value)
    if layer in state.record_context:
        if context.requires_grad:
            context.retain_grad()
        state.contexts[layer] = context
    return context.transpose(1, 2).contiguous(), probs


# ----------------------------------------------------------------------------- post-LN block pieces
class PostLNBlock:
    """One post-LN encoder block (BERT family, DistilBERT) taken apart, for AttAttr's decomposed
    schedule. With ``A`` the block's attention probabilities ``(B, H, n, n)`` and ``h`` its input
    ``(B, n, d)``::

        values(h)              V = h W_V^T + b_V, per head            (B, H, n, d_h)
        project(ctx)           ctx (B, H, n, d_h) -> ctx W_O^T, no bias (B, n, d)
        after_attention(u, h)  a = LN1(u + b_O + h);  LN2(W_2 act(W_1 a + b_1) + b_2 + a)
        pooled(h, mask, p)     the block's output at position p only   (B, 1, d)

    so ``after_attention(project(A @ values(h)), h)`` is the block's own output. Module names come
    from the adapter; the activation is the FFN's own module where it has one, else the config's.
    Callers must check the pieces against the model's forward (``AttAttr`` does, per batch, and
    falls back to full replay when they differ: a family with another block layout).
    """

    def __init__(self, model: nn.Module, layer: int):
        from .models import layer_module

        adapter = adapter_for(model)
        if adapter.pre_norm:
            raise ValueError(f"{adapter.model_type} blocks are pre-LN")
        part = lambda name: layer_module(model, layer, name)  # noqa: E731
        self.query, self.key, self.value = part("query"), part("key"), part("value")
        self.output, self.ln1 = part("output"), part("ln_attention")
        self.ffn_in, self.ffn_out, self.ln2 = part("ffn_in"), part("ffn_out"), part("ln_ffn")
        attention = part("attention")
        self.head_dim = int(getattr(attention, "attention_head_size", 0) or getattr(attention, "head_dim", 0)
                            or model.config.hidden_size // model.config.num_attention_heads)
        self.scaling = float(getattr(attention, "scaling", None) or self.head_dim ** -0.5)
        self.act = _ffn_activation(get_layers(model)[layer], adapter.ffn_in, model.config)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:2], -1, self.head_dim).transpose(1, 2)

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._heads(self.value(hidden))

    def project(self, context: torch.Tensor) -> torch.Tensor:
        flat = context.transpose(1, 2).reshape(context.shape[0], context.shape[2], -1)
        return torch.matmul(flat, self.output.weight.t())

    def after_attention(self, u: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        a = self.ln1(u + self.output.bias + hidden) if self.output.bias is not None else self.ln1(u + hidden)
        return self.ln2(self.ffn_out(self.act(self.ffn_in(a))) + a)

    def pooled(self, hidden: torch.Tensor, key_mask: torch.Tensor, position: int) -> torch.Tensor:
        """Output at ``position`` of a block whose input is ``hidden`` (B, n, d); ``key_mask`` (B, n)
        is 1 on real tokens. Only that row's query is formed; keys and values use every token."""
        row = hidden[:, position:position + 1]
        query = self._heads(self.query(row))
        key, value = self._heads(self.key(hidden)), self._heads(self.value(hidden))
        scores = torch.matmul(query, key.transpose(2, 3)) * self.scaling
        scores = scores.masked_fill(~key_mask.bool().view(key_mask.shape[0], 1, 1, -1), torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
        return self.after_attention(self.project(torch.matmul(probs, value)), row)


def _ffn_activation(block: nn.Module, ffn_in_path: str, config):
    parent = block
    for name in ffn_in_path.split(".")[:-1]:
        parent = getattr(parent, name)
    for name in ("intermediate_act_fn", "activation", "act_fn", "act"):
        fn = getattr(parent, name, None)
        if callable(fn):
            return fn
    from transformers.activations import get_activation

    return get_activation(getattr(config, "hidden_act", None) or getattr(config, "activation"))
