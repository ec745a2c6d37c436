"""The engine: the single entry through which tools and the CLI get attributions.

``Engine(model, tokenizer, cache).attribute(examples, method, target, **params)`` runs one loop:

1. **prepare** (``_prepare``): tokenize (``attrtools.encoding``: one truncation rule), check the
   method and its parameters, resolve targets with one clean forward;
2. **look up** (``_look_up``): per example and unit, take the hits from the cache
   (``attrtools.entries``: keys and hit validation behind a declared cache interface);
3. **plan** (``batching.plan_pending``): batch the misses by the units they miss, length-sorted
   with dynamic padding;
4. **compute with back-off** (``_compute``): batch by batch through the method; an out-of-memory
   error halves the batch, at batch size 1 the method's internal batch (``internal_batch_size``,
   rows per pass), at 1 and 1 it is raised (cache keys leave ``internal_batch_size`` out);
5. **write** each computed batch to the cache before the next one starts, so a killed job loses at
   most the batch in flight (an example with only some units cached recomputes only those);
6. **build** the ``Attribution`` objects in input order and report IG completeness
   (``attrtools.completeness``).

Every call keeps its state in a ``Call`` and its counts in a ``CallStats`` returned with the
results (``Attributions.stats``, ``AttributionStream.stats``); ``Engine.stats`` adds up every call.
Under a launcher (``stream``, or ``attribute`` with ``WORLD_SIZE > 1``) steps 2-5 follow the one
protocol of ``attrtools.memo``: rank 0 looks up, every rank plans the same batches and computes its
share into the cache, and the results are read back from it.

``cache``: an ``AttributionCache`` (or any object with ``get(key) -> (tensor, meta) | None`` and
``put(key, tensor, meta)``), ``True`` for the default cache folder, a folder path, or None.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from . import distributed, heads, precision, reduction
from . import methods as method_registry
from .batching import Batcher, stream_window
from .cache import open_cache
from .calls import AttributionStream, Call, CallStats, build, check_target_classes, model_name, resolve_target_spec
from .completeness import GapTally, report_gaps
from .encoding import Encoded, Encoder
from .entries import Entries
from .errors import ParameterError
from .guard import check_unknown_share
from .inputs import normalize as normalize_inputs
from .memory import announce, fit_batch
from .methods.base import Batch
from .model_state import inference_state, unwrap_compiled
from .adapters import adapter_for
from .models import fingerprint, max_input_length, model_device, tokenizer_fingerprint
from .progress import bar as progress_bar
from .progress import enabled_default
from .sharded import Sharded
from .types import Attributions, Example

# Public names users (and tests) import from here: the engine's own vocabulary, defined in its parts.
from .batching import EncodedBatch, PlannedBatch, collate, plan_batches
from .completeness import STEPS_HINT, STEPS_OPTIONS, CompletenessWarning, precision_hint
from .encoding import TruncationWarning, word_alignment
from .entries import VOLATILE_PARAMS
from .runreport import report as run_report, reset as reset_run_report

__all__ = ["Engine", "CallStats", "AttributionStream", "Encoded", "EncodedBatch", "PlannedBatch", "collate",
           "plan_batches", "CompletenessWarning", "TruncationWarning", "resolve_target_spec", "check_target_classes",
           "STEPS_HINT", "STEPS_OPTIONS", "precision_hint", "word_alignment", "VOLATILE_PARAMS", "run_report",
           "reset_run_report"]


class Engine(Sharded, Batcher):
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
        from .architecture import check_pooling

        # A decoder without a pad id, or whose tokenizer pads with another id, would read a pad position:
        # refused here, so every tool (attribute, evaluate, the audit's wrapper, ...) says so in one line.
        check_pooling(model, tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.cache = open_cache(cache)
        self.batch_size = batch_size
        self.completeness_tolerance = completeness_tolerance
        self.progress = enabled_default(progress) and distributed.is_main()
        #: Counts over every call of this engine (each call's own: the ``stats`` of its result).
        self.stats = {"hits": 0, "computed": 0, "partial": 0, "units_computed": 0, "truncated": 0}
        self._announced: dict = {}  # memory.announce: the largest estimate already printed, per method
        self.encoder = Encoder(tokenizer, max_input_length(model, tokenizer, max_length), self.stats)
        self._tokenizer_fp = None
        #: Examples a streamed job (``stream``) tokenizes, plans, computes and reads back at a time:
        #: what it holds per example (encodings, targets, the plan) is bounded by this, not by the
        #: dataset. Every process of a distributed job uses the same windows.
        self.stream_window = stream_window()
        self.uses_token_types = adapter_for(model).uses_token_type_ids and \
            getattr(model.config, "type_vocab_size", 1) > 1

    # ------------------------------------------------------------------------------ inputs and batches
    @property
    def max_length(self) -> int | None:
        return self.encoder.max_length

    @property
    def truncated(self) -> dict:
        """``(text, text_pair) -> (original, kept)`` token counts of the inputs truncated."""
        return self.encoder.truncated

    def inputs(self, examples):
        """What comes in, by the one rule of ``attrtools.inputs.normalize`` (DataFrames, datasets,
        lists of dicts, token ids, ...); ``Encoded`` items pass as they are."""
        return normalize_inputs(examples, self.tokenizer, model_config=self.model.config, passthrough=(Encoded,))[0]

    def encode(self, example: Example) -> Encoded:
        """Tokenize one example under the engine's truncation rule (``attrtools.encoding``)."""
        return self.encoder.encode(example)

    def encode_all(self, items: Iterable) -> list[Encoded]:
        """``encode`` each item; ``Encoded`` items (from this engine) are kept as they are."""
        return self.encoder.encode_all(items)

    def report_truncation(self):
        """One ``TruncationWarning`` for the examples truncated since the last report."""
        self.encoder.report_truncation()

    # ------------------------------------------------------------------------------ keys
    def key(self, enc: Encoded, method: str, params: dict, target_spec, unit=None) -> str:
        """The cache key of one (example, unit) result (``entries.Entries.key``)."""
        return self._entries(self._fingerprints()).key(enc, method, params, target_spec, unit)

    def _fingerprints(self) -> tuple[str, str]:
        """(model, tokenizer) fingerprints: taken once per call (the model is not modified while
        it runs), the tokenizer's memoised."""
        stamp = (id(self.tokenizer), len(self.tokenizer))
        if self._tokenizer_fp is None or self._tokenizer_fp[0] != stamp:
            self._tokenizer_fp = (stamp, tokenizer_fingerprint(self.tokenizer))
        return fingerprint(self.model), self._tokenizer_fp[1]

    def _entries(self, fingerprints) -> Entries:
        return Entries(self.cache, lambda: fingerprints, model_device(self.model), self.uses_token_types)

    # ------------------------------------------------------------------------------ the loop
    def attribute(self, examples: Iterable, method: str = "attattr", target=None,
                  batch_size: int | None = None, **params) -> Attributions:
        """One ``Attribution`` per example, in input order (see ``attrtools.attribute``).

        Args:
            examples: anything ``attrtools.inputs.normalize`` takes (``Example`` items, texts,
                DataFrames, datasets, token ids, ...), or ``Encoded`` items from this engine
                (no second tokenization).
            method: a registered method name; target: None/"pred", "gold", a class index, or
                one per example; batch_size: examples per batch (default: the engine's);
            **params: the method's parameters (checked against its schema first).

        Runs the loop of the module docstring (prepare, look up, plan, compute with back-off,
        write, build). Returns an ``Attributions`` list whose items' ``scores`` have the layout
        of the method's ``kind`` (``(L, H, n, n)``, ``(L, n, n)`` or ``(n,)``, cropped to each
        example) and whose ``stats`` (a ``CallStats``) say what this call did.
        Raises ``UnknownMethodError``, ``ParameterError``, ``UnsupportedArchitecture``,
        ``InputDataError`` (see ``attrtools.attribute``)."""
        return self.attribute_items(self.inputs(examples), method, target, batch_size, **params)

    def attribute_items(self, items: Sequence, method: str = "attattr", target=None,
                        batch_size: int | None = None, **params) -> Attributions:
        """``attribute`` for items already through ``attrtools.inputs.normalize`` (``Example``,
        ``Tokenized`` or ``Encoded``): what ``attrtools.attribute`` calls, normalizing once."""
        stats = CallStats()
        with inference_state(self.model):
            if distributed.sharding():
                results = list(self._sharded(items, method, target, batch_size, params, stats, emit="all"))
            else:
                results = self._attribute(items, method, target, batch_size, params, stats)
        tally = GapTally(self.completeness_tolerance)
        for r in results:
            tally.add(r)
        report_gaps(tally, self.completeness_tolerance, self.stats)
        out = Attributions(results)
        out.stats = stats
        return out

    def _attribute(self, examples, method, target, batch_size, params, stats: CallStats) -> list:
        call = self._prepare(examples, method, target, batch_size, params, stats)
        self._look_up(call)
        if call.pending:  # attrtools.memory: lowered (with a warning) where the estimated peak exceeds the device
            call.batch_size = fit_batch(call.impl.name, self.model, [call.encoded[i].length for i in call.pending],
                                        call.batch_size, call.params)
        plan = self.plan_pending(call.encoded, call.pending, call.batch_size, call.params)
        bar = progress_bar(len(call.encoded), method, unit="ex", enabled=self.progress)
        bar.update(len(call.encoded) - len(call.pending))
        self._compute(call, [list(planned.members) for planned in plan], bar.update)
        bar.close()
        return call.results

    def _prepare(self, examples, method, target, batch_size, params, stats: CallStats, fingerprints=None) -> Call:
        """Step 1: tokenize, check the method and its parameters, resolve target specs and units.
        ``fingerprints``: the call's (model, tokenizer) fingerprints when it has taken them."""
        impl = method_registry.get(method)
        impl.check_model(self.model)
        params = impl.params(**params)
        encoded = self.encode_all(examples)
        examples = [e.example for e in encoded]
        # attrtools.memory.announce: one line with the estimated peak before a long job (once per new peak)
        announce(impl.name, self.model, [e.length for e in encoded], batch_size or self.batch_size, params,
                 seen=self._announced)
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
        return Call(impl, params, encoded, specs, units if units is not None else [None],
                     batch_size or self.batch_size, self._entries(fingerprints or self._fingerprints()), stats, self.stats,
                     results=[None] * len(encoded))

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

    def _look_up(self, call: Call) -> None:
        """Step 2: every example's hits; complete ones built into ``call.results`` (and counted),
        the others' missing units in ``call.pending``."""
        for i in range(len(call.encoded)):
            missing = self._look_up_one(call, i)
            if missing:
                call.pending[i] = missing
            else:
                call.count(hits=1)

    def _look_up_one(self, call: Call, i: int) -> list:
        """Fill ``call.results[i]`` from the cache if every unit is there; else return the missing
        units (those found are kept in ``call.partial[i]`` for reassembly)."""
        if call.entries.cache is None:
            return list(call.units)
        enc = call.encoded[i]
        found, missing, meta, records = call.entries.find(enc, call.impl, call.params, call.specs[i], call.units,
                                                          self.model.config)
        if missing:
            if found:
                call.partial[i] = (found, records)
            return missing
        scores = found[None] if call.units == [None] else torch.cat([found[u] for u in call.units], dim=0)
        call.results[i] = build(self.model, call, enc, scores, meta, records)
        return []

    def _compute(self, call: Call, chunks, done=None) -> None:
        """Step 4: compute the planned batches ``chunks`` (lists of example indices) in order,
        backing off on out-of-memory errors (the back-off sticks: a batch larger than the reduced
        size is split); ``done(n)`` after each batch of ``n`` examples."""
        queue = [list(chunk) for chunk in chunks]
        while queue:
            chunk = queue.pop(0)
            if len(chunk) > call.batch_size:  # after an out-of-memory back-off
                queue[:0] = [chunk[k: k + call.batch_size] for k in range(0, len(chunk), call.batch_size)]
                continue
            try:
                self._compute_batch(call, chunk)
            except RuntimeError as err:
                if not _is_oom(err):
                    raise
                self._back_off(err, call, chunk)
                queue.insert(0, chunk)
                continue
            if done is not None:
                done(len(chunk))

    def _back_off(self, err, call: Call, chunk) -> None:
        """After an out-of-memory error: halve the batch; at batch size 1, halve the method's
        internal batch (rows per pass) instead; at 1 and 1, give up with the original error."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if call.batch_size > 1:
            call.batch_size = max(1, call.batch_size // 2)
        elif "internal_batch_size" in call.params:
            # None means the method's own default; AttAttr's is about 4096 tokens per pass.
            current = call.params["internal_batch_size"] or \
                max(1, 4096 // max(call.encoded[i].length for i in chunk))
            if current <= 1:
                raise err
            call.params = dict(call.params, internal_batch_size=max(1, current // 2))
        else:
            raise err
        call.count(oom_backoffs=1)

    def _compute_batch(self, call: Call, chunk: list) -> None:
        """Steps 4-6 for one batch: forward, method, write each example's units, build."""
        impl, encs = call.impl, [call.encoded[i] for i in chunk]
        inputs = self.collate(encs)
        with torch.no_grad():
            logits = self.model(**inputs).logits.float()
        predicted = logits.argmax(-1)
        targets = torch.tensor([call.specs[i] if call.specs[i] is not None else -1 for i in chunk],
                               device=logits.device)
        check_target_classes([call.specs[i] for i in chunk], logits.shape[-1])  # the outputs' own count
        batch = Batch(inputs=inputs, lengths=[e.length for e in encs],
                      targets=targets if impl.needs_target(call.params) else None, logits=logits,
                      labels=[e.example.label for e in encs])
        units = list(call.pending[chunk[0]])  # the same for every example of the chunk
        with precision.forward_dtype(self.model, impl.name):  # the one dtype rule (attrtools.precision)
            # attrtools.reduction: the method's payloads, reduced as params["reduce"] declares before the cache write
            payloads, siblings = reduction.compute(impl, self.model, batch, None if units == [None] else units,
                                                   call.params)
        precision.check_finite(payloads, self.model, impl.name)  # an fp16 overflow is refused, never cached
        probs = heads.stored_probabilities(logits, self.model)  # the one rule (softmax / sigmoid / none)
        for r, i in enumerate(chunk):
            meta = {"target": int(targets[r]) if call.specs[i] is not None else None, "predicted": int(predicted[r]),
                    "probs": probs[r], "model_name": model_name(self.model)}  # for `cache info` (not in the key)
            scores = precision.accumulate(payloads[r].detach())  # payloads are fp32 whatever the model's dtype
            records = dict(batch.info[r].get("completeness") or {})
            if call.entries.cache is not None:
                # the entry asked for, then the other reductions of the same computation (attrtools.reduction)
                for params, payload in [(call.params, scores)] + [
                        (dict(call.params, reduce=other), precision.accumulate(p.detach()))
                        for other, p in siblings[r].items()]:
                    call.entries.write(call.encoded[i], impl, params, call.specs[i], units, payload,
                                       dict(meta, model=call.entries.fingerprints()[0]), records)
            call.count(units_computed=len(units))
            if i in call.partial:  # some units came from the cache: reassemble the payload in unit order
                parts, cached_records = call.partial.pop(i)
                records = {**cached_records, **records}
                parts = {**parts, **{unit: scores[pos: pos + 1] for pos, unit in enumerate(units)}}
                scores = torch.cat([parts[u] for u in call.units], dim=0)
                call.count(partial=1)
            call.results[i] = build(self.model, call, call.encoded[i], scores, meta, records)
            call.count(computed=1)


def _is_oom(err: BaseException) -> bool:
    message = str(err).lower()
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in message or \
        "can't allocate memory" in message  # the CPU allocator's wording

