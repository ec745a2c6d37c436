"""The engine: the single entry through which tools and the CLI get attributions.

``Engine(model, tokenizer, cache).attribute(examples, method, target, **params)``:
tokenize → form each example's cache key → take hits from the cache → batch the misses by length
(dynamic padding) → resolve targets with one clean forward → compute through the method → write
each result to the cache as soon as it exists → return ``Attribution`` objects in input order.

Methods that declare ``units`` (AttAttr: layers) are cached per (example, unit). A batch's units
are computed in one call and written right after it, so a killed job loses at most the batch in
flight; an example with only some units cached (e.g. units evicted from a size-capped cache) is
batched only with examples missing the same units, and only those are recomputed.

Out-of-memory errors halve the batch; at batch size 1 they halve the method's internal batch
(``internal_batch_size``, rows per pass); at 1 and 1 the error is raised. Cache keys leave
``internal_batch_size`` out, so a back-off never changes a key.

``cache``: an ``AttributionCache`` (or any object with ``get(key) -> (tensor, meta) | None`` and
``put(key, tensor, meta)``), ``True`` for the default cache folder, a folder path, or None.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Sequence

import torch

from . import distributed, heads, precision, reduction, runreport
from . import methods as method_registry
from .cache import open_cache
from .errors import InputDataError, ParameterError
from .guard import check_unknown_share
from .inputs import Tokenized, tokenized_fields
from .inputs import normalize as normalize_inputs
from .memory import announce, fit_batch
from .methods.base import Batch
from .model_state import inference_state, unwrap_compiled
from .models import (adapter_for, batch_pad_id, fingerprint, max_input_length, model_device, pool_index, pruned_heads,
                     tokenizer_fingerprint)
from .notices import warn
from .progress import enabled_default
from .types import FORMAT_VERSION, Attribution, Example
from .words import encoded_alignment, merge_wordpieces as _merge_wordpieces  # noqa: F401 (old name)

# Parameters that change how a result is computed, never what it is: left out of cache keys.
VOLATILE_PARAMS = frozenset({"internal_batch_size", "max_tokens"})  # max_tokens: a method's length cap (flow)
# Examples per window of a streamed job (``Engine.stream_window``): large enough that length
# sorting pads as tightly as over the whole dataset, small enough that the per-example state
# (tokens, word alignment, targets) stays a few megabytes.
STREAM_WINDOW = 1024
STREAM_WINDOW_ENV = "ATTRTOOLS_STREAM_WINDOW"  # overrides it (every rank of a job must see the same value)


@dataclass
class Encoded:
    """One tokenized example, as the engine tokenizes it (the only tokenization any tool uses).

    ``word_ids[t]``: 0-based index of the word holding token ``t`` within its segment (None for
    special tokens); ``segments[t]``: segment of token ``t`` (0 = ``text``, 1 = ``text_pair``);
    ``words[(segment, word_id)]``: the word's text. Fast tokenizers give these from their character
    offsets into the original text (``words.py``, one rule); slow ones by merging ``##`` word pieces.
    """

    example: Example
    input_ids: list[int]
    token_type_ids: list[int] | None
    special_tokens_mask: list[int]
    tokens: list[str]
    original_length: int | None = None  # tokens before truncation (None: not truncated)
    word_ids: list[int | None] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    words: dict = field(default_factory=dict)
    offsets: list = field(default_factory=list)  # per token [segment, start, end] or None (words.token_offsets)

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def truncated(self) -> bool:
        return self.original_length is not None


def reset_run_report() -> None:
    """Forget what the engines noted for the run summary (``attrtools.runreport.reset``)."""
    runreport.reset()


def run_report() -> dict:
    """What every engine of this process noted since the last ``reset_run_report()``: inputs
    truncated, the worst IG completeness gap (and rows skipped by ``data.keep_content``); see
    ``attrtools.runreport.report``. The CLI prints it in each command's summary."""
    return runreport.report()


# Where each command sets the integration's precision (the completeness warning names the option of
# the command that runs; a test checks every option against the command). The demo has none.
STEPS_OPTIONS = {"attribute": ("--param",), "evaluate": ("--param",), "prune": ("--protocol", "--steps"),
                 "tree": ("--protocol", "--steps"), "triggers": ("--protocol", "--steps"),
                 "audit": ("--protocol", "--steps", "--rank-steps")}
STEPS_HINT = "; ".join(f"{' / '.join(o if o != '--param' else '--param tolerance=...' for o in opts)} in {cmd}"
                       for cmd, opts in STEPS_OPTIONS.items())


def precision_hint() -> str:
    """What raises an IG result's precision, in the words of where the user is (the one rule the
    completeness and tolerance warnings use): a Python keyword for API users, the running
    command's own flags for CLI users (``notices.cli_command``), nothing for the demo (no option)."""
    from .notices import cli_command

    command = cli_command()
    if command is None:
        return ("pass steps='auto' (the default) with a smaller tolerance=, e.g. tolerance=1e-4, or an integer steps "
                "with steps_method='gausslegendre'")
    options = STEPS_OPTIONS.get(command)
    if not options:
        return ""
    if options == ("--param",):
        return "add --param tolerance=1e-4 (with the default steps=auto), or --param steps=64 --param steps_method=gausslegendre"
    return "use " + " / ".join(options) + (" (--protocol converged, the default, integrates to 1e-3; --steps auto)"
                                            if "--protocol" in options else "")


class CompletenessWarning(UserWarning):
    """An integrated-gradients result misses completeness by more than the engine's tolerance."""


class TruncationWarning(UserWarning):
    """An input longer than the model's limit was truncated (see ``models.max_input_length``)."""


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


