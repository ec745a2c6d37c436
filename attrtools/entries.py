"""Entries: the engine's side of the cache, behind one declared interface.

``EngineCache`` (a ``typing.Protocol``) is everything the engine asks of a cache: ``get`` with a
target device and a memory-tier switch, ``put``, ``invalidate`` of a bad entry, ``in`` (existence
without a read) and ``disk`` (whether entries outlive the process). ``AttributionCache`` (both
tiers, ``attrtools.cache``) is one; ``as_engine_cache`` wraps any other object with
``get(key) -> (tensor, meta) | None`` and ``put(key, tensor, meta)`` once, so nothing downstream
probes what a cache can do.

``Entries`` holds the engine's keys (``key``: ``memo.key("attribution", ...)``, leaving out
``VOLATILE_PARAMS``), reads with hit validation (``hit_problem``: a forged or buggy entry is
dropped and recomputed, never served) and writes.
"""
from __future__ import annotations

import contextlib
from typing import Protocol, runtime_checkable

from . import heads, memo, reduction
from .encoding import Encoded
from .types import FORMAT_VERSION

# Parameters that change how a result is computed, never what it is: left out of cache keys.
VOLATILE_PARAMS = frozenset({"internal_batch_size", "max_tokens"})  # max_tokens: a method's length cap (flow)


@runtime_checkable
class EngineCache(Protocol):
    """What the engine needs from a cache (``AttributionCache`` is one)."""

    disk: bool  # entries outlive the process (a distributed or streamed job needs this)

    def get(self, key: str, device=None, remember: bool = True):
        """``(tensor, meta)`` or None; the tensor on ``device``; ``remember=False``: leave the
        memory tier as it is (one-pass readers)."""

    def put(self, key: str, tensor, meta: dict, remember: bool = True) -> None:
        """Store ``tensor`` with JSON-serialisable ``meta``."""

    def invalidate(self, key: str, reason: str) -> None:
        """Drop an entry that cannot be trusted (``reason`` says why)."""

    def __contains__(self, key: str) -> bool:
        """Whether an entry exists (a cheap check, no read)."""


class _GetPut:
    """A user's ``get(key)``/``put(key, tensor, meta)`` object as an ``EngineCache``: hits as the
    object gives them (on its own device), existence by a read, nothing to invalidate (the
    object's own business)."""

    disk = True

    def __init__(self, store):
        self.store = store

    def get(self, key, device=None, remember=True):
        return self.store.get(key)

    def put(self, key, tensor, meta, remember=True):
        self.store.put(key, tensor, meta)

    def invalidate(self, key, reason):
        pass

    def __contains__(self, key):
        return self.store.get(key) is not None


def as_engine_cache(cache) -> EngineCache | None:
    """``cache`` (None, or an object from ``cache.open_cache``) as an ``EngineCache``."""
    if cache is None or isinstance(cache, EngineCache):
        return cache
    return _GetPut(cache)


class Entries:
    """The engine's reads and writes of attribution entries for one model and tokenizer.

    ``fingerprints()``: ``(model, tokenizer)`` fingerprints (a callable: the engine memoises
    them); ``device``: where hits go; ``uses_token_types``: whether segment ids enter the key."""

    def __init__(self, cache, fingerprints, device, uses_token_types: bool):
        self.cache = as_engine_cache(cache)
        self.fingerprints = fingerprints
        self.device = device
        self.uses_token_types = uses_token_types
        self.remember = True  # False while a streamed job runs: entries skip the memory tier

    @contextlib.contextmanager
    def memory_tier(self, on: bool):
        """Whether cache reads and writes in the block keep entries in the cache's memory tier."""
        saved, self.remember = self.remember, on
        try:
            yield
        finally:
            self.remember = saved

    def key(self, enc: Encoded, method: str, params: dict, target_spec, unit=None) -> str:
        """sha256 over model fingerprint, tokenizer fingerprint, input (and segment) ids, target
        (the resolved class index, never a spec such as ``"pred"``), method, params (minus
        ``VOLATILE_PARAMS``), unit and the payload format version."""
        model_fp, tokenizer_fp = self.fingerprints()
        return memo.key("attribution", {
            "model": model_fp,
            "tokenizer": tokenizer_fp,
            "input_ids": enc.input_ids,
            "token_type_ids": enc.token_type_ids if self.uses_token_types else None,
            "target": target_spec,
            "method": method,
            "params": {k: v for k, v in sorted(params.items()) if k not in VOLATILE_PARAMS},
            "unit": unit,
            "format": FORMAT_VERSION,
        })

    def missing(self, enc: Encoded, impl, params: dict, spec, units) -> list:
        """The units of one example the cache does not hold (existence only, nothing read)."""
        full = reduction.full_params(params)  # a reduced unit is there when its full entry is (as in find)
        return [u for u in units if all(self.key(enc, impl.name, p, spec, u) not in self.cache
                                        for p in (params, full) if p is not None)]

    def find(self, enc: Encoded, impl, params: dict, spec, units, head_config):
        """``(found, missing, meta, records)`` for one example: the validated hits per unit, the
        units missing, the metadata of the last hit and the completeness records found."""
        found, missing, meta, records = {}, [], None, {}
        for unit in units:
            key = self.key(enc, impl.name, params, spec, unit)
            hit = self.cache.get(key, device=self.device, remember=self.remember) or reduction.from_full(
                lambda k: self.cache.get(k, device=self.device, remember=self.remember),
                lambda p, unit=unit: self.key(enc, impl.name, p, spec, unit), params)
            problem = hit is not None and hit_problem(hit[0], hit[1], enc, impl, spec, unit,
                                                      getattr(head_config, "num_labels", None), head_config,
                                                      params.get("reduce"))
            if problem:
                # Only a forged or buggy entry gets here (the checksum covers the metadata):
                # dropped and recomputed, never served.
                self.cache.invalidate(key, problem)
                hit = None
            if hit is None:
                missing.append(unit)
                continue
            found[unit], meta = hit
            if meta.get("completeness") is not None:
                records[unit] = meta["completeness"]
        return found, missing, meta, records

    def write(self, enc: Encoded, impl, params: dict, spec, units, scores, meta: dict, records: dict) -> None:
        """Store one example's computed ``scores`` (units stacked on dim 0), one entry per unit."""
        for pos, unit in enumerate(units):
            part = scores if unit is None else scores[pos: pos + 1]
            extra = {"completeness": records[unit]} if unit in records else {}
            self.cache.put(self.key(enc, impl.name, params, spec, unit), part,
                           dict(meta, method=impl.name, kind=impl.kind, unit=unit, n_tokens=enc.length, **extra),
                           remember=self.remember)


def hit_problem(scores, meta, enc: Encoded, impl, spec, unit, num_classes, head=None, reduce=None) -> str | None:
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
