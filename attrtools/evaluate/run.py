"""Evaluate many attribution methods over a dataset, through the ``Engine`` (so the cache is used).

For each method: attributions of every example (target = class predicted on the clean input) →
token scores (``Attribution.token_scores()``) → the perturbations of ``perturb.plan_example`` →
probabilities from one shared, memoised ``Predictor`` → ``metrics.example_metrics`` → means. A seeded
random attribution is always evaluated as the floor. A method that cannot run on the model (its
``check_model`` refuses the architecture, or it raises) is reported as skipped with the reason.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..config import resolve_config
from ..errors import InputDataError
from .config import EvaluateConfig
from . import metrics as M
from .perturb import Perturber, Predictor, get_bins, plan_example

RANDOM = "random"


@dataclass
class MethodResult:
    name: str
    status: str = "ok"  # "ok" | "skipped"
    reason: str = ""
    n_examples: int = 0
    seconds: float = 0.0
    from_cache: int = 0
    summary: dict = field(default_factory=dict)  # aggregated metrics + curves
    spearman: float = float("nan")
    spearman_std: float = float("nan")
    per_example: list = field(default_factory=list)
    params: dict = field(default_factory=dict)


@dataclass
class Evaluation:
    preset: str
    operator: str
    reference: str | None
    n_examples: int
    clean_accuracy: float
    results: list  # [MethodResult]
    forwards: int = 0
    forwards_reused: int = 0  # perturbed forwards taken from the cache instead of run
    forwards_by_rank: list = field(default_factory=list)  # of ``forwards``, what each rank ran (launcher)
    notes: list = field(default_factory=list)
    skipped_rows: list = field(default_factory=list)  # rows without content: {index, id, reason, text}
    example_ids: list = field(default_factory=list)  # ids of the evaluated examples, in order

    def ok(self):
        return [r for r in self.results if r.status == "ok"]

    def skipped(self):
        return [r for r in self.results if r.status != "ok"]


def random_scores(n: int, seed: int, index: int) -> list[float]:
    """Seeded uniform scores for the random-attribution baseline (same for every run and method list)."""
    import random

    rng = random.Random(seed * 1_000_003 + index)
    return [rng.random() for _ in range(n)]


def evaluate_methods(model, tokenizer, examples, methods=None, config: EvaluateConfig | None = None, cache=None,
                     log=None, engine=None, on_result=None, supplied=None, **options) -> Evaluation:
    """Faithfulness of ``methods`` (registered names) on ``examples``; see the module docstring.

    Args:
        model, tokenizer: a classifier from ``attrtools.load_model``.
        examples: ``Example`` items (labels optional: accuracy columns need them).
        methods: registered method names (default ``config.methods``; None there: all).
        config: an :class:`EvaluateConfig`; ``options``: overrides of its fields (``preset``,
            ``operator``, ``method_params``, ``method_limits``, ``reference``, ``seed``, ...).
        cache: the attribution cache; engine: an ``Engine`` to reuse instead of making one.
        on_result: ``on_result(evaluation)`` after every method with the evaluation so far.
        supplied: ``{name: explanations}``: explanations computed elsewhere, one per example in
            order (``evaluate.supplied``: Attributions, ferret Explanations, ``{"tokens", "scores"}``
            mappings), evaluated as rows ``name`` with the same perturbations and cached forwards.

    Returns an :class:`Evaluation`: per method AOPC comprehensiveness/sufficiency (probability
    drops, in [-1, 1]), deletion/insertion AUC, log-odds, accuracy under perturbation and the
    Spearman correlation with the reference; a method that cannot run is a skipped row.
    Raises ``ParameterError`` for an unknown preset or operator, ``InputDataError`` for no examples.
    Sources: DeYoung et al. 2020 (ERASER), Samek et al. 2017 (AOPC), Modarressi et al. 2023 (DecompX).
    """
    from .. import methods as registry
    from ..engine import Engine
    from ..types import Example

    from ..architecture import require_classes

    require_classes(model, "faithfulness evaluation (probability drops, log-odds, accuracy)")

    config = resolve_config(EvaluateConfig, config, options)
    methods = list(methods if methods is not None else (config.methods or registry.list_methods()))
    preset, operator, seed, reference = config.preset, config.resolved_operator(), config.seed, config.reference
    method_params, method_limits = config.method_params, config.method_limits

    bins = get_bins(preset)
    perturber = Perturber.for_tokenizer(operator, tokenizer)
    method_params = method_params or {}
    method_limits = method_limits or {}
    say = log or (lambda message: None)
    from ..data import keep_content, row_label

    examples = keep_content(examples, tokenizer)  # rows without content are skipped with their reason, never scored 0
    if not examples:
        raise InputDataError("no examples to evaluate" + (f" ({len(examples.skipped)} row(s) without content skipped)"
                                                      if examples.skipped else ""))
    engine = engine or Engine(model, tokenizer, cache=cache, batch_size=config.batch_size,
                              max_length=config.max_length, progress=config.progress)
    predictor = Predictor.for_engine(engine, progress=bool(engine.progress))

    encoded = engine.encode_all(examples)
    clean = [(tuple(e.input_ids), tuple(e.token_type_ids or [0] * e.length)) for e in encoded]
    store = getattr(engine, "cache", None)
    store = store if store is not None and hasattr(store, "get") and hasattr(store, "put") else None
    from ..models import fingerprint

    model_fp = fingerprint(model) if store is not None else None
    predictor.run_groups([clean], store, model_fp)
    clean_probs = predictor(clean)
    predicted = [max(range(len(p)), key=p.__getitem__) for p in clean_probs]
    labelled = [(p, e.label) for p, e in zip(predicted, examples) if e.label is not None]
    clean_accuracy = sum(p == y for p, y in labelled) / len(labelled) if labelled else float("nan")

    notes = []
    available = set(registry.list_methods())
    reference_scores = None
    if reference and reference in available:
        say(f"reference for Spearman: {reference}")
        try:
            refs = engine.attribute(encoded, reference, target="pred", **method_params.get(reference, {}))
            reference_scores = [r.token_scores().float().tolist() for r in refs]
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            notes.append(f"reference {reference} failed ({type(err).__name__}: {err}): no Spearman column")
    elif reference:
        notes.append(f"reference method {reference!r} is not registered: no Spearman column")

    results = []
    evaluation = Evaluation(preset=preset, operator=operator, reference=reference if reference_scores is not None
                            else None, n_examples=len(examples), clean_accuracy=clean_accuracy, results=results,
                            notes=notes, skipped_rows=list(examples.skipped), example_ids=[e.id for e in examples])
    if examples.skipped:
        notes.append(f"{len(examples.skipped)} row(s) without content skipped (not evaluated, not averaged): "
                     + "; ".join(f"{row_label(r)} ({r['reason']})" for r in examples.skipped[:10])
                     + (" ..." if len(examples.skipped) > 10 else ""))
    supplied = dict(supplied or {})
    clash = sorted(set(supplied) & (set(methods) | {RANDOM}))
    if clash:
        raise InputDataError(f"supplied explanations named {', '.join(clash)} clash with a method row: rename them")
    from .supplied import supplied_scores

    aligned = {name: supplied_scores(items, encoded, tokenizer) for name, items in supplied.items()}  # refuse early
    for name in [RANDOM] + list(methods) + list(supplied):  # random first: every partial report has its floor
        limit = method_limits.get(name)
        subset = examples if limit is None else examples[:limit]
        result = MethodResult(name=name, n_examples=len(subset), params=dict(method_params.get(name, {})))
        results.append(result)
        if name in aligned:
            token_lists, specials = aligned[name]
            subset, result.n_examples, result.params = examples, len(examples), {"supplied": True}
        elif name == RANDOM:
            token_lists = [random_scores(e.length, seed, i) for i, e in enumerate(encoded)]
            specials = [e.special_tokens_mask for e in encoded]
            result.params = {"seed": seed}
        else:
            if name not in available:
                result.status, result.reason = "skipped", f"not a registered method (available: {', '.join(sorted(available))})"
                if on_result:
                    on_result(evaluation)
                continue
            say(f"attributing with {name} ({len(subset)} examples)")
            hits_before = engine.stats["hits"]
            start = time.perf_counter()
            try:
                attrs = engine.attribute(encoded[: len(subset)], name, target="pred", **result.params)
                token_lists = [a.token_scores().float().tolist() for a in attrs]
            except Exception as err:  # noqa: BLE001 - a method failing on this model is a table row, not a crash
                result.status, result.reason = "skipped", f"{type(err).__name__}: {err}"
                say(f"  skipped: {result.reason}")
                if on_result:
                    on_result(evaluation)
                continue
            result.seconds = time.perf_counter() - start
            result.from_cache = engine.stats["hits"] - hits_before
            specials = [a.special_tokens_mask for a in attrs]
            for a, e in zip(attrs, encoded):
                if list(a.input_ids) != list(e.input_ids):
                    raise RuntimeError(f"{name}: attribution tokens differ from the evaluated input")
            differ = sum(1 for i, a in enumerate(attrs) if a.target is not None and a.target != predicted[i])
            if differ:  # near-ties where batched and unbatched forwards disagree on the argmax
                notes.append(f"{name}: {differ} example(s) explained a class other than the evaluated prediction")
        plans = [plan_example(e.input_ids, e.token_type_ids, specials[i], token_lists[i], bins, perturber)
                 for i, e in enumerate(encoded[: len(subset)])]
        say(f"  perturbing: {sum(1 for p in plans for _ in p.sequences())} sequences ({name})")
        predictor.run_groups([list(p.sequences()) for p in plans], store, model_fp)  # cached per example
        result.per_example = [M.example_metrics(plan, predictor.memo, predicted[i], examples[i].label)
                              for i, plan in enumerate(plans)]
        result.summary = M.aggregate(result.per_example)
        if reference_scores is not None:
            rhos = []
            for i, scores in enumerate(token_lists):
                keep = [j for j, s in enumerate(specials[i]) if not s]
                rho = M.spearman([scores[j] for j in keep], [reference_scores[i][j] for j in keep])
                rhos.append(rho)
                result.per_example[i]["spearman_gxi"] = rho
            result.spearman, result.spearman_std = M.mean(rhos), M.std(rhos)
        summary = result.summary
        say(f"  {name}: AOPC comp {summary['aopc_comp']:.3f}  suff {summary['aopc_suff']:.3f}  "
            f"acc {summary['accuracy']:.3f}" if not math.isnan(summary['accuracy'])
            else f"  {name}: AOPC comp {summary['aopc_comp']:.3f}  suff {summary['aopc_suff']:.3f}")
        evaluation.forwards = predictor.evaluated
        evaluation.forwards_reused = predictor.reused
        evaluation.forwards_by_rank = list(predictor.evaluated_by_rank)
        if on_result:
            on_result(evaluation)
    evaluation.forwards = predictor.evaluated
    evaluation.forwards_reused = predictor.reused
    evaluation.forwards_by_rank = list(predictor.evaluated_by_rank)
    return evaluation
