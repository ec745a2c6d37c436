"""Physical head pruning, and saving / reloading a pruned model (core: ``load_model`` reloads
pruned folders for every tool; the pruning planner, ``attrtools.pruning``, re-exports this module
as ``attrtools.pruning.prune``).

Removing head ``h`` of layer ``l`` (head dimension ``d_h``) deletes rows ``[h*d_h, (h+1)*d_h)`` of
the query, key and value projections (weights and biases) and the same *columns* of the attention
output projection ``W_O`` (its bias stays). The block then computes exactly what it computed with
head ``h`` masked (its attention probabilities multiplied by 0, as in Hao et al. 2021 and Michel et
al. 2019): the head's context is 0, so it contributes nothing to ``W_O · context``, and ``b_O`` is
still added. A layer whose heads are all pruned keeps 0-row projections and a 0-column ``W_O``: its
attention outputs ``b_O`` only, which is what masking every head gives.

transformers 5 removed ``prune_heads`` and ``config.pruned_heads`` (docs/architecture.md, "Pruned models"), so the
slicing is ours, and the head-count attributes each architecture's attention module reads at
forward time are updated here (checked against transformers 5.23):

- bert / roberta / electra (``*SelfAttention``): ``num_attention_heads``, ``all_head_size``
  (forward reshapes with ``view(..., -1, attention_head_size)``);
- distilbert (``DistilBertSelfAttention``): ``n_heads`` (``dim`` is the model width, unchanged);
- llama (``LlamaAttention``): no head-count attribute; the forward reshapes with ``-1``.
  Query heads share key/value heads in groups of ``num_key_value_groups`` (GQA). Only **whole
  groups** can be removed (the group's ``k_proj``/``v_proj`` rows go with its query heads, so the
  ratio ``num_key_value_groups`` is unchanged); pruning a strict subset of a group's query heads
  raises ``ValueError`` (the planners take ``group_size`` so their plans respect this).
- mpnet (``MPNetSelfAttention``): ``num_attention_heads``, ``all_head_size``. The relative position
  bias ``(B, H, n, n)`` comes from one table shared by every layer and is passed to each layer's
  attention: a pruned layer gets only its remaining heads' rows (``capture.install_head_selection``,
  a forward pre-hook; ``adapter.head_input`` names the argument); the table stays whole.
- albert (``AlbertAttention``): ``num_attention_heads``, ``all_head_size``. One block runs every
  layer of its hidden group (``architecture.tied_layers``), so removing a head from it removes that head
  in **every layer of the group**: a plan must name the same heads for all layers of a group
  (``ValueError`` otherwise; the planners take ``tied_layers`` so their plans respect this), and the
  block is sliced once.

Head indices in plans are always the model's **original** numbering; a model pruned twice keeps
track of what is gone (``model._attrtools_pruned_heads``).

Persistence: ``save_pruned`` writes ``save_pretrained`` output (the *full-size* config and the
sliced weights in safetensors), the tokenizer and ``pruned_heads.json``. ``load_pruned`` builds
the full-size model from the config, prunes it to the saved plan, then loads the sliced
safetensors state dict strictly (every key, every shape), and selects the attrtools attention.
``models.load_pretrained`` refuses such folders, since a plain ``from_pretrained`` would fail on
the shapes.
"""
from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn

from . import architecture, models
from .adapters import adapter_for
from .architecture import get_layers, get_module
from .errors import InputDataError, ParameterError, UnsupportedModelError
from .model_state import parameter_snapshot, replace_in_optimizer
from .notices import warn

PRUNED_HEADS_FILE = models.PRUNED_HEADS_FILE


class UnsupportedPruningError(UnsupportedModelError):
    """A family whose heads cannot be removed physically (the adapter says why)."""
FORMAT = 1


# ------------------------------------------------------------------------------------ structure
# Head counts, head dimension, KV groups and pruned heads are the adapter's (architecture.py); re-exported
# here under the names the pruning tools have always used.
original_heads = architecture.original_heads
kv_group_size = architecture.kv_group_size
head_dim_of = architecture.head_dim
pruned_heads_of = architecture.pruned_heads


