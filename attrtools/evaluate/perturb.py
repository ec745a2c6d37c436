"""One perturbation engine for every faithfulness metric (docs/methods.md, "Faithfulness evaluation").

- **Operators** (how a token is taken out):
  ``delete`` — the token is removed from the sequence, special tokens stay (ERASER, ferret, ALTI);
  ``mask`` — replaced by ``[MASK]``, attention mask unchanged (DecompX);
  ``pad`` — replaced by ``[PAD]``, attention mask unchanged (AttCAT).
- **Bins** (how many tokens): fractions of the example's *non-special* tokens, with the rounding of
  the benchmark they come from: ``eraser`` 1/5/10/20/50 % (ceil, ALTI's ``aupc.py``), ``ferret``
  10..100 % (``int(p·n)``), ``decompx`` 0..90 % (floor).
- **Ranking**: descending score over non-special tokens only, ties broken by position; special
  tokens are never ranked, removed or kept-only.
- **Predictor**: evaluates many perturbed sequences at once, deduplicated, length-sorted and padded
  per batch, returning class probabilities; results are memoised, so a sequence shared by several
  methods (e.g. "everything masked") runs once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import ParameterError
from ..model_state import inference_state

OPERATORS = ("delete", "mask", "pad")


@dataclass(frozen=True)
class Bins:
    name: str
    fractions: tuple[float, ...]
    rounding: str  # "floor" | "ceil"

    def count(self, fraction: float, n: int) -> int:
        """How many of ``n`` rankable tokens a fraction perturbs."""
        return token_count(fraction, n, self.rounding)


def token_count(fraction: float, n: int, rounding: str = "floor") -> int:
    exact = fraction * n
    # Guard against 0.1 * 30 = 3.0000000000000004 style float noise before rounding.
    nearest = round(exact)
    if abs(exact - nearest) < 1e-9:
        exact = nearest
    k = math.ceil(exact) if rounding == "ceil" else math.floor(exact)
    return max(0, min(n, int(k)))


PRESETS = {
    "eraser": Bins("eraser", (0.01, 0.05, 0.1, 0.2, 0.5), "ceil"),
    "ferret": Bins("ferret", tuple(round(0.1 * i, 1) for i in range(1, 11)), "floor"),
    "decompx": Bins("decompx", tuple(round(0.1 * i, 1) for i in range(0, 10)), "floor"),
}


def get_bins(preset: str) -> Bins:
    try:
        return PRESETS[preset]
    except KeyError:
        raise ParameterError(f"unknown bin preset {preset!r}; choose one of {', '.join(PRESETS)}") from None


def curve_grid(bins: Bins) -> tuple[float, ...]:
    """Fractions of the deletion/insertion curves: the preset's bins plus both ends 0 and 1."""
    return tuple(sorted(set(bins.fractions) | {0.0, 1.0}))


def rank_tokens(scores: Sequence[float], special_mask: Sequence[int]) -> list[int]:
    """Positions of non-special tokens, most important first (ties: earlier position first)."""
    candidates = [i for i, s in enumerate(special_mask) if not s]
    return sorted(candidates, key=lambda i: (-float(scores[i]), i))


@dataclass(frozen=True)
class Perturber:
    """Applies one operator. ``token_type_ids`` follow the tokens they belong to."""

    operator: str
    mask_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.operator not in OPERATORS:
            raise ParameterError(f"unknown perturbation operator {self.operator!r}; choose one of {', '.join(OPERATORS)}")
        if self.operator == "mask" and self.mask_token_id is None:
            raise ParameterError("operator 'mask' needs a tokenizer with a mask token")
        if self.operator == "pad" and self.pad_token_id is None:
            raise ParameterError("operator 'pad' needs a tokenizer with a pad token")

    @classmethod
    def for_tokenizer(cls, operator: str, tokenizer) -> "Perturber":
        return cls(operator, getattr(tokenizer, "mask_token_id", None), getattr(tokenizer, "pad_token_id", None))

    def remove(self, input_ids: Sequence[int], token_type_ids: Sequence[int], positions) -> tuple[tuple, tuple]:
        """The sequence with the tokens at ``positions`` taken out, as ``(ids, types)`` tuples."""
        gone = set(positions)
        types = list(token_type_ids) if token_type_ids else [0] * len(input_ids)
        if self.operator == "delete":
            keep = [i for i in range(len(input_ids)) if i not in gone]
            return tuple(input_ids[i] for i in keep), tuple(types[i] for i in keep)
        fill = self.mask_token_id if self.operator == "mask" else self.pad_token_id
        return tuple(fill if i in gone else t for i, t in enumerate(input_ids)), tuple(types)


