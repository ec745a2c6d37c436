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
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from .adapters import ADAPTERS, adapter_for, infer_adapter, register_adapter, supported_model_types
from .architecture import get_layers, get_module, kept_heads, original_heads, pruned_heads
from .errors import CaptureError, UnsupportedModelError

ATTN_IMPLEMENTATION = "attrtools"
_ACTIVE: contextvars.ContextVar["Capture | None"] = contextvars.ContextVar("attrtools_capture", default=None)
_REGISTERED = False


class CaptureNotInstalledError(CaptureError):
    """A capture context was used on a model whose attention does not go through attrtools."""


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
    try:
        adapter = adapter_for(model)
    except UnsupportedModelError:
        adapter = _accept_inferred(model)
    if adapter.probs_hook is None:
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
    else:  # second mechanism: the family computes attention itself; hook its probability step
        model.set_attn_implementation("eager")
        for index, block in enumerate(get_layers(model)):
            step = get_module(block, adapter.probs_hook)
            step._attrtools_layer = index
            if not getattr(step, "_attrtools_hooked", False):
                step.register_forward_hook(_probability_hook)
                step._attrtools_hooked = True
    for index, block in enumerate(get_layers(model)):
        get_module(block, adapter.attention)._attrtools_layer = index
    if adapter.shared_block is not None:
        _install_call_numbering(model, adapter)
    model._attrtools_installed = True
    return model


def _install_call_numbering(model: nn.Module, adapter) -> None:
    """Families that run one block for several layers (ALBERT): the layer of a block call is its
    position among the block calls of the current forward of ``adapter.layer_loop`` (a pre-hook
    there resets the count; a pre-hook on each shared block takes the next number, stores it as
    ``block._attrtools_current`` and on the block's attention module as ``_attrtools_layer``, which
    the attention function reads). Plain hook functions and a shared counter list stored as
    attributes, so a deep copy of the model numbers its own calls. Idempotent."""
    loop = get_module(model, adapter.layer_loop)
    if getattr(loop, "_attrtools_calls", None) is not None:
        return
    counter = [0]
    loop._attrtools_calls = counter
    loop.register_forward_pre_hook(_reset_calls)
    seen = set()
    for block in get_layers(model):
        if id(block) in seen:
            continue
        seen.add(id(block))
        block._attrtools_calls = counter
        block._attrtools_attention_path = adapter.attention
        block.register_forward_pre_hook(_number_call)


def _reset_calls(module, args):
    module._attrtools_calls[0] = 0


def _number_call(block, args):
    counter = block._attrtools_calls
    layer = counter[0]
    counter[0] += 1
    block._attrtools_current = layer
    get_module(block, block._attrtools_attention_path)._attrtools_layer = layer


def _call_layer(block: nn.Module, fixed: int | None) -> int | None:
    """Layer of the running call of ``block``: ``fixed`` for a block that runs one layer, else the
    number given by the call (shared blocks)."""
    return fixed if fixed is not None else getattr(block, "_attrtools_current", None)


def _distinct_blocks(layers) -> list[tuple[nn.Module, list[int]]]:
    """``[(block, [layers it runs])]`` in order of first use."""
    out: dict[int, tuple[nn.Module, list[int]]] = {}
    for index, block in enumerate(layers):
        out.setdefault(id(block), (block, []))[1].append(index)
    return list(out.values())


def layer_hook(model: nn.Module, layer: int, part: str | None, hook, pre: bool = False):
    """Register ``hook`` (a forward hook, or a forward pre-hook with ``pre``) on module ``part``
    (adapter name, e.g. "value"; None: the block itself) of ``layer``'s block, firing only for
    ``layer``'s call: for families that share one block across layers (ALBERT) the module runs at
    every layer of its group, and the call's layer comes from capture's numbering (the model must
    be installed). Returns the hook handle (``handle.remove()``)."""
    layers = get_layers(model)
    block = layers[layer]
    module = block if part is None else get_module(block, getattr(adapter_for(model), part))
    if sum(1 for other in layers if other is block) > 1:
        inner = hook

        def hook(mod, *args):
            if getattr(block, "_attrtools_current", None) == layer:
                return inner(mod, *args)
            return None
    return module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)