def normalize_plan(plan, num_layers: int, num_heads: int) -> dict[int, list[int]]:
    """``{layer: sorted unique heads}`` with int keys (JSON gives strings); validates indices."""
    out: dict[int, list[int]] = {}
    for layer, heads in dict(plan).items():
        l = int(layer)
        if not 0 <= l < num_layers:
            raise ParameterError(f"plan names layer {l}, the model has layers 0..{num_layers - 1}")
        hs = sorted({int(h) for h in heads})
        bad = [h for h in hs if not 0 <= h < num_heads]
        if bad:
            raise ParameterError(f"plan names head(s) {bad} of layer {l}, the model has heads 0..{num_heads - 1}")
        if hs:
            out[l] = hs
    return out


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------ slicing
def _slice_linear(linear: nn.Module, index: torch.Tensor, dim: int, conv1d: bool = False) -> nn.Module:
    """A new projection keeping ``index`` along ``dim`` (0 = output rows, 1 = input columns, in
    ``nn.Linear`` terms); dtype and device kept (``prune_linear_layer`` always makes float32).
    ``conv1d``: a transformers ``Conv1D`` (weight stored ``(in, out)``), returned as a Conv1D."""
    index = index.to(linear.weight.device)
    weight = linear.weight.detach()
    if conv1d:
        weight = weight.t()
    weight = weight.index_select(dim, index).clone()
    bias = None
    if linear.bias is not None:
        bias = linear.bias.detach().clone() if dim == 1 else linear.bias.detach()[index].clone()
    with warnings.catch_warnings():  # "Initializing zero-element tensors is a no-op" for emptied layers
        warnings.simplefilter("ignore", UserWarning)
        if conv1d:
            from transformers.pytorch_utils import Conv1D

            new = Conv1D(weight.shape[0], weight.shape[1]).to(device=weight.device, dtype=weight.dtype)
        else:
            new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                            device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight.t() if conv1d else weight)
        if bias is not None:
            new.bias.copy_(bias)
    new.weight.requires_grad_(linear.weight.requires_grad)
    if bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new


