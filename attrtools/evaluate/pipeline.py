"""Evaluate many attribution methods over a dataset, through the ``Engine`` (so the cache is used).

For each method: attributions of every example (target = class predicted on the clean input) →
token scores (``Attribution.token_scores()``) → the perturbations of ``perturb.plan_example`` →
probabilities from one shared, memoised ``Predictor`` → ``metrics.example_metrics`` → means. A seeded
random attribution is always evaluated as the floor. A method that cannot run on the model (its
``check_model`` refuses the architecture, or it raises) is reported as skipped with the reason.
"""
from __future__ import annotations

import dataclasses
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


Config = EvaluateConfig  # every tool's pipeline exposes ``Config`` and ``run`` the same way


def run(engine, examples, config: EvaluateConfig | None = None, run_dir: str | None = None, *, methods=None,
        log=None, on_result=None, supplied=None, command: str | None = None, model_label: str | None = None,
        **options) -> Evaluation:
    """Faithfulness of ``methods`` (registered names) on ``examples`` through ``engine``; see the
    module docstring.

    Args:
        engine: an ``attrtools.engine.Engine`` around a classifier from ``attrtools.load_model``
            (attributions and perturbed forwards come from its cache when there).
        examples: ``Example`` items (labels optional: accuracy columns need them).
        config: an :class:`EvaluateConfig`; ``options``: overrides of its fields (``preset``,
            ``operator``, ``method_params``, ``method_limits``, ``reference``, ``seed``, ...).
        run_dir: where faithfulness.csv/.md, curves.csv, per_example.csv, faithfulness_curves.png
            and report.html are written, again after every method (a killed run keeps what it
            finished); None writes nothing. ``command`` and ``model_label`` are shown in them.
        methods: registered method names (default ``config.methods``; None there: all; empty: none).
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
    from ..architecture import require_classes

    require_classes(engine.model, "faithfulness evaluation (probability drops, log-odds, accuracy)")
    config = resolve_config(EvaluateConfig, config, options)
    config = dataclasses.replace(config, method_params=config.method_params or {},
                                 method_limits=config.method_limits or {})
    if methods is None:  # the config's (None: every registered method; () none, only random and supplied rows)
        methods = config.methods if config.methods is not None else registry.list_methods()
    methods = list(methods)
    say = log or (lambda message: None)
    if run_dir is not None:
        from .report import write_all

        def report(evaluation):
            write_all(evaluation, run_dir, command=command, model=model_label)
            if on_result:
                on_result(evaluation)
    else:
        report = on_result or (lambda evaluation: None)
    state = _prepare(engine, examples, config, say)
    supplied = _check_supplied(supplied, methods, state)
    for name in [RANDOM] + list(methods) + list(supplied):  # random first: every partial report has its floor
        _evaluate_one(state, name, supplied, say)
        report(state.evaluation)
    state.count_forwards()
    return state.evaluation


def evaluate_methods(model, tokenizer, examples, methods=None, config: EvaluateConfig | None = None, cache=None,
                     log=None, engine=None, on_result=None, supplied=None, **options) -> Evaluation:
    """:func:`run` on ``engine`` (default: a fresh ``Engine`` of ``model``, ``tokenizer`` and
    ``cache`` with the config's batch size, max length and progress), writing no files; the
    evaluation's entry point before tools shared one shape (``docs/tools/evaluate.md``)."""
    from ..engine import Engine

    config = resolve_config(EvaluateConfig, config, options)
    engine = engine or Engine(model, tokenizer, cache=cache, batch_size=config.batch_size,
                              max_length=config.max_length, progress=config.progress)
    return run(engine, examples, config, methods=methods, log=log, on_result=on_result, supplied=supplied)


@dataclass
class _State:
    """One evaluation in progress: the engine, its inputs and the clean pass, shared by every row."""

    engine: object
    config: EvaluateConfig
    examples: list
    encoded: list
    predictor: Predictor
    store: object
    model_fp: str | None
    bins: list
    perturber: Perturber
    predicted: list
    reference_scores: list | None
    evaluation: Evaluation

    def count_forwards(self):
        self.evaluation.forwards = self.predictor.evaluated
        self.evaluation.forwards_reused = self.predictor.reused
        self.evaluation.forwards_by_rank = list(self.predictor.evaluated_by_rank)


def _prepare(engine, examples, config: EvaluateConfig, say) -> _State:
    """Usable rows, their encodings, the clean pass (predicted class, clean accuracy) and the
    reference's scores; the empty :class:`Evaluation` the rows are added to."""
    from ..data import keep_content, row_label

    operator = config.resolved_operator()
    bins, perturber = get_bins(config.preset), Perturber.for_tokenizer(operator, engine.tokenizer)
    examples = keep_content(examples, engine.tokenizer)  # rows without content are skipped with their reason
    if not examples:
        raise InputDataError("no examples to evaluate" + (f" ({len(examples.skipped)} row(s) without content skipped)"
                                                      if examples.skipped else ""))
    predictor = Predictor.for_engine(engine, progress=bool(engine.progress))
    encoded = engine.encode_all(examples)
    clean = [(tuple(e.input_ids), tuple(e.token_type_ids or [0] * e.length)) for e in encoded]
    store = getattr(engine, "cache", None)
    store = store if store is not None and hasattr(store, "get") and hasattr(store, "put") else None
    from ..models import fingerprint

    model_fp = fingerprint(engine.model) if store is not None else None
    predictor.run_groups([clean], store, model_fp)
    predicted = [max(range(len(p)), key=p.__getitem__) for p in predictor(clean)]
    labelled = [(p, e.label) for p, e in zip(predicted, examples) if e.label is not None]
    notes = []
    reference_scores = _reference_scores(engine, encoded, config, notes, say)
    evaluation = Evaluation(preset=config.preset, operator=operator,
                            reference=config.reference if reference_scores is not None else None,
                            n_examples=len(examples), results=[], notes=notes,
                            clean_accuracy=sum(p == y for p, y in labelled) / len(labelled) if labelled else math.nan,
                            skipped_rows=list(examples.skipped), example_ids=[e.id for e in examples])
    if examples.skipped:
        notes.append(f"{len(examples.skipped)} row(s) without content skipped (not evaluated, not averaged): "
                     + "; ".join(f"{row_label(r)} ({r['reason']})" for r in examples.skipped[:10])
                     + (" ..." if len(examples.skipped) > 10 else ""))
    return _State(engine, config, examples, encoded, predictor, store, model_fp, bins, perturber, predicted,
                  reference_scores, evaluation)


def _reference_scores(engine, encoded, config: EvaluateConfig, notes: list, say):
    """Token scores of the reference method (the Spearman column), or None with a note why not."""
    from .. import methods as registry

    reference = config.reference
    if reference and reference in registry.list_methods():
        say(f"reference for Spearman: {reference}")
        try:
            refs = engine.attribute(encoded, reference, target="pred", **config.method_params.get(reference, {}))
            return [r.token_scores().float().tolist() for r in refs]
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            notes.append(f"reference {reference} failed ({type(err).__name__}: {err}): no Spearman column")
    elif reference:
        notes.append(f"reference method {reference!r} is not registered: no Spearman column")
    return None


def _check_supplied(supplied, methods, state: _State) -> dict:
    """``{name: (token scores, special masks)}`` of the explanations computed elsewhere, aligned to
    the model's tokens (refused before any method runs)."""
    from .supplied import supplied_scores

    supplied = dict(supplied or {})
    clash = sorted(set(supplied) & (set(methods) | {RANDOM}))
    if clash:
        raise InputDataError(f"supplied explanations named {', '.join(clash)} clash with a method row: rename them")
    return {name: supplied_scores(items, state.encoded, state.engine.tokenizer) for name, items in supplied.items()}


def _evaluate_one(state: _State, name: str, supplied: dict, say) -> None:
    """Add the row of ``name`` (random, a registered method or supplied explanations) to the evaluation:
    its token scores, the perturbations they rank, their forwards (cached) and the metrics."""
    config, examples = state.config, state.examples
    limit = config.method_limits.get(name)
    subset = examples if limit is None else examples[:limit]
    result = MethodResult(name=name, n_examples=len(subset), params=dict(config.method_params.get(name, {})))
    state.evaluation.results.append(result)
    if name in supplied:
        token_lists, specials = supplied[name]
        subset, result.n_examples, result.params = examples, len(examples), {"supplied": True}
    elif name == RANDOM:
        token_lists = [random_scores(e.length, config.seed, i) for i, e in enumerate(state.encoded)]
        specials = [e.special_tokens_mask for e in state.encoded]
        result.params = {"seed": config.seed}
    else:
        scored = _method_scores(state, result, len(subset), say)
        if scored is None:
            return
        token_lists, specials = scored
    plans = [plan_example(e.input_ids, e.token_type_ids, specials[i], token_lists[i], state.bins, state.perturber)
             for i, e in enumerate(state.encoded[: len(subset)])]
    say(f"  perturbing: {sum(1 for p in plans for _ in p.sequences())} sequences ({name})")
    state.predictor.run_groups([list(p.sequences()) for p in plans], state.store, state.model_fp)  # cached per example
    result.per_example = [M.example_metrics(plan, state.predictor.memo, state.predicted[i], examples[i].label)
                          for i, plan in enumerate(plans)]
    result.summary = M.aggregate(result.per_example)
    if state.reference_scores is not None:
        rhos = []
        for i, scores in enumerate(token_lists):
            keep = [j for j, s in enumerate(specials[i]) if not s]
            rho = M.spearman([scores[j] for j in keep], [state.reference_scores[i][j] for j in keep])
            rhos.append(rho)
            result.per_example[i]["spearman_gxi"] = rho
        result.spearman, result.spearman_std = M.mean(rhos), M.std(rhos)
    summary = result.summary
    say(f"  {name}: AOPC comp {summary['aopc_comp']:.3f}  suff {summary['aopc_suff']:.3f}  "
        f"acc {summary['accuracy']:.3f}" if not math.isnan(summary['accuracy'])
        else f"  {name}: AOPC comp {summary['aopc_comp']:.3f}  suff {summary['aopc_suff']:.3f}")
    state.count_forwards()


def _method_scores(state: _State, result: MethodResult, n: int, say):
    """``(token scores, special masks)`` of a registered method on the first ``n`` examples, or None
    with ``result`` marked skipped (not registered, or refused/failed on this model: a table row,
    not a crash)."""
    from .. import methods as registry

    engine, name = state.engine, result.name
    available = set(registry.list_methods())
    if name not in available:
        result.status, result.reason = "skipped", f"not a registered method (available: {', '.join(sorted(available))})"
        return None
    say(f"attributing with {name} ({n} examples)")
    start = time.perf_counter()
    try:
        attrs = engine.attribute(state.encoded[:n], name, target="pred", **result.params)
        token_lists = [a.token_scores().float().tolist() for a in attrs]
    except Exception as err:  # noqa: BLE001 - a method failing on this model is a table row, not a crash
        result.status, result.reason = "skipped", f"{type(err).__name__}: {err}"
        say(f"  skipped: {result.reason}")
        return None
    result.seconds = time.perf_counter() - start
    result.from_cache = attrs.stats.hits  # this call's own count (engine.stats adds up every call)
    for a, e in zip(attrs, state.encoded):
        if list(a.input_ids) != list(e.input_ids):
            raise RuntimeError(f"{name}: attribution tokens differ from the evaluated input")
    differ = sum(1 for i, a in enumerate(attrs) if a.target is not None and a.target != state.predicted[i])
    if differ:  # near-ties where batched and unbatched forwards disagree on the argmax
        state.evaluation.notes.append(f"{name}: {differ} example(s) explained a class other than the evaluated "
                                      "prediction")
    return token_lists, [a.special_tokens_mask for a in attrs]
