"""Memo: how every kind of result the shared cache stores is keyed, and the one protocol that
looks them up, computes what is missing across ranks and writes it back.

Kinds the cache stores (``KINDS``; each names its own payload, the key covers it whole):

- ``attribution`` (``attrtools.entries``): one method's payload for one (example, unit); model and
  tokenizer fingerprints, input ids, resolved target, method, parameters, unit, format version;
- ``perturbed-forwards`` (``evaluate/perturb.py``): the class probabilities of one example's
  perturbations; model fingerprint and the perturbed sequences;
- ``masked-eval`` (``pruning/curve.py``): accuracy and loss of a model with heads masked; model
  fingerprint, mask and a digest of the evaluation inputs.

``key(kind, payload)`` is the one key builder: sha256 over the canonical JSON of the payload with
its kind (attribution keys leave their kind out: they were named before the other kinds existed,
and a cache written then still serves them).

The protocol (``run`` for results small enough to travel between ranks; the engine for
attributions, which travel through the cache), one rule per step:

1. **Look up on rank 0.** Rank 0 alone reads the cache and every rank takes its view
   (``on_main``): nobody computes or writes before the lookup is complete, so every rank plans
   from the same state of the cache (another rank could see entries rank 0 is writing, plan
   other work and call the collectives a different number of times).
2. **Split by cost.** The ranks agree on what is left (a digest, ``distributed.agree``) and take
   their shares of it, longest processing time first (``split``: ``distributed.assign``).
3. **Compute** each share where it was assigned, as one process computes it (same numbers).
4. **Gather, then write once.** Results that travel are gathered to every rank (``Split.gather``)
   and written by rank 0 (``writes_here``); results too large to travel (attributions) are written
   by the rank that computed them and read back from the cache.

Without a launcher (or inside ``distributed.alone()``) every step is the single process's.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from . import distributed

KINDS = ("attribution", "perturbed-forwards", "masked-eval")


def key(kind: str, payload: dict) -> str:
    """The cache key of a ``kind`` result: sha256 hex of the canonical JSON (sorted keys) of
    ``payload`` with ``"kind": kind`` (``attribution``: the payload alone). ``payload`` must hold
    what fixes the result: fingerprints, inputs, parameters and the kind's format version."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; kinds: {', '.join(KINDS)}")
    fields = payload if kind == "attribution" else dict(payload, kind=kind)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def digest(value) -> str:
    """sha256 hex of ``value``'s JSON: what the ranks compare with ``distributed.agree``."""
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()


def here() -> distributed.World:
    """This process's place in the job: the process group joined under a launcher (outside
    ``distributed.alone()``), else rank 0 of 1."""
    return distributed.init() if distributed.sharding() else distributed.World()


def on_main(lookup: Callable[[], object]):
    """Step 1: ``lookup()`` (cache reads) on rank 0 alone, its value on every rank."""
    if not distributed.sharding():
        return lookup()
    return distributed.broadcast(lookup() if distributed.is_main() else None)


def writes_here() -> bool:
    """Step 4: whether this rank writes the gathered results (rank 0; the single process)."""
    return not distributed.sharding() or distributed.is_main()


@dataclass(frozen=True)
class Split:
    """Step 2's result: ``ranks[k]`` computes item ``k``; ``world`` is this process's place."""

    world: distributed.World
    ranks: tuple[int, ...]

    @property
    def mine(self) -> list[int]:
        """The items this rank computes, in their order."""
        return [k for k, r in enumerate(self.ranks) if r == self.world.rank]

    def gather(self, local):
        """Step 4: every rank's ``local`` value, rank by rank (``[local]`` in one process)."""
        return distributed.all_gather(local) if distributed.sharding() else [local]


def split(costs: Sequence[float], *, agreed: str | None = None, what: str = "the work to share") -> Split:
    """Step 2: the items (one cost each, any unit) shared out across the ranks, longest first
    (``distributed.assign``: deterministic, balanced within the largest single cost). ``agreed``:
    a digest every rank must hold (``digest(...)`` of what is left), else ``DistributedError``
    naming ``what``."""
    world = here()
    if distributed.sharding() and agreed is not None:
        distributed.agree(agreed, what)
    return Split(world, tuple(distributed.assign(list(costs), world.size)))


def run(items: Sequence, compute: Callable[[object], object], *, lookup: Callable[[object], object] | None = None,
        write: Callable[[object, object], None] | None = None, costs: Sequence[float] | None = None,
        what: str = "the work to share") -> Iterator:
    """The results of ``compute(item)`` for ``items``, in order, through the cache (all four steps).

    ``lookup(item)``: the cached result or None; ``write(item, result)``: store a computed one;
    ``costs``: per item (default 1 each). One process: lazily, item by item (look up, else compute
    and write), so a caller sees each result as soon as it exists. Under a launcher: rank 0 looks
    every item up, the ranks split the rest by cost, compute their shares, gather the results and
    rank 0 writes them; everything is done before the first result is yielded. Results must be
    small JSON-like values (they travel between ranks)."""
    items = list(items)
    if not distributed.sharding():
        for item in items:
            hit = lookup(item) if lookup is not None else None
            if hit is None:
                hit = compute(item)
                if write is not None:
                    write(item, hit)
            yield hit
        return
    hits = on_main(lambda: {k: h for k, h in enumerate(lookup(i) if lookup is not None else None for i in items)
                            if h is not None})
    todo = [k for k in range(len(items)) if k not in hits]
    share = split([1.0 if costs is None else float(costs[k]) for k in todo], agreed=digest(todo), what=what)
    results = dict(hits)
    for part in share.gather([(todo[j], compute(items[todo[j]])) for j in share.mine]):
        results.update(part)
    if write is not None and writes_here():
        for k in todo:
            write(items[k], results[k])
    for k in range(len(items)):
        yield results[k]