def _replace(block: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = get_module(block, parent_path) if parent_path else block
    setattr(parent, name, new)


def _keep_index(kept_positions: list[int], head_dim: int) -> torch.Tensor:
    if not kept_positions:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([torch.arange(p * head_dim, (p + 1) * head_dim) for p in kept_positions])


class _ConfigView:
    """The model's config with a layer's own head counts (for families whose attention reads
    ``self.config.num_attention_heads`` at forward time, e.g. Phi-3); everything else is live."""

    def __init__(self, config, **overrides):
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_overrides", overrides)

    def __getattr__(self, name):
        overrides = object.__getattribute__(self, "_overrides")
        if name in overrides:
            return overrides[name]
        return getattr(object.__getattribute__(self, "_config"), name)


def prune_heads(model, plan, optimizer=None) -> dict[int, list[int]]:
    """Remove the heads in ``plan`` (``{layer: [original head indices]}``) from ``model`` in place.

    The sliced projections are new parameter tensors. ``optimizer``: a ``torch.optim.Optimizer``
    over the model's parameters, updated in place to hold the new tensors (their old state
    dropped); None: a ``ParametersReplacedWarning`` names the replaced parameters (an optimizer
    built before pruning would silently stop training them: build it after pruning); False: no
    optimizer holds the model (the rule: ``model_state.replace_in_optimizer``).

    Returns the model's full pruned-heads map afterwards. Heads already removed are skipped with a
    ``UserWarning`` naming them. For GQA models (``num_key_value_heads < num_attention_heads``) every
    plan entry must consist of whole key/value groups. Fused q/k/v projections (GPT-2 ``c_attn``,
    Phi-3 ``qkv_proj``) are sliced in their three parts; ``Conv1D`` projections keep their layout.
    """
    adapter = adapter_for(model)
    plan = normalize_plan(plan, len(get_layers(model)), original_heads(model))
    before = parameter_snapshot(model)
    reason = adapter.refusal("prune_heads")
    if reason and plan:
        raise UnsupportedPruningError(f"model_type {adapter.model_type!r} cannot be pruned physically: {reason}")
    state = {int(l): set(h) for l, h in getattr(model, "_attrtools_pruned_heads", {}).items()}
    tied = {l: tuple(g) for g in architecture.tied_layers(model) for l in g}
    _check_plan(adapter, plan, state, tied)
    done: set[int] = set()
    for layer, heads in plan.items():
        if layer in done:  # a shared block already sliced for another layer of its group
            continue
        done.update(tied[layer])
        gone = state.get(layer, set())
        new = set(heads) - gone
        if not new:
            continue
        _prune_layer(model, adapter, layer, gone, new)
        for other in tied[layer]:
            state[other] = gone | new
    model._attrtools_pruned_heads = {l: sorted(h) for l, h in sorted(state.items()) if h}
    replace_in_optimizer(before, model, optimizer, "prune_heads")
    return pruned_heads_of(model)


def _check_plan(adapter, plan: dict, state: dict, tied: dict) -> None:
    """Warn about heads of ``plan`` already pruned (``state``: ``{layer: heads gone}``); refuse a plan
    naming different heads for layers that run one shared block (``tied``: ``{layer: its group}``)."""
    again = {l: sorted(set(h) & state.get(l, set())) for l, h in plan.items() if set(h) & state.get(l, set())}
    if again:
        warn(f"head(s) already pruned, skipped: {again} (layer: heads, original numbering)", UserWarning)
    for layer in plan:
        sharing = tied[layer]
        wanted = {l: sorted(set(plan.get(l, ())) | state.get(l, set())) for l in sharing}
        if len(sharing) > 1 and len({tuple(h) for h in wanted.values()}) > 1:
            raise ValueError(
                f"layers {list(sharing)} of {adapter.model_type!r} run one shared block: pruning a head removes it in "
                f"all of them, so the plan must name the same heads for each (asked, with heads already gone: "
                f"{wanted}); plan with tied_layers=architecture.tied_layers(model)")


def _prune_layer(model, adapter, layer: int, gone: set, new: set) -> None:
    """Slice ``layer``'s block so that the heads ``new`` go too (``gone``: removed before; original
    numbering): the q/k/v/o projections (fused or separate, GQA groups kept whole), the family's
    per-head projections, the attention module's head counts, and the capture patches a pruned layer
    needs. Raises ``ValueError`` for a GQA plan that splits a key/value group."""
    num_heads, group, head_dim = original_heads(model), kv_group_size(model), head_dim_of(model)
    after = gone | new
    if group > 1:
        partial = [g for g in range(num_heads // group)
                   if 0 < len(after & set(range(g * group, (g + 1) * group))) < group]
        if partial:
            raise ValueError(
                f"layer {layer}: pruning only part of the query heads that share a key/value head "
                f"(groups of {group}; partial group(s) {partial}) cannot be done physically; "
                f"prune whole groups (plan with group_size={group})")
    current = [h for h in range(num_heads) if h not in gone]  # original index at each position
    kept_positions = [pos for pos, h in enumerate(current) if h not in new]
    index = _keep_index(kept_positions, head_dim)
    if group > 1:
        current_groups = sorted({h // group for h in current})
        kept_group_positions = [pos for pos, g in enumerate(current_groups)
                                if not set(range(g * group, (g + 1) * group)) <= after]
        kv_index = _keep_index(kept_group_positions, head_dim)
    else:
        kv_index = index
    block = get_layers(model)[layer]
    _slice_projections(block, adapter, index, kv_index, len(current) * head_dim, group)
    remaining = len(kept_positions)
    _set_head_counts(model, get_module(block, adapter.attention), adapter, remaining, group, head_dim)
    if adapter.head_input:  # a per-head input computed for every layer (MPNet's position bias)
        from .capture import install_head_selection

        install_head_selection(model, layer, [h for h in range(num_heads) if h not in after])
    if remaining == 0 and adapter.empty_layer_patch:
        from .capture import install_emptied_attention

        install_emptied_attention(model, layer)


def _slice_projections(block, adapter, index, kv_index, q_width: int, group: int) -> None:
    """Keep rows ``index`` of the query (``kv_index`` of key and value; fused: the three parts of a
    ``q_width + 2 * q_width / group`` wide projection) and columns ``index`` of the output projection."""
    if adapter.fused_qkv:
        kv_width = q_width // group
        fused = torch.cat([index, q_width + kv_index, q_width + kv_width + kv_index])
        _replace(block, adapter.fused_qkv,
                 _slice_linear(get_module(block, adapter.fused_qkv), fused, 0, adapter.conv1d))
    else:
        _replace(block, adapter.query, _slice_linear(get_module(block, adapter.query), index, 0, adapter.conv1d))
        _replace(block, adapter.key, _slice_linear(get_module(block, adapter.key), kv_index, 0, adapter.conv1d))
        _replace(block, adapter.value, _slice_linear(get_module(block, adapter.value), kv_index, 0, adapter.conv1d))
    for path in adapter.head_projections:  # e.g. DeBERTa's relative-position projections (per head)
        try:
            extra = get_module(block, path)
        except AttributeError:
            continue
        _replace(block, path, _slice_linear(extra, kv_index, 0, adapter.conv1d))
    _replace(block, adapter.output, _slice_linear(get_module(block, adapter.output), index, 1, adapter.conv1d))


def _set_head_counts(model, attention, adapter, remaining: int, group: int, head_dim: int) -> None:
    """The attention module's head counts and widths read at forward time, after pruning to ``remaining``."""
    for name in adapter.head_count_attrs:
        if hasattr(attention, name):
            setattr(attention, name, remaining)
    for name in adapter.width_attrs + adapter.fused_width_attrs:
        if hasattr(attention, name):
            setattr(attention, name, remaining * head_dim)
    if hasattr(attention, "num_key_value_heads"):
        attention.num_key_value_heads = remaining // group
    if adapter.config_head_count:
        attention.config = _ConfigView(model.config, num_attention_heads=remaining,
                                       num_key_value_heads=remaining // group)


# ------------------------------------------------------------------------------------ save / load
def save_pruned(model, tokenizer, directory: str, extra: dict | None = None) -> str:
    """``save_pretrained`` (full-size config + sliced safetensors) + tokenizer + ``pruned_heads.json``,
    built in a folder aside and renamed into place when complete (``rundir.publish_dir``): a crash
    never leaves a folder under ``directory`` that does not load."""
    from .rundir import publish_dir

    with publish_dir(directory) as building:
        _write_pruned(model, tokenizer, building, extra)
    return directory


def _write_pruned(model, tokenizer, directory: str, extra: dict | None = None) -> str:
    from .io import write_json

    os.makedirs(directory, exist_ok=True)
    pruned = pruned_heads_of(model)
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    num_layers = len(get_layers(model))
    num_heads = original_heads(model)
    payload = {
        "format": FORMAT,
        "pruned_heads": {str(l): h for l, h in pruned.items()},
        "num_layers": num_layers,
        "num_heads_original": num_heads,
        "heads_pruned": sum(len(h) for h in pruned.values()),
        "heads_remaining": num_layers * num_heads - sum(len(h) for h in pruned.values()),
        "model_type": model.config.model_type,
        "note": "load with attrtools.load_pruned(dir): config.json is the unpruned architecture",
    }
    payload.update(extra or {})
    write_json(os.path.join(directory, PRUNED_HEADS_FILE), payload)
    return directory


def read_plan(path: str) -> dict[int, list[int]]:
    """A plan from ``pruned_heads.json`` (either the saved-model format or a bare ``{layer: [heads]}``)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    plan = data.get("pruned_heads", data) if isinstance(data, dict) else data
    if not isinstance(plan, dict):
        raise InputDataError(f"{path}: expected {{layer: [heads]}}")
    return {int(l): [int(h) for h in hs] for l, hs in plan.items() if hs}


def _state_dict_files(directory: str) -> list[str]:
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(directory, name) for name in files]
    single = os.path.join(directory, "model.safetensors")
    if not os.path.exists(single):
        raise FileNotFoundError(f"{directory} has no model.safetensors (or sharded index)")
    return [single]


def load_pruned(directory: str, device=None, dtype=None, install: bool = True):
    """``(model, tokenizer)`` of a model saved by :func:`save_pruned`, with its pruning re-applied.

    Full-size model from ``config.json`` → :func:`prune_heads` to the saved plan → the sliced
    safetensors weights loaded with ``strict=True`` (a missing, unexpected or mis-shaped tensor is
    an error) → eval mode, attrtools attention selected (``capture.install``). ``capture``'s
    ``head_mask`` assumes the unpruned (L, H) layout, so masking a pruned model is not supported.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    marker = os.path.join(directory, PRUNED_HEADS_FILE)
    if not os.path.exists(marker):
        raise InputDataError(f"{directory} has no {PRUNED_HEADS_FILE}: not a model saved by attrtools.save_pruned "
                         "(load it with attrtools.load_model)")
    plan = read_plan(marker)
    from .guard import check_model_folder, check_tokenizer

    check_model_folder(directory)
    config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    check_tokenizer(tokenizer, config, directory)
    model = AutoModelForSequenceClassification.from_config(config, dtype=dtype) if dtype is not None \
        else AutoModelForSequenceClassification.from_config(config)
    from . import capture

    capture.install(model)  # a family with an inferred adapter is accepted here (after its self-check)
    prune_heads(model, plan, optimizer=False)  # a model being built: no optimizer holds it
    state = {}
    for path in _state_dict_files(directory):
        state.update(load_file(path))
    expected = model.state_dict()
    # save_pretrained drops tied copies; a key may be absent only if it shares storage with a loaded one
    missing = [k for k in expected if k not in state]
    tied = {k for k in missing if _is_tied(model, k, state)}
    missing = [k for k in missing if k not in tied]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise InputDataError(f"{directory}: checkpoint does not match the pruned architecture "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    shape_errors = [k for k in state if tuple(state[k].shape) != tuple(expected[k].shape)]
    if shape_errors:
        k = shape_errors[0]
        raise InputDataError(f"{directory}: tensor {k} has shape {tuple(state[k].shape)}, the pruned model expects "
                         f"{tuple(expected[k].shape)} ({len(shape_errors)} mismatches)")
    model.load_state_dict(state, strict=not tied)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    if device is not None:
        model.to(device)
    if install:
        from . import capture

        capture.install(model)
    return model, tokenizer


def _is_tied(model, key: str, state: dict) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    if key not in params:
        return False
    target = params[key]
    return any(name in state and other is target for name, other in params.items() if name != key)
