"""Batching: the one batch plan (length-sorted, dynamic padding) and the collation of model inputs.

``plan_batches`` orders items by ``(group, length, position)`` and packs them greedily; the plan
depends on nothing but its arguments, so every process of a distributed job computes the same one
and may run any subset of it. ``plan_pending`` is that planner over the examples the cache lacks
(grouped by the units they miss). ``collate`` right-pads a batch into model inputs.
"""
from __future__ import annotations

import hashlib
import json
import itertools
import os
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Sequence

import torch

from .encoding import Encoded
from .errors import ParameterError
from .model_state import inference_state
from .architecture import batch_pad_id
from .models import model_device

# Examples per window of a streamed job (``Engine.stream_window``): large enough that length
# sorting pads as tightly as over the whole dataset, small enough that the per-example state
# (tokens, word alignment, targets) stays a few megabytes.
STREAM_WINDOW = 1024
STREAM_WINDOW_ENV = "ATTRTOOLS_STREAM_WINDOW"  # overrides it (every rank of a job must see the same value)


@dataclass(frozen=True)
class PlannedBatch:
    """One batch of a plan: ``members`` are positions in the planned list, shortest first.

    ``length``: padded length (the longest member); ``cost``: estimated work,
    ``len(members) · length² · steps`` (attention is quadratic in length, and an integrated-gradient
    method runs ``steps`` forwards), in arbitrary units, for balancing batches across processes.
    """

    index: int
    members: tuple[int, ...]
    length: int
    cost: float

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class EncodedBatch:
    """A planned batch with its encodings and its collated model inputs (on the model's device)."""

    plan: PlannedBatch
    encoded: list
    inputs: dict

    @property
    def index(self) -> int:
        return self.plan.index

    @property
    def members(self) -> tuple[int, ...]:
        return self.plan.members

    @property
    def size(self) -> int:
        return self.plan.size


def plan_batches(lengths: Sequence[int], batch_size: int | None = None, *, max_tokens: int | None = None,
                 steps: int = 1, groups: Sequence | None = None) -> list[PlannedBatch]:
    """The batch plan of items with the given token ``lengths``: deterministic, length-sorted.

    Items are ordered by ``(group, length, position)`` and packed greedily: a batch ends at a group
    change, at ``batch_size`` items, or when padding the next item in would exceed ``max_tokens``
    (``items × longest``). A batch always takes at least one item. The result depends on nothing
    but the arguments, so every process of a distributed job computes the same plan and may run any
    subset of it (``Engine.batches(..., subset=...)``).

    ``groups``: per item, a sortable key; items of different groups never share a batch (the
    engine groups attributions by the units they miss). ``steps``: forwards per item, for ``cost``.
    """
    if batch_size is not None and batch_size < 1:
        raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
    keys = [(groups[i] if groups is not None else 0, lengths[i], i) for i in range(len(lengths))]
    order = [k[2] for k in sorted(keys)]
    plan: list[PlannedBatch] = []
    start = 0
    while start < len(order):
        group, longest, stop = keys[order[start]][0], lengths[order[start]], start + 1
        while stop < len(order):
            nxt = order[stop]
            if keys[nxt][0] != group or (batch_size is not None and stop - start >= batch_size):
                break
            if max_tokens is not None and (stop - start + 1) * max(longest, lengths[nxt]) > max_tokens:
                break
            longest = max(longest, lengths[nxt])
            stop += 1
        members = tuple(order[start:stop])
        plan.append(PlannedBatch(len(plan), members, longest, float(len(members) * longest ** 2 * steps)))
        start = stop
    return plan