class BlockRecorder:
    """Forward hooks recording what enters and leaves named parts of every block, for the methods
    that decompose a block from its real activations (GlobEnc, Chefer LRP, ALTI, ALTI-Logit, DecompX).

    ``parts``: ``{adapter part: "in" | "out" | "both"}`` (``"value"``, ``"ln_attention"``, ``"ffn_out"``,
    ...), hooked in every layer through :func:`layer_hook` (so a block shared across layers, ALBERT,
    records each layer's own call). ``modules``: ``{key: (module, "in" | "out" | "both")}`` further
    modules outside the blocks (the classifier head's linears). After the forward, ``inputs[key]`` holds
    the first positional input and ``outputs[key]`` the output (detached), with ``key = (layer, part)``
    for parts and the given key for modules. Use as a context manager around the forward; the hooks
    are removed on leaving, also on error. Nothing is recorded for a part whose hook did not run:
    callers check what they need (see ``missing``)."""

    def __init__(self, model: nn.Module, parts: dict, modules: dict | None = None):
        self.model, self.parts, self.modules = model, dict(parts), dict(modules or {})
        self.inputs: dict = {}
        self.outputs: dict = {}
        self._handles: list = []

    def _keeper(self, key, want: str):
        if want not in ("in", "out", "both"):
            raise ValueError(f"want must be 'in', 'out' or 'both', got {want!r}")

        def hook(module, args, output):
            if want != "out":
                self.inputs[key] = args[0].detach()
            if want != "in":
                self.outputs[key] = output.detach()
        return hook

    def __enter__(self):
        try:
            for layer in range(len(get_layers(self.model))):
                for part, want in self.parts.items():
                    self._handles.append(layer_hook(self.model, layer, part, self._keeper((layer, part), want)))
            for key, (module, want) in self.modules.items():
                self._handles.append(module.register_forward_hook(self._keeper(key, want)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False

    def missing(self, layers: int) -> list:
        """``(layer, part)`` keys asked for but not recorded in the first ``layers`` layers."""
        out = []
        for layer in range(layers):
            for part, want in self.parts.items():
                if (want != "out" and (layer, part) not in self.inputs) or \
                        (want != "in" and (layer, part) not in self.outputs):
                    out.append((layer, part))
        return out


def _accept_inferred(model: nn.Module):
    """An unknown family built the common way: infer its adapter (``adapters.infer_adapter``), then
    accept it only if, on this very model, capture runs exactly once in every layer and the
    recorded probabilities and the logits equal the eager forward (same rule as the family tests).
    Otherwise refuse, naming the model type and what failed."""
    import copy

    adapter = infer_adapter(model)
    register_adapter(adapter)
    try:
        _self_check(model, adapter, copy)
    except Exception as err:
        ADAPTERS.pop(adapter.model_type, None)
        raise UnsupportedModelError(
            f"attrtools cannot capture attention in model_type {adapter.model_type!r}: an adapter was inferred "
            f"({adapter.layers}, {adapter.attention}) but its self-check failed: {err}; supported: "
            f"{', '.join(supported_model_types())}") from None
    return adapter


def _self_check(model, adapter, copy) -> None:
    config = model.config
    vocab = int(getattr(config, "vocab_size", 8) or 8)
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    ids = torch.randint(0, vocab, (2, 7), generator=generator).to(device)
    pad = config.pad_token_id
    if pad is not None:
        ids[ids == pad] = (pad + 1) % vocab
        ids[1, 5:] = pad
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0 if pad is not None else 1
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    not_interface = "attention does not go through transformers' AttentionInterface"
    try:
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
    except (ValueError, NotImplementedError) as err:
        raise ValueError(f"the model refuses a registered attention function ({not_interface}: {err})") from None
    if getattr(model.config, "_attn_implementation", None) != ATTN_IMPLEMENTATION:
        raise ValueError(f"the model did not select the registered attention function ({not_interface})")
    for index, block in enumerate(get_layers(model)):
        get_module(block, adapter.attention)._attrtools_layer = index
    model._attrtools_installed = True
    with torch.no_grad():
        reference = eager(input_ids=ids, attention_mask=mask, output_attentions=True)
        with capture(model, record="all") as cap:
            ours = model(input_ids=ids, attention_mask=mask).logits
    layers = len(get_layers(model))
    if sorted(cap.calls) != list(range(layers)) or any(c != 1 for c in cap.calls.values()):
        raise ValueError(f"the attention function ran in layers {sorted(cap.calls)} of 0..{layers - 1} "
                         f"({not_interface})")
    attentions = reference.attentions
    if attentions is None or len(attentions) != layers or any(a is None for a in attentions):
        raise ValueError("the eager forward returns no attention probabilities to compare with")
    for l in range(layers):
        if not torch.allclose(cap.attentions[l], attentions[l], rtol=1e-4, atol=1e-5):
            raise ValueError(f"recorded probabilities of layer {l} differ from eager attention")
    if not torch.allclose(ours, reference.logits, rtol=1e-4, atol=1e-5):
        raise ValueError("logits under capture differ from the eager forward")


def is_installed(model: nn.Module) -> bool:
    if not getattr(model, "_attrtools_installed", False):
        return False
    if adapter_for(model).probs_hook is not None:
        return True
    return getattr(model.config, "_attn_implementation", None) == ATTN_IMPLEMENTATION


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
    kept: dict = field(default_factory=dict)  # {layer: LongTensor of original head indices} of pruned layers
    num_heads: int = 0  # heads per layer of the original architecture

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
        num_heads=original_heads(model),
    )
    # A physically pruned model keeps the original head numbering at this interface: recorded
    # probabilities and contexts are (B, H, ...) with zeros for pruned heads, and override / head_mask
    # are given in that numbering (pruned heads' entries are ignored). Hence a pruned model records
    # exactly what the unpruned model records with those heads masked.
    for layer in pruned_heads(model):
        state.kept[layer] = torch.tensor(kept_heads(model, layer), dtype=torch.long)
    if head_mask is not None and head_mask.dim() != 2:
        raise ValueError(f"head_mask must be (layers, heads), got shape {tuple(head_mask.shape)}")
    handles = []
    patched: list[nn.Module] = []
    token = _ACTIVE.set(state)
    try:
        blocks = _distinct_blocks(layers)  # a shared block (ALBERT) runs several layers
        if record_hidden:
            for block, indices in blocks:
                fixed = indices[0] if len(indices) == 1 else None
                handles.append(block.register_forward_pre_hook(_hidden_recorder(state, fixed), with_kwargs=True))
        actions: dict[int, object] = {}  # layer -> what its block computes instead of its forward
        if replay is not None:
            start, hidden = replay
            if not 0 <= start < num_layers:
                raise ValueError(f"replay layer {start} out of range 0..{num_layers - 1}")
            # The embedding module returns the replayed states without computing anything.
            embeddings = get_module(model, adapter_for(model).embeddings)
            embeddings.forward = lambda *args, **kwargs: hidden
            patched.append(embeddings)
            passthrough = _passthrough_tuple if adapter_for(model).block_returns_tuple else _passthrough
            # the blocks below ``start`` return their input unchanged
            actions.update({index: passthrough for index in range(start)})
        for index, fn in (replace or {}).items():
            actions.setdefault(int(index), _replacement(fn, adapter_for(model).block_returns_tuple))
        for block, indices in blocks:
            own = {index: actions[index] for index in indices if index in actions}
            if not own:
                continue
            # Instance attribute shadows the class forward (removed on exit).
            block.forward = own[indices[0]] if len(indices) == 1 else _dispatching(block, own)
            patched.append(block)
        yield state
    finally:
        _ACTIVE.reset(token)
        for handle in handles:
            handle.remove()
        for block in patched:
            del block.forward


def install_head_selection(model: nn.Module, layer: int, kept_heads: list[int]) -> None:
    """Give a pruned layer's attention only its remaining heads' slice of a per-head input.

    MPNet computes one relative position bias ``(B, H, n, n)`` from a table shared by every layer and
    passes it to each layer's attention, which adds it to the scores. After physical pruning the
    layer has fewer heads, so its attention must receive rows ``kept_heads`` (original numbering)
    of that bias: a forward pre-hook selects them (``adapter.head_input`` names the argument). The
    shared table stays whole, so the other layers keep every head. The kept heads live on the module
    (``_attrtools_kept_heads``), so pruning the layer again updates them and a deep copy keeps them.
    """
    adapter = adapter_for(model)
    attention = get_module(get_layers(model)[layer], adapter.attention)
    attention._attrtools_kept_heads = torch.tensor(kept_heads, dtype=torch.long)
    if not getattr(attention, "_attrtools_head_input", None):
        attention._attrtools_head_input = adapter.head_input
        attention.register_forward_pre_hook(_select_kept_heads, with_kwargs=True)


def _select_kept_heads(module, args, kwargs):
    name, position = module._attrtools_head_input
    kept = module._attrtools_kept_heads

    def select(tensor):
        return tensor if tensor is None else tensor.index_select(1, kept.to(tensor.device))

    if kwargs.get(name) is not None:
        kwargs[name] = select(kwargs[name])
    elif len(args) > position:
        args = (*args[:position], select(args[position]), *args[position + 1:])
    return args, kwargs


def install_emptied_attention(model: nn.Module, layer: int) -> None:
    """Make the attention module of a layer whose heads are all pruned run without them.

    Families whose attention module splits a fused projection by width (GPT-2 ``c_attn.split``)
    cannot run with zero heads. The module then computes what every head masked computes: the
    output projection of an empty context (its bias), after passing zero-head tensors through the
    attrtools attention function, so an active capture still records (zeros) in this layer.
    Instance attribute on the module; removed by nothing (the layer stays empty).
    """
    adapter = adapter_for(model)
    block = get_layers(model)[layer]
    attention = get_module(block, adapter.attention)
    # None: W_O lives outside the attention module (DeBERTa), which then returns an empty context
    output_path = adapter.output[len(adapter.attention) + 1:] if adapter.output.startswith(adapter.attention + ".") \
        else None
    from .architecture import head_dim

    attention._attrtools_emptied = (output_path, adapter.conv1d, head_dim(model))
    # a bound method (not a closure): a deep copy of the model rebinds it to the copied module
    attention.forward = types.MethodType(_emptied_forward, attention)


def _emptied_forward(self, hidden_states, *args, **kwargs):
    output_path, conv1d, d_h = self._attrtools_emptied
    batch, length = hidden_states.shape[:2]
    empty = hidden_states.new_zeros(batch, 0, length, d_h)
    _, probs = attrtools_attention(self, empty, empty, empty, None)
    if output_path is None:
        return hidden_states.new_zeros(batch, length, 0), probs
    projection = get_module(self, output_path)
    width = projection.weight.shape[1] if conv1d else projection.weight.shape[0]
    out = hidden_states.new_zeros(batch, length, width)  # W_O times an empty context
    if projection.bias is not None:
        out = out + projection.bias
    return out, probs


_IDLE = Capture(num_layers=0)  # touches nothing: the eager branch with no record / override / mask


def _passthrough(hidden_states, *args, **kwargs):
    return hidden_states


def _passthrough_tuple(hidden_states, *args, **kwargs):
    return hidden_states, None


def _replacement(fn, returns_tuple: bool = False):
    def forward(hidden_states, *args, **kwargs):
        out = fn(hidden_states)
        return (out, None) if returns_tuple else out
    return forward


def _dispatching(block: nn.Module, actions: dict):
    """Forward of a shared block: ``actions[layer]`` for the layers that have one, else its own."""
    original = type(block).forward

    def forward(hidden_states, *args, **kwargs):
        action = actions.get(_call_layer(block, None))
        if action is None:
            return original(block, hidden_states, *args, **kwargs)
        return action(hidden_states, *args, **kwargs)
    return forward


def _hidden_recorder(state: Capture, fixed: int | None):
    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        state.hidden_inputs[_call_layer(module, fixed)] = hidden.detach()
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
    softcap = kwargs.get("softcap")  # Gemma 2: tanh soft-capping of the scores (SDPA has none)
    if state is None or layer is None or not state.touches(layer):
        if softcap is None and query.shape[1] > 0:
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            return sdpa_attention_forward(module, query, key, value, attention_mask,
                                          dropout=dropout, scaling=scaling, **kwargs)
        state, layer = _IDLE, None  # nothing to do but soft-capping: the eager branch below

    kept = state.kept.get(layer)
    if kept is not None:
        kept = kept.to(query.device)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5

    if state.override.get(layer) is None:
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if attention_mask is not None:
            scores = scores + attention_mask[:, :, :, : key.shape[-2]]
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    else:
        probs = None
    probs = _intervene(state, layer, probs, kept, value.dtype, value.shape[0])

    context = torch.matmul(probs, value)
    if layer in state.record_context:
        if kept is not None:
            full = _expanded(context, kept, state.num_heads)
            context = full.index_select(1, kept)
        else:
            full = context
        if full.requires_grad:
            full.retain_grad()
        state.contexts[layer] = full
    return context.transpose(1, 2).contiguous(), probs


def _intervene(state: Capture, layer, probs, kept, dtype, batch: int) -> torch.Tensor:
    """Override, head mask and recording of one layer's probabilities ``(B, H_present, q, k)``
    (shared by both capture mechanisms). ``probs`` may be None when an override replaces it."""
    replacement = state.override.get(layer)
    if replacement is not None:
        probs = replacement.to(dtype)
        if kept is not None:
            probs = probs.index_select(1, kept)
        if probs.shape[0] != batch:
            # transformers 5 reshapes the context with the *input's* batch right after this
            # function, so the official broadcast of a batch-m override over a batch-1 input cannot
            # work here. Give inputs of the override's batch; with `replay`, the blocks below the
            # layer are not recomputed, which is what the broadcast saved.
            raise ValueError(
                f"override for layer {layer} has batch {probs.shape[0]} but the input batch is {batch}: "
                "repeat the inputs (and use replay=) instead")

    if state.head_mask is not None and layer < state.head_mask.shape[0]:
        row = state.head_mask[layer].to(device=probs.device, dtype=probs.dtype)
        if kept is not None:
            row = row.index_select(0, kept)
        probs = probs * row.view(1, -1, 1, 1)

    if layer in state.record:
        if kept is not None:  # original numbering: the recorded tensor is on the forward path
            probs = _expanded(probs, kept, state.num_heads)
            recorded, probs = probs, probs.index_select(1, kept)
        else:
            recorded = probs
        if state.retain_grad and recorded.requires_grad:
            recorded.retain_grad()
        state.attentions[layer] = recorded if state.retain_grad else recorded.detach()
    return probs


# ------------------------------------------------------------------ second mechanism: probability step
def _probability_hook(module, args, output):
    """Forward hook on the module a family applies to its attention probabilities right after the
    softmax (DeBERTa-v2's ``attention.self.dropout``), for families whose attention does not go
    through ``AttentionInterface``. Same semantics as the attention function: record (original head
    numbering), override, head mask; ``record_context`` records the probabilities themselves, the
    only per-head tensor on the path (``Σ x ⊙ ∂L/∂x`` is the same for ``x = A_h`` and
    ``x = A_h V_h``, which is what Taylor importance reads)."""
    state = _ACTIVE.get()
    layer = getattr(module, "_attrtools_layer", None)
    if state is None or layer is None:
        return None
    state.calls[layer] = state.calls.get(layer, 0) + 1
    if not state.touches(layer):
        return None
    kept = state.kept.get(layer)
    if kept is not None:
        kept = kept.to(output.device)
    probs = _intervene(state, layer, output, kept, output.dtype, output.shape[0])  # (B, H, q, k)
    if layer in state.record_context:
        full = _expanded(probs, kept, state.num_heads) if kept is not None else probs
        probs = full.index_select(1, kept) if kept is not None else full
        if full.requires_grad:
            full.retain_grad()
        state.contexts[layer] = full
    return probs


def _expanded(tensor: torch.Tensor, kept: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, H_kept, ...)`` placed at the original head indices of ``(B, num_heads, ...)`` (zeros elsewhere)."""
    shape = (tensor.shape[0], num_heads) + tuple(tensor.shape[2:])
    return tensor.new_zeros(shape).index_copy(1, kept, tensor)


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
        from .architecture import layer_module

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