def word_alignment(enc, tokenizer, text: str, text_pair: str | None):
    """``(word_ids, segments, words)`` of one tokenizer output (see ``Encoded``): the one rule of
    ``words.encoded_alignment`` (words of the original text, docs/words.md)."""
    return encoded_alignment(enc, tokenizer, text, text_pair)[:3]


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


def _is_sequence(item) -> bool:
    """An ``(input_ids, token_type_ids)`` pair of integer sequences (not a ``(text, text_pair)`` pair)."""
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (tuple, list))


def _is_oom(err: BaseException) -> bool:
    message = str(err).lower()
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in message or \
        "can't allocate memory" in message  # the CPU allocator's wording


def _unit_order(units) -> tuple:
    return tuple((u is None, -1 if u is None else u) for u in units)


class Engine:
    """Batches, caches and computes attributions for one model."""

    def __init__(self, model, tokenizer, cache=None, batch_size: int = 8, max_length: int | None = None,
                 progress: bool | None = None, completeness_tolerance: float = 0.05):
        """``max_length``: None for attrtools' one truncation rule (``models.max_input_length``: the
        model's position table and the tokenizer's limit), or an override (``--max-length``), which
        may not exceed the position table. Longer inputs are truncated, counted in
        ``stats["truncated"]`` and reported once each as a ``TruncationWarning``.

        ``completeness_tolerance``: integrated-gradients methods (AttAttr per layer, ig_embed) store
        their completeness gap in each ``Attribution.completeness``; a call whose worst relative
        gap exceeds this raises one ``CompletenessWarning`` (``stats["worst_completeness_gap"]``
        holds the worst gap of the last call).

        ``model``: as the user hands it over; a ``torch.compile``'d model is unwrapped to its
        original module and every computation runs in eval mode with checkpointing off, the
        caller's state restored afterwards (``attrtools.model_state``)."""
        model = unwrap_compiled(model)
        adapter_for(model)
        from .models import check_pooling

        # A decoder without a pad id, or whose tokenizer pads with another id, would read a pad position:
        # refused here, so every tool (attribute, evaluate, the audit's wrapper, ...) says so in one line.
        check_pooling(model, tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.cache = open_cache(cache)
        self.batch_size = batch_size
        self.max_length = max_input_length(model, tokenizer, max_length)
        self.completeness_tolerance = completeness_tolerance
        self.progress = enabled_default(progress) and distributed.is_main()
        self.stats = {"hits": 0, "computed": 0, "partial": 0, "units_computed": 0, "truncated": 0}
        self.truncated: dict[tuple, tuple[int, int]] = {}  # (text, text_pair) -> (original, kept) tokens
        self._unreported: list[tuple[str, int, int]] = []
        #: Optional hook for distributed runs: ``plan_filter(plan) -> indices of the planned batches
        #: this process computes`` in ``attribute`` (the others' results come back as None).
        self.plan_filter: Callable[[list[PlannedBatch]], Iterable[int]] | None = None
        self._call_fingerprints: tuple[str, str] | None = None
        self._tokenizer_fp = None
        self._partial: dict[int, dict] = {}
        #: Examples a streamed job (``stream``) tokenizes, plans, computes and reads back at a time:
        #: what it holds per example (encodings, targets, the plan) is bounded by this, not by the
        #: dataset. Every process of a distributed job uses the same windows.
        self.stream_window = _stream_window()
        self._remember = True  # False while a streamed job runs: entries skip the memory tier
        self.uses_token_types = adapter_for(model).uses_token_type_ids and \
            getattr(model.config, "type_vocab_size", 1) > 1

    @property
    def _uses_token_types(self) -> bool:  # the old private name
        return self.uses_token_types

    # ------------------------------------------------------------------------------ tokenizing
    def inputs(self, examples):
        """What comes in, by the one rule of ``attrtools.inputs.normalize`` (DataFrames, datasets,
        lists of dicts, token ids, ...); ``Encoded`` items pass as they are."""
        items, _ = normalize_inputs(examples, self.tokenizer, model_config=self.model.config,
                                         passthrough=(Encoded,))
        return items

    def encode(self, example: Example) -> Encoded:
        """Tokenize one example under the engine's truncation rule (``self.max_length``), with its
        word alignment (``Encoded.word_ids``, ``segments``, ``words``). A ``Tokenized`` example (the
        user's own token ids) is taken as it is (``attrtools.inputs.tokenized_fields``)."""
        example = Example.coerce(example)
        if isinstance(example, Tokenized):
            fields = tokenized_fields(example, self.tokenizer, self.max_length)
            word_ids, segments, words = word_alignment(fields, self.tokenizer, example.text, None)
            return Encoded(example, fields["input_ids"], fields["token_type_ids"], fields["special_tokens_mask"],
                           self.tokenizer.convert_ids_to_tokens(fields["input_ids"]), None,
                           word_ids=list(word_ids), segments=list(segments), words=words)
        kwargs = dict(return_special_tokens_mask=True, return_token_type_ids=True,
                      return_offsets_mapping=bool(getattr(self.tokenizer, "is_fast", False)))
        enc = self.tokenizer(example.text, example.text_pair, truncation=False, verbose=False, **kwargs)
        original = None
        if self.max_length is not None and len(enc["input_ids"]) > self.max_length:
            original = len(enc["input_ids"])
            enc = self.tokenizer(example.text, example.text_pair, truncation=True, max_length=self.max_length,
                                 **kwargs)
        ids = list(enc["input_ids"])
        if not ids:
            raise InputDataError(f"example {example.id!r} tokenizes to nothing")
        if original is not None:
            self._note_truncated(example, original, len(ids))
        word_ids, segments, words, offsets = encoded_alignment(enc, self.tokenizer, example.text, example.text_pair)
        return Encoded(example, ids, list(enc.get("token_type_ids") or [0] * len(ids)),
                       list(enc["special_tokens_mask"]), self.tokenizer.convert_ids_to_tokens(ids), original,
                       word_ids=list(word_ids), segments=list(segments), words=words, offsets=offsets)

    def _note_truncated(self, example: Example, original: int, kept: int):
        key = (example.text, example.text_pair)
        if key in self.truncated:
            return
        self.truncated[key] = (original, kept)
        self.stats["truncated"] += 1
        runreport.note_truncated(example.text, example.text_pair, original, kept)
        label = example.id if example.id is not None else (example.text[:40] + ("..." if len(example.text) > 40 else ""))
        self._unreported.append((str(label), original, kept))

    def report_truncation(self):
        """One ``TruncationWarning`` for the examples truncated since the last report (each example
        is reported once per engine): how many, and the original and kept lengths."""
        if not self._unreported:
            return
        shown = ", ".join(f"{label!r}: {original} -> {kept}" for label, original, kept in self._unreported[:5])
        more = f" and {len(self._unreported) - 5} more" if len(self._unreported) > 5 else ""
        warn(f"{len(self._unreported)} input(s) longer than the model's limit of {self.max_length} tokens "
             f"were truncated (tokens: original -> kept): {shown}{more}. Use --max-length / "
             f"max_length to change the limit (at most the model's position table).", TruncationWarning)
        self._unreported = []

    def encode_all(self, items: Iterable) -> list[Encoded]:
        """``encode`` each item; ``Encoded`` items (from this engine) are kept as they are."""
        return [e if isinstance(e, Encoded) else self.encode(e) for e in items]

    def collate(self, encoded: Sequence) -> dict:
        """Right-padded model inputs on the model's device (see the module function ``collate``)."""
        return collate(encoded, batch_pad_id(self.model, self.tokenizer), model_device(self.model),
                       self.uses_token_types)

    # ------------------------------------------------------------------------------ batching
    def plan(self, items: Sequence, batch_size: int | None = None, *, max_tokens: int | None = None,
             steps: int = 1, groups: Sequence | None = None) -> list[PlannedBatch]:
        """The batch plan of ``items`` (``Encoded`` or ``(input_ids, token_type_ids)`` pairs):
        ``plan_batches`` over their lengths, ``batch_size`` defaulting to the engine's (None with
        ``max_tokens`` alone: the token budget only)."""
        if batch_size is None and max_tokens is None:
            batch_size = self.batch_size
        lengths = [e.length if isinstance(e, Encoded) else len(e[0]) for e in items]
        return plan_batches(lengths, batch_size, max_tokens=max_tokens, steps=steps, groups=groups)

    def batches(self, items: Iterable, batch_size: int | None = None, *, plan: list[PlannedBatch] | None = None,
                subset: Iterable[int] | None = None, max_tokens: int | None = None, steps: int = 1,
                groups: Sequence | None = None) -> Iterator[EncodedBatch]:
        """Length-sorted, dynamically padded batches of ``items``, each with its collated inputs.

        ``items``: examples (anything ``Example.coerce`` takes; tokenized once here), ``Encoded``
        items, or ``(input_ids, token_type_ids)`` pairs. ``plan``: a plan from ``Engine.plan`` /
        ``plan_batches`` (default: made here from the other arguments). ``subset``: indices of the
        planned batches to yield (default all), in plan order; a distributed job gives each process
        its share of the same plan. ``EncodedBatch.members`` map each row back to its item."""
        items = [e if isinstance(e, Encoded) or _is_sequence(e) else self.encode(e) for e in items]
        if plan is None:
            plan = self.plan(items, batch_size, max_tokens=max_tokens, steps=steps, groups=groups)
        chosen = plan if subset is None else [plan[k] for k in sorted(set(subset))]
        for planned in chosen:
            members = [items[i] for i in planned.members]
            yield EncodedBatch(planned, members, self.collate(members))

    def scatter(self, items: Iterable, fn: Callable[[EncodedBatch], Sequence], batch_size: int | None = None,
                **plan_options) -> list:
        """``fn(batch)`` over the planned batches of ``items``, its rows put back in input order.

        ``fn`` returns one row per batch member (a tensor's first dimension or a list)."""
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
        """``(N, C)`` float logits of encoded inputs, in their order (the engine's batch plan)."""
        if not encoded:
            return torch.zeros(0)
        rows = self.scatter(encoded, lambda b: self.model(**b.inputs).logits.float().cpu(), batch_size)
        return torch.stack(rows)

    # ------------------------------------------------------------------------------ keys
    def key(self, enc: Encoded, method: str, params: dict, target_spec, unit=None) -> str:
        """sha256 over model fingerprint, tokenizer fingerprint, input (and segment) ids, target
        (the resolved class index, never a spec such as ``"pred"``), method, params (minus
        ``VOLATILE_PARAMS``), unit and the payload format version."""
        model_fp, tokenizer_fp = self._fingerprints()
        payload = {
            "model": model_fp,
            "tokenizer": tokenizer_fp,
            "input_ids": enc.input_ids,
            "token_type_ids": enc.token_type_ids if self.uses_token_types else None,
            "target": target_spec,
            "method": method,
            "params": {k: v for k, v in sorted(params.items()) if k not in VOLATILE_PARAMS},
            "unit": unit,
            "format": FORMAT_VERSION,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def _fingerprints(self) -> tuple[str, str]:
        """(model, tokenizer) fingerprints; fixed for the duration of one ``attribute`` call (the
        model is not modified while it runs), recomputed (memoised) otherwise."""
        if self._call_fingerprints is not None:
            return self._call_fingerprints
        stamp = (id(self.tokenizer), len(self.tokenizer))
        if self._tokenizer_fp is None or self._tokenizer_fp[0] != stamp:
            self._tokenizer_fp = (stamp, tokenizer_fingerprint(self.tokenizer))
        return fingerprint(self.model), self._tokenizer_fp[1]

    # ------------------------------------------------------------------------------ main entry
    def attribute(self, examples: Iterable, method: str = "attattr", target=None,
                  batch_size: int | None = None, **params) -> list[Attribution]:
        """One ``Attribution`` per example, in input order (see ``attrtools.attribute``).

        Args:
            examples: anything ``Example.coerce`` takes, or ``Encoded`` items from this engine
                (no second tokenization).
            method: a registered method name; target: None/"pred", "gold", a class index, or
                one per example; batch_size: examples per batch (default: the engine's);
            **params: the method's parameters (checked against its schema first).

        The cache is asked first (per example and unit); the examples it lacks are planned
        (``plan_batches``: grouped by the units they miss, length-sorted), computed batch by
        batch, and every computed batch is written to the cache before the next one starts,
        so a killed job loses at most the batch in flight. Out of memory: the batch halves,
        then the method's internal batch; at 1 and 1 the error is raised. With ``plan_filter``
        set, only the chosen planned batches are computed (the others' results are None).

        Returns ``Attribution`` objects whose ``scores`` have the layout of the method's
        ``kind`` (``(L, H, n, n)``, ``(L, n, n)`` or ``(n,)``, cropped to each example).
        Raises ``UnknownMethodError``, ``ParameterError``, ``UnsupportedArchitecture``,
        ``InputDataError`` (see ``attrtools.attribute``)."""
        examples = self.inputs(examples)
        self._call_fingerprints = self._fingerprints()
        try:
            with inference_state(self.model):
                results = self._attribute(examples, method, target, batch_size, **params)
        finally:
            self._call_fingerprints = None
        self._report_completeness(results)
        return results

    def _report_completeness(self, results):
        tally = _GapTally(self.completeness_tolerance)
        for r in results:
            tally.add(r)
        self._report_gaps(tally)

    def _report_gaps(self, tally: "_GapTally"):
        """``stats`` and the run report (``runreport``) from a call's completeness tally, and one
        ``CompletenessWarning`` when some result misses by more than the tolerance."""
        if tally.worst is None:
            self.stats.pop("worst_completeness_gap", None)
            return
        worst, method, example_id, where = tally.worst
        self.stats["worst_completeness_gap"] = worst
        runreport.note_completeness(worst, method, example_id, where)
        hint = precision_hint() if (tally.over or tally.unmet) else ""
        if tally.over:
            warn(
                f"{method}: {tally.over} of {tally.count} attribution(s) miss IG completeness by more than "
                f"{self.completeness_tolerance:g} (relative); worst {worst:.3g} on example "
                f"{example_id!r}{f' (layer {where})' if where is not None else ''}. The integral has not "
                "converged" + (f": {hint}" if hint else ""),
                CompletenessWarning)
        if tally.unmet:
            from .methods.integration import IntegrationWarning

            warn(f"{method}: {tally.unmet} of {tally.count} attribution(s) did not meet their tolerance with the "
                 f"nested rule's 63 nodes (worst estimate {tally.worst_estimate:.3g}; a kink or a sharp region in "
                 "the integrand); their completeness records say met=False" + (f": {hint}" if hint else ""),
                 IntegrationWarning)

    def _prepare(self, examples, method, target, batch_size=None, **params):
        """Tokenize, resolve target specs and units: what every path of ``attribute`` starts from."""
        impl = method_registry.get(method)
        impl.check_model(self.model)
        params = impl.params(**params)
        encoded = self.encode_all(examples)
        examples = [e.example for e in encoded]
        # attrtools.memory.announce: one line with the estimated peak before a long job (once per new peak)
        announce(impl.name, self.model, [e.length for e in encoded], batch_size or self.batch_size, params,
                 seen=self.__dict__.setdefault("_announced", {}))
        if hasattr(impl, "check_lengths"):  # a method's own cap on input length, before any work (flow)
            impl.check_lengths(self.model, [e.length for e in encoded], **params)
        check_unknown_share(self.tokenizer, [e.input_ids for e in encoded], [e.special_tokens_mask for e in encoded])
        self.report_truncation()
        if isinstance(target, Sequence) and not isinstance(target, str) and len(target) != len(examples):
            raise ParameterError(f"target lists {len(target)} target(s) for {len(examples)} example(s): give one per "
                                 "example, or None/'pred', 'gold' or a class index for all")
        specs = [resolve_target_spec(target, e, i) for i, e in enumerate(examples)] if impl.needs_target(params) \
            else [None] * len(examples)
        specs = self._resolve_targets(encoded, specs, batch_size)
        units = impl.units(self.model, params)
        unit_list = units if units is not None else [None]
        return impl, params, encoded, specs, unit_list

    def _attribute(self, examples, method, target, batch_size, **params):
        self._partial = {}
        if distributed.sharding():
            return list(self._sharded(examples, method, target, batch_size, params, emit="all"))
        impl, params, encoded, specs, unit_list = self._prepare(examples, method, target, batch_size, **params)

        results: list[Attribution | None] = [None] * len(encoded)
        pending: dict[int, list] = {}
        for i, enc in enumerate(encoded):
            missing = self._lookup(i, enc, impl, params, specs[i], unit_list, results)
            if missing:
                pending[i] = missing

        # Examples missing the same units share batches (so a partially cached example only
        # recomputes its missing units); within that, length-sorted for tight padding.
        # attrtools.memory: the batch lowered (with a warning) where its estimated peak exceeds the device's
        # memory; not under a plan_filter (every process of a distributed job must plan the same batches)
        batch_size = batch_size or self.batch_size
        if pending and self.plan_filter is None:
            batch_size = fit_batch(impl.name, self.model, [encoded[i].length for i in pending], batch_size, params)
        plan = self.plan_pending(encoded, pending, batch_size, params)
        if self.plan_filter is not None:
            plan = [plan[k] for k in sorted(set(self.plan_filter(plan)))]
        bar = _progress(len(encoded), self.progress, f"{method}")
        bar.update(len(encoded) - len(pending))
        self._run([list(planned.members) for planned in plan], batch_size, encoded, impl, params,
                  specs, pending, results, bar.update)
        bar.close()
        return results  # type: ignore[return-value]

    def _run(self, chunks, batch_size, encoded, impl, params, specs, pending, results, done=None):
        """Compute the planned batches ``chunks`` (lists of example indices, from ``plan_pending``)
        in order, backing off on out-of-memory errors (the back-off sticks: a batch larger than the
        reduced size is split). Returns the (possibly reduced) ``params, batch_size``."""
        queue = [list(chunk) for chunk in chunks]
        while queue:
            chunk = queue.pop(0)
            if len(chunk) > batch_size:  # after an out-of-memory back-off
                queue[:0] = [chunk[k: k + batch_size] for k in range(0, len(chunk), batch_size)]
                continue
            try:
                self._compute_batch(chunk, encoded, impl, params, specs, pending, results)
            except RuntimeError as err:
                if not _is_oom(err):
                    raise
                params, batch_size = self._back_off(err, params, batch_size, encoded, chunk)
                queue.insert(0, chunk)
                continue
            if done is not None:
                done(len(chunk))
        return params, batch_size

    # ------------------------------------------------------------------------------ plan, shards, streams
    def plan_pending(self, encoded, pending: dict, batch_size: int, params: dict) -> list[PlannedBatch]:
        """The batches ``attribute`` computes for the examples the cache lacks, in order: the one
        planner ``plan_batches`` over ``pending`` (example index -> missing units), grouped by the
        units missed (examples missing the same units share batches), length-sorted. Each
        ``PlannedBatch.members`` holds indices into ``encoded``; ``cost`` estimates the work as
        rows x (padded tokens)^2 x steps x missing units. Deterministic: every rank of a
        distributed job computes the same plan from the same ``pending``."""
        todo = sorted(pending)
        steps = params.get("steps")
        steps = steps if isinstance(steps, int) else 8 if steps else 1  # "auto": about 8 passes on trained models
        plan = plan_batches([encoded[i].length for i in todo], batch_size,
                            groups=[_unit_order(pending[i]) for i in todo], steps=steps)
        return [replace(planned, members=tuple(todo[m] for m in planned.members),
                        cost=planned.cost * len(pending[todo[planned.members[0]]]))
                for planned in plan]

    def stream(self, examples, method: str = "attattr", target=None, batch_size: int | None = None,
               **params):
        """Like ``attribute`` but yields the ``Attribution`` objects one at a time in input order,
        in memory independent of the dataset's size: ``examples`` (any iterable, read once) go in
        windows of ``stream_window`` examples; each window is tokenized, planned, computed into the
        cache (batch by batch) and read back before the next one is read. Entries go to the disk
        tier only (a one-pass job would only fill the memory tier). Under a launcher
        (``WORLD_SIZE > 1``) each rank computes its share of each window's plan and only rank 0
        yields. Needs a cache that keeps entries (a disk or object-store tier); without one it
        falls back to ``attribute`` (results held in memory).

        A per-example ``target`` list is consumed alongside the examples. The IG completeness
        report (``stats``, ``run_report()``, ``CompletenessWarning``) comes when the stream ends."""
        examples = self.inputs(examples)
        if self.cache is None or not getattr(self.cache, "disk", True):
            if distributed.sharding():
                raise distributed.DistributedError(
                    "a distributed job needs the attribution cache on storage every rank sees (drop --no-cache)")
            yield from self.attribute(examples, method, target, batch_size, **params)
            return
        tally = _GapTally(self.completeness_tolerance)
        self._call_fingerprints = self._fingerprints()
        try:
            with inference_state(self.model):
                for result in self._sharded(examples, method, target, batch_size, params, emit="main"):
                    tally.add(result)
                    yield result
        finally:
            self._call_fingerprints = None
        self._report_gaps(tally)

    def _sharded(self, examples, method, target, batch_size, params, emit: str):
        """Compute this rank's share of the plan into the cache, wait for every rank, then read the
        results back in input order (``emit``: "main" yields on rank 0 only, window by window of
        ``stream_window`` examples, bypassing the memory tier; "all" yields on every rank, the
        examples as one window)."""
        here = distributed.init() if distributed.sharding() else distributed.World()
        if self.cache is None or not getattr(self.cache, "disk", True):
            raise distributed.DistributedError(
                "a distributed job needs the attribution cache on storage every rank sees (drop --no-cache)")
        distributed.check_shared_cache(self.cache)
        batch_size = batch_size or self.batch_size
        window = self.stream_window if emit == "main" else None
        self.last_plan = {"world_size": here.size, "window": window, "batches": []}
        total = len(examples) if hasattr(examples, "__len__") else None
        bar = _progress(total, self.progress and here.is_main, f"{method}")
        offset = 0
        try:
            for chunk, targets in _windows(examples, target, window):
                yield from self._shard_window(chunk, offset, method, targets, batch_size, params, emit, here, bar)
                offset += len(chunk)
        finally:
            bar.close()

    def _shard_window(self, examples, offset, method, target, batch_size, params, emit, here, bar):
        """One window of ``_sharded``: ``offset`` is its first example's position in the job."""
        streamed = emit == "main"
        with self._memory_tier(not streamed):
            impl, params, encoded, specs, unit_list = self._prepare(examples, method, target, batch_size, **params)
            # Rank 0 looks up what is missing and every rank takes that: nobody computes (and writes)
            # before the lookup is complete, so all ranks plan from the same state of the cache.
            pending = None
            if here.is_main:
                pending = {}
                for i, enc in enumerate(encoded):
                    missing = self._missing(enc, impl, params, specs[i], unit_list)
                    if missing:
                        pending[i] = missing
            pending = distributed.broadcast(pending)
            batches = self.plan_pending(encoded, pending, batch_size, params)
            distributed.agree(_plan_digest(batches, pending), "the batch plan")
            costs = [b.cost for b in batches]
            ranks = distributed.assign(costs, here.size)
            mine = [b for b, r in enumerate(ranks) if r == here.rank]
            self.last_plan["batches"].extend(
                {"indices": [offset + i for i in b.members], "units": list(pending[b.members[0]]), "cost": b.cost,
                 "rank": r} for b, r in zip(batches, ranks))
            counter = distributed.Counter(f"{method}-examples")
            done = bar.n + len(encoded) - len(pending)
            bar.update(len(encoded) - len(pending))

            def report(count):
                bar.n = done + count
                bar.refresh()

            before = {k: self.stats[k] for k in ("computed", "units_computed")}
            for b in mine:
                params, batch_size = self._run([list(batches[b].members)], batch_size, encoded, impl, params, specs,
                                               pending, _Discard(),
                                               lambda n: report(counter.add(n)) if here.is_main else counter.add(n))
                _trim_heap()
            counter.wait(len(pending), report if here.is_main else None)
            # the job's counts, not this rank's: every rank reports the single process's numbers
            parts = distributed.all_gather({k: self.stats[k] - v for k, v in before.items()})
            for k, v in before.items():
                self.stats[k] = v + sum(part[k] for part in parts)
            self.stats["hits"] += len(encoded) - len(pending)
            self.stats["partial"] += sum(1 for units in pending.values() if len(units) < len(unit_list))
        if emit == "main" and not here.is_main:
            return
        for i, enc in enumerate(encoded):
            result: list = [None]
            with self._memory_tier(not streamed):
                missing = self._lookup_into(enc, impl, params, specs[i], unit_list, result)
                if missing:  # vanished meanwhile (evicted, deleted): compute it alone
                    self._partial = {}
                    holder = {0: None}
                    self._compute_batch([0], [enc], impl, params, [specs[i]], {0: missing}, holder)
                    result[0] = holder[0]
            yield result[0]
        _trim_heap()

    @contextlib.contextmanager
    def _memory_tier(self, on: bool):
        """Whether cache reads and writes in the block keep entries in the cache's memory tier."""
        saved, self._remember = self._remember, on
        try:
            yield
        finally:
            self._remember = saved

    def _missing(self, enc, impl, params, spec, unit_list) -> list:
        """The units of one example the cache does not hold (read nothing but existence when the
        cache can tell it)."""
        full = reduction.full_params(params)  # a reduced unit is there when its full entry is (as in _lookup)
        if hasattr(self.cache, "__contains__") and hasattr(self.cache, "path"):
            return [u for u in unit_list if all(self.key(enc, impl.name, p, spec, u) not in self.cache
                                                for p in (params, full) if p is not None)]
        return [u for u in unit_list if all(self._get(self.key(enc, impl.name, p, spec, u)) is None
                                            for p in (params, full) if p is not None)]

    def _lookup_into(self, enc, impl, params, spec, unit_list, out: list):
        saved, self._partial = self._partial, {}
        try:
            hits_before = self.stats["hits"]
            missing = self._lookup(0, enc, impl, params, spec, unit_list, out)
            self.stats["hits"] = hits_before
            return missing
        finally:
            self._partial = saved

    def _back_off(self, err, params, batch_size, encoded, chunk):
        """After an out-of-memory error: halve the batch; at batch size 1, halve the method's
        internal batch (rows per pass) instead; at 1 and 1, give up with the original error."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if batch_size > 1:
            self.stats["oom_backoffs"] = self.stats.get("oom_backoffs", 0) + 1
            return params, max(1, batch_size // 2)
        if "internal_batch_size" in params:
            # None means the method's own default; AttAttr's is about 4096 tokens per pass.
            current = params["internal_batch_size"] or max(1, 4096 // max(encoded[i].length for i in chunk))
            if current > 1:
                self.stats["oom_backoffs"] = self.stats.get("oom_backoffs", 0) + 1
                return dict(params, internal_batch_size=max(1, current // 2)), batch_size
        raise err

    # ------------------------------------------------------------------------------ internals
    def _get(self, key):
        if getattr(self.cache, "accepts_device", False):
            return self.cache.get(key, device=model_device(self.model), **self._tier_options())
        return self.cache.get(key)

    def _tier_options(self) -> dict:
        """``remember=False`` for a cache with a memory tier while a streamed job runs."""
        return {} if self._remember or not getattr(self.cache, "accepts_remember", False) else {"remember": False}

    def _lookup(self, i, enc, impl, params, spec, unit_list, results):
        """Fill results[i] from the cache if every unit is there; else return the missing units
        (the units found are kept in ``self._partial[i]`` for reassembly)."""
        if self.cache is None:
            return list(unit_list)
        found, missing, meta, records = {}, [], None, {}
        for unit in unit_list:
            key = self.key(enc, impl.name, params, spec, unit)
            hit = self._get(key) or reduction.from_full(self._get, lambda p: self.key(enc, impl.name, p, spec, unit),
                                                        params)
            problem = hit is not None and _hit_problem(hit[0], hit[1], enc, impl, spec, unit,
                                                       getattr(self.model.config, "num_labels", None),
                                                       self.model.config, params.get("reduce"))
            if problem:
                # Only a forged or buggy entry gets here (the checksum covers the metadata):
                # dropped and recomputed, never served.
                if hasattr(self.cache, "invalidate"):
                    self.cache.invalidate(key, problem)
                hit = None
            if hit is None:
                missing.append(unit)
            else:
                found[unit] = hit[0]
                meta = hit[1]
                if meta.get("completeness") is not None:
                    records[unit] = meta["completeness"]
        if missing:
            if found:
                self._partial[i] = (found, records)
            return missing
        scores = found[None] if unit_list == [None] else torch.cat([found[u] for u in unit_list], dim=0)
        results[i] = self._build(enc, impl, params, scores, meta["target"], meta["predicted"], meta["probs"],
                                 records)
        self.stats["hits"] += 1
        return []

    def _resolve_targets(self, encoded, specs, batch_size=None) -> list:
        """Spec -> class index for every example: ``"pred"`` by one clean forward (length-sorted
        batches), class indices checked against the model's outputs. Cache keys hold the resolved
        class, so every tool and every spelling of the same class share entries."""
        need = [i for i, spec in enumerate(specs) if spec == "pred"]
        resolved = list(specs)
        if need:
            logits = self._forward([encoded[i] for i in need], batch_size)
            for i, row in zip(need, logits):
                resolved[i] = int(row.argmax())
        num_classes = int(getattr(self.model.config, "num_labels", 0) or 0)
        if num_classes:
            check_target_classes(resolved, num_classes)
        return resolved

    def _compute_batch(self, chunk, encoded, impl, params, specs, pending, results):
        encs = [encoded[i] for i in chunk]
        inputs = self.collate(encs)
        with torch.no_grad():
            logits = self.model(**inputs).logits.float()
        predicted = logits.argmax(-1)
        targets = torch.tensor([specs[i] if specs[i] is not None else -1 for i in chunk], device=logits.device)
        check_target_classes([specs[i] for i in chunk], logits.shape[-1])  # the outputs' own count
        batch = Batch(inputs=inputs, lengths=[e.length for e in encs],
                      targets=targets if impl.needs_target(params) else None, logits=logits,
                      labels=[e.example.label for e in encs])
        units = list(pending[chunk[0]])  # the same for every example of the chunk
        with precision.forward_dtype(self.model, impl.name):  # the one dtype rule (attrtools.precision)
            # attrtools.reduction: the method's payloads, reduced as params["reduce"] declares before the cache write
            payloads = reduction.compute(impl, self.model, batch, None if units == [None] else units, params)
        precision.check_finite(payloads, self.model, impl.name)  # an fp16 overflow is refused, never cached
        probs = heads.stored_probabilities(logits, self.model)  # the one rule (softmax / sigmoid / none)
        model_fp = self._fingerprints()[0]
        for r, i in enumerate(chunk):
            target = int(targets[r]) if specs[i] is not None else None
            meta = {"target": target, "predicted": int(predicted[r]), "probs": probs[r],
                    "model_name": _model_name(self.model)}  # for `cache info` (not in the key)
            scores = precision.accumulate(payloads[r].detach())  # payloads are fp32 whatever the model's dtype
            records = dict(batch.info[r].get("completeness") or {})
            if self.cache is not None:
                for pos, unit in enumerate(units):
                    part = scores if unit is None else scores[pos: pos + 1]
                    extra = {"completeness": records[unit]} if unit in records else {}
                    self.cache.put(self.key(encoded[i], impl.name, params, specs[i], unit), part,
                                   dict(meta, method=impl.name, kind=impl.kind, model=model_fp, unit=unit,
                                        n_tokens=encoded[i].length, **extra), **self._tier_options())
            self.stats["units_computed"] += len(units)
            partial = self._partial.pop(i, None)
            if partial:
                # Some units came from the cache: reassemble the full payload in unit order.
                partial, cached_records = partial
                records = {**cached_records, **records}
                parts = dict(partial)
                parts.update({unit: scores[pos: pos + 1] for pos, unit in enumerate(units)})
                scores = torch.cat([parts[u] for u in impl.units(self.model, params)], dim=0)
                self.stats["partial"] += 1
            results[i] = self._build(encoded[i], impl, params, scores, target, meta["predicted"], meta["probs"],
                                     records)
            self.stats["computed"] += 1

    def _build(self, enc: Encoded, impl, params, scores, target, predicted, probs, records=None) -> Attribution:
        public = {k: v for k, v in params.items()}
        gone = pruned_heads(self.model)
        if gone:  # a physically pruned model: these heads read 0 in (L, H) payloads (original numbering)
            public["_pruned_heads"] = {str(l): hs for l, hs in gone.items()}
        public["_signed"] = bool(impl.is_signed(params))
        public["_compute_dtype"] = precision.describe(self.model, impl.name)  # attrtools.precision: the one rule
        return Attribution(
            completeness=completeness_summary(records, impl.units(self.model, params)),
            original_length=enc.original_length,
            tokens=enc.tokens, input_ids=enc.input_ids, scores=scores, kind=impl.kind, method=impl.name,
            params=public, target=target, predicted=predicted, probs=probs, label=enc.example.label,
            text=enc.example.text, text_pair=enc.example.text_pair, example_id=enc.example.id,
            segment_ids=enc.token_type_ids or [], special_tokens_mask=enc.special_tokens_mask,
            label_names=_label_names(self.model.config),
            pool_position=pool_index(self.model, enc.input_ids), multi_label=heads.is_multi_label(self.model),
            token_offsets=list(enc.offsets),
        )


def _hit_problem(scores, meta, enc: Encoded, impl, spec, unit, num_classes, head=None, reduce=None) -> str | None:
    """Why a cache hit cannot be the attribution asked for (None when it fits): the metadata's
    structure and values, and the payload's shape, checked against the example and the method."""
    if not isinstance(meta, dict):
        return "metadata is not a dict"
    if meta.get("method") not in (None, impl.name) or meta.get("kind") not in (None, impl.kind):
        return f"entry is for method {meta.get('method')!r}/{meta.get('kind')!r}"
    predicted, target, probs = meta.get("predicted"), meta.get("target"), meta.get("probs")
    classes = num_classes if isinstance(num_classes, int) and num_classes > 0 else None
    if type(predicted) is not int or predicted < 0 or (classes and predicted >= classes):
        return f"predicted class {predicted!r} is not a class of the model"
    if spec is None:
        if target is not None:
            return f"target {target!r} for a class-agnostic method"
    elif type(target) is not int or (target != predicted if spec == "pred" else target != spec):
        return f"target {target!r} does not match the requested {spec!r}"
    wrong = heads.probs_problem(probs, head, classes)
    if wrong:
        return wrong
    n = enc.length
    shape = tuple(scores.shape)
    expected_tail = reduction.payload_tail(impl.kind, n, reduce)
    if shape[len(shape) - len(expected_tail):] != expected_tail or \
            (impl.kind == "tokens" and unit is None and len(shape) != 1) or (unit is not None and shape[:1] != (1,)):
        return f"payload shape {list(shape)} does not fit a {n}-token example of kind {impl.kind}"
    return None


def completeness_summary(records: dict | None, units) -> dict | None:
    """``{unit: completeness_record}`` -> the ``Attribution.completeness`` dict: lists ``sum``,
    ``delta``, ``gap``, ``relative_gap`` in unit order (one per layer for AttAttr, one entry for
    single-unit methods), ``worst_relative_gap`` and ``worst_unit`` (the layer, or None), and
    where the method recorded its integral (``methods.integration.integration_record``) the lists
    ``rule``, ``passes``, ``error_estimate``, ``tolerance`` and ``met``."""
    if not records:
        return None
    order = [u for u in (units if units is not None else [None]) if u in records or str(u) in records]
    order = order or list(records)
    rows = [records.get(u, records.get(str(u))) for u in order]
    worst = max(range(len(rows)), key=lambda k: rows[k]["relative_gap"])
    out = {key: [float(row[key]) for row in rows] for key in ("sum", "delta", "gap", "relative_gap")}
    for key in ("rule", "passes", "error_estimate", "tolerance", "met"):  # the integral's record, where kept
        if all(key in row for row in rows):
            out[key] = [row[key] for row in rows]
    out.update(units=list(order), worst_relative_gap=float(rows[worst]["relative_gap"]), worst_unit=order[worst])
    return out
_LIBC = []


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``) between batches of a streamed
    job: batches of varying shapes fragment the heap, and without this the resident size of a long
    job creeps up with the number of batches although nothing is kept. A no-op off glibc."""
    if not _LIBC:
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else None
            _LIBC.append(libc if libc is not None and hasattr(libc, "malloc_trim") else None)
        except OSError:
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0].malloc_trim(0)


def _stream_window() -> int:
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


def _windows(examples, target, window: int | None):
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


def _plan_digest(batches, pending) -> str:
    text = json.dumps([[list(b.members), list(pending[b.members[0]]), b.cost] for b in batches], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _GapTally:
    """The worst IG completeness gap of a call's results, kept as they pass (nothing else held)."""

    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.count = 0  # results with a completeness record
        self.over = 0  # ... whose worst relative gap exceeds the tolerance
        self.worst = None  # (gap, method, example_id, worst unit)
        self.unmet = 0  # ... whose adaptive integral missed its tolerance (methods.integration)
        self.worst_estimate = 0.0

    def add(self, result) -> None:
        if result is None or not result.completeness:
            return
        missed = [e for e, met in zip(result.completeness.get("error_estimate") or [], result.completeness.get("met") or [])
                  if met is False]
        if missed:
            self.unmet += 1
            self.worst_estimate = max([self.worst_estimate] + [e for e in missed if e is not None])
        gap = result.completeness["worst_relative_gap"]
        self.count += 1
        self.over += gap > self.tolerance
        if self.worst is None or gap > self.worst[0]:
            self.worst = (gap, result.method, result.example_id, result.completeness.get("worst_unit"))


class _Discard(dict):
    """A results sink that keeps nothing (computed results live in the cache)."""

    def __setitem__(self, key, value):
        pass


class _NullBar:
    n = 0

    def update(self, n=1):
        self.n += n

    def refresh(self):
        pass

    def close(self):
        pass


def _label_names(config) -> list[str]:
    """Class names in id order from ``config.id2label``; ``[]`` for transformers' ``LABEL_k`` placeholders."""
    mapping = getattr(config, "id2label", None) or {}
    names = [mapping.get(k, mapping.get(str(k))) for k in range(len(mapping))]
    if not names or any(n is None for n in names) or all(str(n).upper().startswith("LABEL_") for n in names):
        return []
    return [str(n) for n in names]


def _progress(total: int, enabled: bool, desc: str):
    if not enabled or total == 0:
        return _NullBar()
    from .progress import tqdm_class

    tqdm = tqdm_class()

    return tqdm(total=total, desc=desc, unit="ex")


def _model_name(model) -> str | None:
    """The hub id or folder a model was loaded from (``config._name_or_path``), for people reading
    the cache (``attrtools cache info``); None when unknown."""
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(model, "name_or_path", None)
    return str(name) if name else None