def collate(sequences: Sequence, pad_token_id: int | None, device=None, token_types: bool = True) -> dict:
    """Right-padded model inputs of a batch: ``{"input_ids", "attention_mask"[, "token_type_ids"]}``.

    ``sequences``: ``Encoded`` items or ``(input_ids, token_type_ids)`` pairs (``token_type_ids``
    may be None or shorter: zeros fill). Tensors are ``(B, n)`` long, ``n`` the longest sequence,
    padding with ``pad_token_id`` (0 when None), mask 1 on real tokens; on ``device`` when given.
    ``token_types``: include ``token_type_ids`` (only for models that use them, see
    ``Engine.uses_token_types``).
    """
    pairs = [(s.input_ids, s.token_type_ids) if isinstance(s, Encoded) else (s[0], s[1]) for s in sequences]
    n = max(len(ids) for ids, _ in pairs)
    pad = pad_token_id if pad_token_id is not None else 0
    ids = torch.full((len(pairs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(pairs), n), dtype=torch.long)
    types = torch.zeros((len(pairs), n), dtype=torch.long)
    for row, (i, t) in enumerate(pairs):
        ids[row, : len(i)] = torch.tensor(i, dtype=torch.long)
        mask[row, : len(i)] = 1
        if t:
            types[row, : len(t)] = torch.tensor(t, dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        inputs["token_type_ids"] = types
    return {k: v.to(device) for k, v in inputs.items()} if device is not None else inputs


def is_sequence(item) -> bool:
    """An ``(input_ids, token_type_ids)`` pair of integer sequences (not a ``(text, text_pair)`` pair)."""
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (tuple, list))


def _unit_order(units) -> tuple:
    return tuple((u is None, -1 if u is None else u) for u in units)


def plan_pending(lengths: Sequence[int], pending: dict, batch_size: int, params: dict) -> list[PlannedBatch]:
    """The batches computing the examples the cache lacks, in order: ``plan_batches`` over
    ``pending`` (example index -> missing units), grouped by the units missed (examples missing the
    same units share batches), length-sorted. ``lengths``: tokens per example (all examples).
    Each ``PlannedBatch.members`` holds example indices; ``cost`` estimates the work as rows x
    (padded tokens)^2 x steps x missing units. Deterministic: every rank of a distributed job
    computes the same plan from the same ``pending``."""
    todo = sorted(pending)
    steps = params.get("steps")
    steps = steps if isinstance(steps, int) else 8 if steps else 1  # "auto": about 8 passes on trained models
    plan = plan_batches([lengths[i] for i in todo], batch_size,
                        groups=[_unit_order(pending[i]) for i in todo], steps=steps)
    return [replace(planned, members=tuple(todo[m] for m in planned.members),
                    cost=planned.cost * len(pending[todo[planned.members[0]]]))
            for planned in plan]


def plan_digest(batches: Sequence[PlannedBatch], pending: dict) -> str:
    """sha256 of a pending plan (members, units, cost per batch): what the ranks agree on."""
    text = json.dumps([[list(b.members), list(pending[b.members[0]]), b.cost] for b in batches], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def stream_window() -> int:
    """Examples per window of a streamed job: ``$ATTRTOOLS_STREAM_WINDOW``, else ``STREAM_WINDOW``."""
    value = os.environ.get(STREAM_WINDOW_ENV, "")
    if not value:
        return STREAM_WINDOW
    try:
        window = int(value)
    except ValueError:
        window = 0
    if window < 1:
        raise ParameterError(f"{STREAM_WINDOW_ENV}={value!r}: give a number of examples, at least 1")
    return window


def windows(examples, target, window: int | None):
    """``(examples, targets)`` windows of at most ``window`` examples (None: one window), read
    lazily from any iterable; a per-example ``target`` sequence is sliced alongside. At least one
    (possibly empty) window, so an empty job still checks its method and parameters."""
    per_example = isinstance(target, Sequence) and not isinstance(target, str)
    if window is None:
        yield list(examples), target
        return
    source, offset, first = iter(examples), 0, True
    while True:
        chunk = list(itertools.islice(source, window))
        if not chunk and not first:
            return
        yield chunk, (target[offset: offset + len(chunk)] if per_example else target)
        offset += len(chunk)
        first = False
        if len(chunk) < window:
            return


class Batcher:
    """The engine's batching face for tools: plans, collated batches, rows put back in input order
    and clean logits. Mixed into ``Engine``, whose ``model``, ``tokenizer``, ``batch_size``,
    ``uses_token_types``, ``encode``, ``encode_all`` and ``report_truncation`` it uses."""

    def collate(self, encoded: Sequence) -> dict:
        """Right-padded model inputs on the model's device (``collate``)."""
        return collate(encoded, batch_pad_id(self.model, self.tokenizer), model_device(self.model),
                       self.uses_token_types)

    def plan(self, items: Sequence, batch_size: int | None = None, *, max_tokens: int | None = None,
             steps: int = 1, groups: Sequence | None = None) -> list[PlannedBatch]:
        """The batch plan of ``items`` (``Encoded`` or ``(input_ids, token_type_ids)`` pairs):
        ``plan_batches`` over their lengths, ``batch_size`` defaulting to the engine's (None with
        ``max_tokens`` alone: the token budget only)."""
        if batch_size is None and max_tokens is None:
            batch_size = self.batch_size
        lengths = [e.length if isinstance(e, Encoded) else len(e[0]) for e in items]
        return plan_batches(lengths, batch_size, max_tokens=max_tokens, steps=steps, groups=groups)

    def plan_pending(self, encoded, pending: dict, batch_size: int, params: dict) -> list[PlannedBatch]:
        """The batches ``attribute`` computes for ``pending`` (example index -> missing units):
        ``plan_pending`` over the encodings' lengths."""
        return plan_pending([e.length for e in encoded], pending, batch_size, params)

    def batches(self, items: Iterable, batch_size: int | None = None, *, plan: list[PlannedBatch] | None = None,
                subset: Iterable[int] | None = None, max_tokens: int | None = None, steps: int = 1,
                groups: Sequence | None = None) -> Iterator[EncodedBatch]:
        """Length-sorted, dynamically padded batches of ``items``, each with its collated inputs.

        ``items``: examples (anything ``Example.coerce`` takes; tokenized once here), ``Encoded``
        items, or ``(input_ids, token_type_ids)`` pairs. ``plan``: a plan from ``Engine.plan`` /
        ``plan_batches`` (default: made here from the other arguments). ``subset``: indices of the
        planned batches to yield (default all), in plan order; a distributed job gives each process
        its share of the same plan. ``EncodedBatch.members`` map each row back to its item."""
        items = [e if isinstance(e, Encoded) or is_sequence(e) else self.encode(e) for e in items]
        if plan is None:
            plan = self.plan(items, batch_size, max_tokens=max_tokens, steps=steps, groups=groups)
        chosen = plan if subset is None else [plan[k] for k in sorted(set(subset))]
        for planned in chosen:
            members = [items[i] for i in planned.members]
            yield EncodedBatch(planned, members, self.collate(members))

    def scatter(self, items: Iterable, fn: Callable[[EncodedBatch], Sequence], batch_size: int | None = None,
                **plan_options) -> list:
        """``fn(batch)`` over the planned batches of ``items``, its rows put back in input order
        (``fn`` returns one row per batch member: a tensor's first dimension or a list)."""
        items = list(items)
        rows: list = [None] * len(items)
        for batch in self.batches(items, batch_size, **plan_options):
            out = fn(batch)
            for row, i in enumerate(batch.members):
                rows[i] = out[row]
        return rows

    @torch.no_grad()
    def logits(self, examples: Iterable, batch_size: int | None = None) -> torch.Tensor:
        """``(N, C)`` float logits of the clean inputs, in input order (length-sorted batches)."""
        encoded = self.encode_all(examples)
        self.report_truncation()
        with inference_state(self.model):
            return self._forward(encoded, batch_size)

    @torch.no_grad()
    def _forward(self, encoded: list[Encoded], batch_size: int | None = None) -> torch.Tensor:
        if not encoded:
            return torch.zeros(0)
        return torch.stack(self.scatter(encoded, lambda b: self.model(**b.inputs).logits.float().cpu(), batch_size))