@dataclass
class Plan:
    """The perturbed sequences of one (example, attribution): for each curve, (fraction, sequence)."""

    clean: tuple
    comprehensiveness: list  # [(fraction, seq)] top-k removed, preset bins
    sufficiency: list  # [(fraction, seq)] only top-k kept, preset bins
    deletion: list  # [(fraction, seq)] top-k removed, curve grid
    insertion: list  # [(fraction, seq)] only top-k kept, curve grid

    def sequences(self):
        yield self.clean
        for curve in (self.comprehensiveness, self.sufficiency, self.deletion, self.insertion):
            for _, seq in curve:
                yield seq


def plan_example(input_ids, token_type_ids, special_mask, scores, bins: Bins, perturber: Perturber) -> Plan:
    """All perturbations of one example under a ranking by ``scores``."""
    order = rank_tokens(scores, special_mask)
    n = len(order)
    clean = (tuple(input_ids), tuple(token_type_ids) if token_type_ids else tuple([0] * len(input_ids)))

    def removed(k):
        return perturber.remove(input_ids, token_type_ids, order[:k])

    def kept(k):
        return perturber.remove(input_ids, token_type_ids, order[k:])

    grid = curve_grid(bins)
    return Plan(
        clean=clean,
        comprehensiveness=[(p, removed(bins.count(p, n))) for p in bins.fractions],
        sufficiency=[(p, kept(bins.count(p, n))) for p in bins.fractions],
        deletion=[(p, removed(bins.count(p, n))) for p in grid],
        insertion=[(p, kept(bins.count(p, n))) for p in grid],
    )


def forwards_key(model_fingerprint: str, sequences) -> str:
    """Cache key of the class probabilities of ``sequences`` ((ids, types) pairs) under a model
    (``memo.key``, kind ``perturbed-forwards``)."""
    from .. import memo

    return memo.key("perturbed-forwards", {"model": model_fingerprint, "format": FORWARDS_FORMAT,
                                           "sequences": [[list(ids), list(types)] for ids, types in sequences]})


FORWARDS_FORMAT = 2  # 2: keyed by memo.key (1: compact, unsorted JSON)


