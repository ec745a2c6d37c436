"""Calls: the state and the counts of one ``Engine.attribute`` / ``Engine.stream`` call.

A ``Call`` holds what one call (one window of a streamed call) works on, from the look-up to the
build; ``CallStats`` what it did, returned with its results (``Attributions.stats``,
``AttributionStream.stats``) so a caller never diffs ``Engine.stats``. The target rules
(``resolve_target_spec``, ``check_target_classes``) are the call's first step.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterator, Sequence

from . import heads, precision
from .completeness import completeness_summary
from .encoding import Encoded
from .entries import Entries
from .errors import InputDataError, ParameterError
from .architecture import pool_index, pruned_heads
from .types import Attribution, Example


@dataclass
class CallStats:
    """What one ``attribute``/``stream`` call did (the whole job's numbers under a launcher):
    examples served from the cache (``hits``), computed (``computed``; ``partial`` of them had
    some units cached), units computed, out-of-memory back-offs, and for a sharded or streamed
    call its ``plan`` (world size, window, and each batch's example indices, units, cost, rank)."""

    hits: int = 0
    computed: int = 0
    partial: int = 0
    units_computed: int = 0
    oom_backoffs: int = 0
    plan: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class AttributionStream:
    """The iterator ``Engine.stream`` returns: ``Attribution`` objects in input order, and the
    call's ``stats`` (a ``CallStats``, complete once the stream is exhausted)."""

    def __init__(self, results: Iterator, stats: CallStats):
        self._results = results
        self.stats = stats

    def __iter__(self):
        return self

    def __next__(self) -> Attribution:
        return next(self._results)


@dataclass
class Call:
    """The state of one call (one window of a streamed call): the method, the encoded examples,
    their targets and units, and what the look-up and computation found so far."""

    impl: object
    params: dict
    encoded: list
    specs: list  # per example: resolved class index, or None for class-agnostic methods
    units: list  # the method's units, [None] for a single payload
    batch_size: int
    entries: Entries
    stats: CallStats
    totals: dict  # the engine's running counts (``Engine.stats``), or a rank's scratch counts
    results: list = field(default_factory=list)
    pending: dict = field(default_factory=dict)  # example index -> units the cache lacks
    partial: dict = field(default_factory=dict)  # example index -> (units found, their IG records)

    def count(self, **counts) -> None:
        """Add to the call's counts and to ``self.totals`` (the engine's running ``stats``)."""
        for name, n in counts.items():
            setattr(self.stats, name, getattr(self.stats, name) + n)
            self.totals[name] = self.totals.get(name, 0) + n


def resolve_target_spec(target, example: Example, index: int):
    """The per-example target *spec*: ``"pred"``, or a class index (gold label or given)."""
    if target is None or target == "pred" or target == "predicted":
        return "pred"
    if target == "gold":
        if example.label is None:
            raise InputDataError(f"target='gold' but example {example.id or index} has no label")
        return int(example.label)
    if isinstance(target, int):
        return int(target)
    if isinstance(target, Sequence) and not isinstance(target, str):
        return resolve_target_spec(target[index], example, index)
    raise ParameterError(f"target must be None/'pred', 'gold', a class index or a list of them, got {target!r}")


def check_target_classes(targets, num_classes: int) -> None:
    """Every resolved target (a class index, or None for class-agnostic) within ``0 .. num_classes-1``;
    else a ``ParameterError`` naming the first one out of range and the classes."""
    bad = [int(t) for t in targets if t is not None and not 0 <= int(t) < num_classes]
    if bad:
        raise ParameterError(f"target class {bad[0]} out of range for a {num_classes}-class model "
                             f"(classes 0–{num_classes - 1})")


class Discard(dict):
    """A results sink that keeps nothing (computed results live in the cache)."""

    def __setitem__(self, key, value):
        pass


def build(model, call: Call, enc: Encoded, scores, meta: dict, records=None) -> Attribution:
    """Step 6 of the engine's loop: the ``Attribution`` of one example of ``call`` from its payload
    ``scores`` (units stacked on dim 0), its metadata (target, predicted, probs) and IG records."""
    impl, params = call.impl, call.params
    public = dict(params)
    gone = pruned_heads(model)
    if gone:  # a physically pruned model: these heads read 0 in (L, H) payloads (original numbering)
        public["_pruned_heads"] = {str(l): hs for l, hs in gone.items()}
    public["_signed"] = bool(impl.is_signed(params))
    public["_compute_dtype"] = precision.describe(model, impl.name)  # attrtools.precision: the one rule
    return Attribution(
        completeness=completeness_summary(records, impl.units(model, params)),
        original_length=enc.original_length,
        tokens=enc.tokens, input_ids=enc.input_ids, scores=scores, kind=impl.kind, method=impl.name,
        params=public, target=meta["target"], predicted=meta["predicted"], probs=meta["probs"],
        label=enc.example.label, text=enc.example.text, text_pair=enc.example.text_pair,
        example_id=enc.example.id, segment_ids=enc.token_type_ids or [],
        special_tokens_mask=enc.special_tokens_mask, label_names=_label_names(model.config),
        pool_position=pool_index(model, enc.input_ids), multi_label=heads.is_multi_label(model),
        token_offsets=list(enc.offsets),
    )

def _label_names(config) -> list[str]:
    """Class names in id order from ``config.id2label``; ``[]`` for transformers' ``LABEL_k`` placeholders."""
    mapping = getattr(config, "id2label", None) or {}
    names = [mapping.get(k, mapping.get(str(k))) for k in range(len(mapping))]
    if not names or any(n is None for n in names) or all(str(n).upper().startswith("LABEL_") for n in names):
        return []
    return [str(n) for n in names]


def model_name(model) -> str | None:
    """The hub id or folder a model was loaded from (``config._name_or_path``), for people reading
    the cache (``attrtools cache info``); None when unknown."""
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(model, "name_or_path", None)
    return str(name) if name else None
