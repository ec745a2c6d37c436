"""The engine's loop across ranks and in windows: ``Engine.stream``, and ``Engine.attribute``
under a launcher (``WORLD_SIZE > 1``).

Each window of examples goes through the engine's loop with steps 2-5 by the one protocol of
``attrtools.memo``: rank 0 looks up what the cache lacks (``memo.on_main``), every rank builds the
same plan (``batching.plan_pending``, agreed by digest) and computes its cost-balanced share
(``memo.split``) into the shared cache, and the results are read back from it in input order
(rank 0 only for a stream; every rank for ``attribute``). The job's counts are gathered, so every
rank reports the single process's numbers.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from . import distributed, memo
from .batching import plan_digest, windows
from .calls import AttributionStream, Call, CallStats, Discard
from .completeness import GapTally, report_gaps
from .entries import as_engine_cache
from .model_state import inference_state
from .errors import DistributedError
from .memory import trim_heap
from .progress import bar as progress_bar
from .types import Attribution


class Sharded:
    """Mixed into ``Engine`` (whose ``_prepare``, ``_compute``, ``_compute_batch``, ``_look_up_one``,
    ``attribute_items``, ``inputs``, ``plan_pending``, ``model``, ``cache``, ``progress``,
    ``completeness_tolerance``, ``stats`` and ``stream_window`` it uses)."""

    def stream(self, examples, method: str = "attattr", target=None, batch_size: int | None = None,
               **params) -> AttributionStream:
        """Like ``attribute`` but yields the ``Attribution`` objects one at a time in input order,
        in memory independent of the dataset's size: ``examples`` (any iterable, read once) go in
        windows of ``stream_window`` examples; each window is tokenized, planned, computed into the
        cache (batch by batch) and read back before the next one is read. Entries go to the disk
        tier only (a one-pass job would only fill the memory tier). Under a launcher
        (``WORLD_SIZE > 1``) each rank computes its share of each window's plan and only rank 0
        yields. Needs a cache that keeps entries (a disk or object-store tier); without one it
        falls back to ``attribute`` (results held in memory).

        A per-example ``target`` list is consumed alongside the examples. The IG completeness
        report (``stats``, ``run_report()``, ``CompletenessWarning``) comes when the stream ends.
        Returns an ``AttributionStream`` (its ``stats``: the call's ``CallStats``, with the plan)."""
        stats = CallStats()
        return AttributionStream(self._stream(examples, method, target, batch_size, params, stats), stats)

    def _stream(self, examples, method, target, batch_size, params, stats: CallStats):
        examples = self.inputs(examples)
        if not self._shared_cache():
            if distributed.sharding():
                raise DistributedError(
                    "a distributed job needs the attribution cache on storage every rank sees (drop --no-cache)")
            done = self.attribute_items(examples, method, target, batch_size, **params)
            for key, value in done.stats.as_dict().items():
                setattr(stats, key, value)
            yield from done
            return
        tally = GapTally(self.completeness_tolerance)
        with inference_state(self.model):
            for result in self._sharded(examples, method, target, batch_size, params, stats, emit="main"):
                tally.add(result)
                yield result
        report_gaps(tally, self.completeness_tolerance, self.stats)

    def _shared_cache(self) -> bool:
        """Whether the cache keeps entries beyond this process (a streamed or sharded call needs it)."""
        cache = as_engine_cache(self.cache)
        return cache is not None and cache.disk

    def _sharded(self, examples, method, target, batch_size, params, stats: CallStats, emit: str):
        """The loop under ``attrtools.memo``'s protocol, window by window: compute this rank's share
        of the plan into the cache, wait for every rank, then read the results back in input order
        (``emit``: "main" yields on rank 0 only, window by window of ``stream_window`` examples,
        bypassing the memory tier; "all" yields on every rank, the examples as one window)."""
        here = memo.here()
        if not self._shared_cache():
            raise DistributedError(
                "a distributed job needs the attribution cache on storage every rank sees (drop --no-cache)")
        distributed.check_shared_cache(self.cache)
        window = self.stream_window if emit == "main" else None
        stats.plan = {"world_size": here.size, "window": window, "batches": []}
        total = len(examples) if hasattr(examples, "__len__") else None
        bar = progress_bar(total, method, unit="ex", enabled=self.progress and here.is_main)
        offset, fingerprints = 0, self._fingerprints()  # one model fingerprint per call (not per window)
        try:
            for chunk, targets in windows(examples, target, window):
                call = self._prepare(chunk, method, targets, batch_size, params, stats, fingerprints)
                call.entries.remember = emit != "main"  # a stream's entries skip the memory tier
                self._compute_window(call, offset, bar)
                if emit == "all" or here.is_main:
                    yield from self._read_back(call)
                offset += len(chunk)
        finally:
            bar.close()

    def _compute_window(self, call: Call, offset: int, bar) -> None:
        """Steps 2-5 of one window across the ranks: rank 0 looks up, every rank plans the same
        batches and computes its share into the cache; the job's counts on every rank."""
        call.pending = memo.on_main(lambda: {
            i: missing for i, enc in enumerate(call.encoded)
            if (missing := call.entries.missing(enc, call.impl, call.params, call.specs[i], call.units))})
        batches = self.plan_pending(call.encoded, call.pending, call.batch_size, call.params)
        share = memo.split([b.cost for b in batches], agreed=plan_digest(batches, call.pending), what="the batch plan")
        call.stats.plan["batches"].extend(
            {"indices": [offset + i for i in b.members], "units": list(call.pending[b.members[0]]), "cost": b.cost,
             "rank": r} for b, r in zip(batches, share.ranks))
        counter = distributed.Counter(f"{call.impl.name}-examples")
        start = bar.n + len(call.encoded) - len(call.pending)
        bar.update(len(call.encoded) - len(call.pending))

        def report(count):
            bar.n = start + count
            bar.refresh()

        main = share.world.is_main
        mine = CallStats()
        own = replace(call, stats=mine, totals={}, results=Discard())  # this rank's share, counted apart
        for b in share.mine:
            self._compute(own, [list(batches[b].members)], lambda n: report(counter.add(n)) if main else counter.add(n))
            trim_heap()
        call.params, call.batch_size = own.params, own.batch_size  # the back-off sticks (the read-back)
        if mine.oom_backoffs:  # this rank's own (Engine.stats holds the key only once one happened)
            call.count(oom_backoffs=mine.oom_backoffs)
        counter.wait(len(call.pending), report if main else None)
        # the job's counts, not this rank's: every rank reports the single process's numbers
        for part in share.gather({"computed": mine.computed, "units_computed": mine.units_computed}):
            call.count(**part)
        call.count(hits=len(call.encoded) - len(call.pending),
                    partial=sum(1 for units in call.pending.values() if len(units) < len(call.units)))

    def _read_back(self, call: Call) -> Iterator[Attribution]:
        """Step 6 of a window: each example read back from the cache, in input order (one that
        vanished meanwhile, evicted or deleted, is computed alone)."""
        call.partial = {}
        for i in range(len(call.encoded)):
            missing = self._look_up_one(call, i)
            if missing:
                call.pending[i] = missing
                self._compute_batch(call, [i])
            result, call.results[i] = call.results[i], None
            yield result
        trim_heap()