class Predictor:
    """Memoised class probabilities of sequences: ``predictor([(ids, types), ...]) -> list of prob lists``.

    ``forward(list_of_sequences) -> (N, C) tensor of probabilities`` does the real work on one batch;
    :meth:`for_model` builds it for a Hugging Face classifier (right padding, dynamic length).
    """

    def __init__(self, forward: Callable, batch_tokens: int = 8192, max_batch: int = 256, progress: bool = False):
        self.forward = forward
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.progress = progress
        self.memo: dict = {}
        self.evaluated = 0  # sequences evaluated by the whole job (every rank under a launcher)
        self.evaluated_by_rank: list[int] = []  # of which each rank ran these (one entry per rank)
        self.reused = 0  # sequences whose probabilities came from the persistent cache

    @classmethod
    def for_model(cls, model, tokenizer, use_token_types: bool, **kwargs) -> "Predictor":
        """A predictor running ``model`` on batches collated by ``attrtools.batching.collate``."""
        import torch

        from ..batching import collate
        from ..heads import probabilities
        from ..architecture import batch_pad_id
        from ..models import model_device

        device = model_device(model)
        pad_id = batch_pad_id(model, tokenizer)  # a decoder classifier's own pad id (architecture.batch_pad_id)

        def forward(seqs):
            inputs = collate(seqs, pad_id, device, use_token_types)
            with torch.inference_mode(), inference_state(model):  # eval mode (attrtools.model_state)
                return probabilities(model(**inputs).logits, model, "a perturbation curve").cpu()

        return cls(forward, **kwargs)

    @classmethod
    def for_engine(cls, engine, **kwargs) -> "Predictor":
        """``for_model`` with the engine's model, tokenizer and token-type rule."""
        return cls.for_model(engine.model, engine.tokenizer, engine.uses_token_types, **kwargs)

    def __call__(self, sequences) -> list:
        self.run(sequences)
        return [self.memo[s] for s in sequences]

    def run_groups(self, groups, store=None, model_fingerprint: str | None = None) -> None:
        """``run`` over several groups of sequences (one example's perturbations each), with a
        persistent tier: each group's probabilities are one cache entry keyed by the model
        fingerprint and the group's input ids, so a rerun (after a kill, or with more methods)
        does not redo forwards it already did. ``store``: an ``AttributionCache`` (or None).

        Under a launcher the protocol of ``attrtools.memo``: rank 0 alone reads the entries and
        its hits go to every rank (every rank plans the same forwards from one view of the cache),
        the forwards left are shared out (``run``), and rank 0 writes the new entries."""
        from .. import memo

        groups = [list(g) for g in groups]
        cached = store is not None and bool(model_fingerprint)
        hits = memo.on_main(lambda: self._cached(groups, store, model_fingerprint)) if cached else {}
        for index, rows in sorted(hits.items()):
            for seq, probs in zip(groups[index], rows):
                self.memo.setdefault(seq, probs)
            self.reused += len(groups[index])
        self.run([s for g in groups for s in g])
        if cached and memo.writes_here():
            import torch

            for index, group in enumerate(groups):
                if group and index not in hits:
                    store.put(forwards_key(model_fingerprint, group),
                              torch.tensor([self.memo[s] for s in group], dtype=torch.float32),
                              {"kind": "forwards", "model": model_fingerprint, "sequences": len(group)})

    @staticmethod
    def _cached(groups, store, model_fingerprint) -> dict:
        """``{group index: probability rows}`` of the groups the cache holds (validated)."""
        hits = {}
        for index, group in enumerate(groups):
            hit = store.get(forwards_key(model_fingerprint, group)) if group else None
            if hit is not None and tuple(hit[0].shape[:1]) == (len(group),) and hit[0].dim() == 2 and \
                    hit[1].get("kind") == "forwards":
                hits[index] = hit[0].float().tolist()
        return hits

    def run(self, sequences) -> None:
        """Evaluate the sequences not memoised yet, in the engine's batch plan (length-sorted, at
        most ``max_batch`` sequences and ``batch_tokens`` padded tokens per batch).

        Under a launcher every rank holds the same memo, so every rank plans the same batches; each
        rank runs its share (``distributed.assign`` over the batches' costs, tokens² per sequence,
        longest first) and the probabilities of every batch reach every rank through the collective.
        A batch is evaluated as in one process, so the numbers are the single process's."""
        from .. import distributed, memo
        from ..batching import plan_batches

        todo = list(dict.fromkeys(s for s in sequences if s not in self.memo))
        plan = plan_batches([len(s[0]) for s in todo], self.max_batch, max_tokens=self.batch_tokens)
        sharded = distributed.sharding()
        share = memo.split([b.cost for b in plan], agreed=memo.digest(todo), what="the perturbed sequences to evaluate")
        here, ranks = share.world, share.ranks
        bar = None
        if self.progress and todo:
            from ..progress import tqdm_class

            tqdm = tqdm_class()

            bar = tqdm(total=len(todo), desc="perturbed forwards", unit="seq", leave=False)
        mine = {}
        for planned, rank in zip(plan, ranks):
            if rank != here.rank:
                continue
            chunk = [todo[i] for i in planned.members]
            probs = [[float(v) for v in p] for p in self.forward(chunk)]
            mine[planned.index] = probs
            if bar is not None:
                bar.update(len(chunk))
        parts = share.gather(mine) if plan else [mine]
        if len(parts) > 1:
            mine = {b: probs for part in parts for b, probs in part.items()}
            if bar is not None:
                bar.update(len(todo) - bar.n)  # the other ranks' share, at once
        for planned in plan:
            for i, probs in zip(planned.members, mine[planned.index]):
                self.memo[todo[i]] = probs
        counts = [0] * here.size
        for rank, part in enumerate(parts):
            counts[rank if sharded else here.rank] = sum(len(plan[b].members) for b in part)
        self.evaluated += sum(counts)
        self.evaluated_by_rank = [a + b for a, b in zip(self.evaluated_by_rank + [0] * here.size, counts)]
        if bar is not None:
            bar.close()
