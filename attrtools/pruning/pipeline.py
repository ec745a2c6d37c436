"""The whole planner in one call (used by ``attrtools prune`` and ``scripts/prune_model.py``).

importance per strategy (first ``num_examples`` examples) → ``head_importance.csv`` → plans at
0 %, 10 %, …, 100 % per strategy (nested re-scored plans with ``iterative``) → curve by masking on
the evaluation set → ``pruning_curve.csv`` + ``.png`` → the plan of ``plan_strategy`` at
``prune_fraction``/``prune_count`` → ``pruned_heads.json`` → physical pruning of a copy, checked
against masking on the evaluation set → ``pruned_model/`` (reloadable with ``load_pruned``) →
parameters and median latency before/after → ``summary.json``.
"""
from __future__ import annotations

import copy
import csv
import io
import os
import statistics
import time
from dataclasses import dataclass

import torch

from ..config import resolve_config
from ..engine import Engine
from ..errors import ParameterError
from ..io import write_json, write_text
from ..models import adapter_for
from ..architecture import num_layers_heads, pruned_heads, tied_layers
from ..types import Example
from .config import PruneConfig
from .curve import batches_digest, evaluate_masked, plot_curve, prepare_batches, pruning_curve, write_curve_csv
from .importance import check_strategies, head_importance
from .plan import (counts_for_fractions, fraction_grid, heads_for, iterative_plans, make_plan, plan_size,
                   plan_to_json, plan_to_mask)
from .prune import UnsupportedPruningError, count_parameters, kv_group_size, prune_heads, save_pruned


def write_importance_csv(path: str, tables: dict[str, torch.Tensor]) -> str:
    """Rows ``strategy, layer, head, importance, rank`` (rank 0 = least important = pruned first, global)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["strategy", "layer", "head", "importance", "rank"])
    for strategy, table in tables.items():
        L, H = table.shape
        flat = [(float(table[l, h]), l, h) for l in range(L) for h in range(H)]
        rank = {(l, h): r for r, (_, l, h) in enumerate(sorted(flat))}
        for l in range(L):
            for h in range(H):
                writer.writerow([strategy, l, h, f"{float(table[l, h]):.9g}", rank[(l, h)]])
    return write_text(path, buffer.getvalue())


@torch.inference_mode()
def measure_latency(models: dict, inputs: dict, repeats: int = 20, warmup: int = 3) -> dict:
    """Median wall time (seconds) of ``model(**inputs)`` per model; runs interleaved, same process."""
    times = {name: [] for name in models}
    for _ in range(warmup):
        for model in models.values():
            model(**inputs)
    for _ in range(repeats):
        for name, model in models.items():
            if inputs["input_ids"].is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(**inputs)
            if inputs["input_ids"].is_cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


Config = PruneConfig  # every tool's pipeline exposes ``Config`` and ``run`` the same way


def run(engine, examples: list[Example], config: PruneConfig | None = None, run_dir: str = ".", *,
        eval_examples: list[Example] | None = None, log=print, **options) -> dict:
    """Run the planner on ``engine``'s model; write every output into ``run_dir``; return the summary dict.

    Args:
        engine: an ``attrtools.engine.Engine`` around a sequence classifier from ``attrtools.load_model``
            (any supported family); its cache serves the attributions and the masked evaluations.
        examples: labelled ``Example`` items; importance uses the first ``config.num_examples``.
        config: a :class:`PruneConfig`; ``options``: overrides of its fields (keywords).
        run_dir: output folder (created): head_importance.csv, pruning_curve.csv/.png,
            pruned_heads.json, pruned_model/, summary.json, report.html.
        eval_examples: labelled examples for the curve and the checks (default: ``examples``, as
            the official code evaluates on the whole dev set).
        log: called with one progress line at a time.

    Returns the summary (also written to ``summary.json``): accuracy per strategy and fraction,
    the pruned plan's masked and physical accuracy (equal up to 1e-4 in loss), parameters and
    median latency (seconds) before and after; ``shared_layers`` lists the layers that run one
    shared block (ALBERT), whose heads every plan prunes together.

    Raises ``ParameterError`` for a setting out of range, an unknown strategy or a plan that cannot
    be made, ``InputDataError`` for examples without labels. Source: Hao et al. 2021 (AAAI), §4;
    Michel et al. 2019 for the Taylor and ablation baselines.
    """
    config = resolve_config(PruneConfig, config, options)
    setup = _setup(engine, config)
    examples, eval_examples, skipped = _usable_examples(examples, eval_examples, engine.tokenizer,
                                                        config.num_examples)
    os.makedirs(run_dir, exist_ok=True)
    importance = _importance_and_plans(setup, examples[: config.num_examples], log)
    write_importance_csv(os.path.join(run_dir, "head_importance.csv"), importance.tables)
    eval_batches = prepare_batches(engine, eval_examples, config.eval_batch_size)
    rows = _curve(setup, eval_batches, importance.plans, len(eval_examples), run_dir, log)
    plan = importance.chosen[setup.plan_strategy]
    _write_plan(setup, plan, importance.chosen, run_dir)
    checks = _prune_and_measure(setup, plan, eval_batches, eval_examples, run_dir, log)
    summary = _summary(setup, importance, rows, checks, plan, len(examples[: config.num_examples]),
                       len(eval_examples), skipped)
    write_json(os.path.join(run_dir, "summary.json"), summary)
    from .report import write_pruning_report

    write_pruning_report(run_dir)
    return summary


def run_pruning(model, tokenizer, examples: list[Example], run_dir: str, eval_examples: list[Example] | None = None,
                config: PruneConfig | None = None, cache=None, log=print, **options) -> dict:
    """:func:`run` on a fresh ``Engine`` of ``model``, ``tokenizer`` and ``cache`` (the attribution
    cache: an ``AttributionCache``, a folder, True for the default, None) with the config's batch
    size, max length and progress; the planner's entry point before tools shared one shape."""
    config = resolve_config(PruneConfig, config, options)  # checked before the model is touched
    engine = Engine(model, tokenizer, cache=cache, batch_size=config.batch_size, max_length=config.max_length,
                    progress=config.progress)
    return run(engine, examples, config, run_dir, eval_examples=eval_examples, log=log)


@dataclass
class _Setup:
    """What every step of one planner run shares: the model's shape, the curve's grid and head
    counts, the plan options and the strategies."""

    engine: Engine
    config: PruneConfig
    strategies: list
    plan_strategy: str
    num_layers: int
    num_heads: int
    total: int
    group: int
    grid: list
    counts: list
    target_count: int
    already: dict
    shared: list
    plan_kwargs: dict


def _setup(engine, config: PruneConfig) -> _Setup:
    """Check that ``engine``'s model can be planned and pruned as asked (before any importance is
    computed) and derive what the steps share."""
    from ..heads import require_single_label
    from ..architecture import require_classes

    model = engine.model
    require_classes(model, "head pruning (accuracy and cross-entropy under masking)")
    # The curve's accuracy and cross-entropy (and Taylor importance's loss) score one gold class per example.
    require_single_label(model, "head pruning (accuracy and cross-entropy of one gold class under masking)")
    strategies = check_strategies(config.strategies)
    refusal = adapter_for(model).refusal("prune_heads")
    if refusal:  # say so before any importance is computed
        raise UnsupportedPruningError(f"model_type {model.config.model_type!r} cannot be pruned physically: "
                                      f"{refusal}")
    plan_strategy = config.plan_strategy or strategies[0]
    if plan_strategy not in strategies:
        raise ParameterError(f"plan strategy {plan_strategy!r} is not among the strategies run ({', '.join(strategies)})")
    num_layers, num_heads = num_layers_heads(model)
    total = num_layers * num_heads
    grid = sorted({round(float(f), 10) for f in config.fractions}) if config.fractions else \
        fraction_grid(config.fraction_step)
    # A model pruned before (a folder saved by save_pruned): its heads stay gone, every plan extends
    # them, and fractions/counts are of the original L*H heads (never below what is already gone).
    already = pruned_heads(model)
    counts = [max(c, plan_size(already)) for c in counts_for_fractions(grid, total)]
    target = heads_for(config.prune_fraction if config.prune_count is None else None, config.prune_count, total)
    # ALBERT: layers that run one shared block lose a head together (physical pruning of the shared
    # block removes it in all of them), so plans, curves and the physical step prune tied units.
    shared = [g for g in tied_layers(model) if len(g) > 1]
    group = kv_group_size(model)
    plan_kwargs = dict(per_layer=config.per_layer, keep_one_per_layer=config.keep_one_per_layer, group_size=group,
                       tied_layers=tied_layers(model) if shared else None)
    return _Setup(engine, config, strategies, plan_strategy, num_layers, num_heads, total, group, grid, counts,
                  max(target, plan_size(already)), already, shared, plan_kwargs)


def _usable_examples(examples, eval_examples, tokenizer, num_examples: int):
    """Rows without content (none for this tokenizer either) left out with their reason, as in every
    tool; returns ``(examples, eval_examples, skipped rows)``, ``eval_examples`` defaulting to
    ``examples``. Raises ``InputDataError`` when no row is left."""
    from ..data import keep_content, row_label
    from ..errors import InputDataError

    examples = keep_content(examples, tokenizer)
    skipped = list(examples.skipped)
    if eval_examples is not None:
        eval_examples = keep_content(eval_examples, tokenizer)
        skipped += eval_examples.skipped
    if not examples or (eval_examples is not None and not eval_examples):
        raise InputDataError(f"no examples with content to prune with ({len(skipped)} row(s) skipped: "
                             + "; ".join(f"{row_label(r)}: {r['reason']}" for r in skipped[:5]) + ")")
    return list(examples), list(eval_examples) if eval_examples is not None else list(examples), skipped


@dataclass
class _Importance:
    tables: dict  # strategy -> (L, H) tensor
    plans: dict  # strategy -> {fraction: plan}
    chosen: dict  # strategy -> the plan at the target count
    seconds: dict  # strategy -> seconds of importance


def _importance_and_plans(setup: _Setup, importance_examples: list, log) -> _Importance:
    """Head importance per strategy and its plans at every point of the grid and at the target
    (nested, re-scored plans with ``iterative``)."""
    c, engine = setup.config, setup.engine
    out = _Importance({}, {}, {}, {})
    for strategy in setup.strategies:
        started = time.time()
        log(f"[{strategy}] head importance on {len(importance_examples)} examples")

        def score(base_plan, strategy=strategy):
            return head_importance(engine.model, engine.tokenizer, importance_examples, strategy, engine=engine,
                                   steps=c.steps, tolerance=c.tolerance, seed=c.seed, ablation_metric=c.ablation_metric,
                                   batch_size=c.batch_size, eval_batch_size=c.eval_batch_size, base_plan=base_plan)

        table = out.tables[strategy] = score(None)
        if c.iterative:
            wanted = sorted(set(setup.counts) | {setup.target_count})
            nested = iterative_plans(lambda p, table=table, score=score: table if p == setup.already else score(p),
                                     wanted, already=setup.already, **setup.plan_kwargs)
            out.plans[strategy] = {f: nested[n] for f, n in zip(setup.grid, setup.counts)}
            out.chosen[strategy] = nested[setup.target_count]
        else:
            out.plans[strategy] = {f: make_plan(table, count=n, already=setup.already, **setup.plan_kwargs)
                                   for f, n in zip(setup.grid, setup.counts)}
            out.chosen[strategy] = make_plan(table, count=setup.target_count, already=setup.already,
                                             **setup.plan_kwargs)
        out.seconds[strategy] = round(time.time() - started, 2)
    return out


def _curve(setup: _Setup, eval_batches, plans: dict, n_eval: int, run_dir: str, log) -> list:
    """The accuracy-vs-heads-pruned curve by masking: ``pruning_curve.csv`` and ``.png``; its rows."""
    from ..progress import bar

    model, engine = setup.engine.model, setup.engine
    log(f"pruning curve on {n_eval} examples")
    curve_bar = bar(sum(len(p) for p in plans.values()), "pruning curve", unit="plan", enabled=engine.progress)
    rows = pruning_curve(model, eval_batches, plans, progress=lambda row: curve_bar.update(1), cache=engine.cache)
    curve_bar.close()
    write_curve_csv(os.path.join(run_dir, "pruning_curve.csv"), rows)
    plot_curve(os.path.join(run_dir, "pruning_curve.png"), rows,
               title=f"{getattr(model.config, '_name_or_path', '') or model.config.model_type}: heads pruned by masking")
    return rows


def _write_plan(setup: _Setup, plan: dict, chosen: dict, run_dir: str) -> None:
    """``pruned_heads.json``: the plan pruned physically and every strategy's plan at the target."""
    c = setup.config
    write_json(os.path.join(run_dir, "pruned_heads.json"),
               {"strategy": setup.plan_strategy, "heads_pruned": plan_size(plan), "heads_total": setup.total,
                "per_layer": c.per_layer, "keep_one_per_layer": c.keep_one_per_layer, "iterative": c.iterative,
                "group_size": setup.group, "shared_layers": setup.shared, "pruned_heads": plan_to_json(plan),
                "all_strategies": {s: plan_to_json(p) for s, p in chosen.items()}})


def _prune_and_measure(setup: _Setup, plan: dict, eval_batches, eval_examples: list, run_dir: str, log) -> dict:
    """Prune a copy physically, check it against masking on the evaluation set, measure parameters and
    median latency before/after, and save it (``save_model``). Returns the measurements."""
    c, engine, model, already = setup.config, setup.engine, setup.engine.model, setup.already
    log(f"physical pruning: {plan_size(plan)} of {setup.total} heads ({setup.plan_strategy})"
        + (f"; layers {setup.shared} share blocks, so their heads go together" if setup.shared else ""))
    digest = batches_digest(eval_batches)
    masked = evaluate_masked(model, eval_batches, plan_to_mask(plan, setup.num_layers, setup.num_heads),
                             cache=engine.cache, digest=digest)
    pruned = copy.deepcopy(model)
    prune_heads(pruned, {l: [h for h in hs if h not in already.get(l, [])] for l, hs in plan.items()},
                optimizer=False)  # a fresh copy: no optimizer holds it
    physical = evaluate_masked(pruned, eval_batches, None)  # always run: it checks the physical pruning
    unpruned = evaluate_masked(model, eval_batches, None, cache=engine.cache, digest=digest)
    both = {"before": model, "after": pruned}
    batch_inputs = engine.collate([engine.encode(e) for e in eval_examples[:c.latency_batch]])
    single_inputs = engine.collate([engine.encode(eval_examples[0])])
    measured = {"masked": masked, "physical": physical, "unpruned": unpruned,
                "batch_latency": measure_latency(both, batch_inputs, c.latency_repeats, c.latency_warmup),
                "single_latency": measure_latency(both, single_inputs, c.latency_repeats, c.latency_warmup),
                "latency_batch": len(eval_examples[:c.latency_batch]),
                "parameters": (count_parameters(model), count_parameters(pruned)), "model_dir": None}
    if c.save_model:
        measured["model_dir"] = os.path.join(run_dir, "pruned_model")
        save_pruned(pruned, engine.tokenizer, measured["model_dir"], extra={"strategy": setup.plan_strategy})
    return measured


def _summary(setup: _Setup, importance: _Importance, rows: list, m: dict, plan: dict, n_importance: int,
             n_eval: int, skipped: list) -> dict:
    """The run's ``summary.json`` (see :func:`run`)."""
    from ..models import fingerprint

    model, total, shared = setup.engine.model, setup.total, setup.shared
    masked, physical, unpruned = m["masked"], m["physical"], m["unpruned"]
    batch, single = m["batch_latency"], m["single_latency"]
    before, after = m["parameters"]

    def at(strategy, fraction):
        return next((row["accuracy"] for row in rows
                     if row["strategy"] == strategy and abs(row["fraction"] - fraction) < 1e-9), None)

    summary = {
        "model": getattr(model.config, "_name_or_path", None) or model.config.model_type,
        "fingerprint": fingerprint(model),
        "model_type": model.config.model_type,
        "layers": setup.num_layers, "heads_per_layer": setup.num_heads, "heads_total": total,
        "kv_group_size": setup.group, "shared_layers": shared,
        "shared_layers_note": ("each list of layers runs one shared block: a head pruned there is pruned in every "
                               "layer of the list, so every plan (curve and physical) removes it in all of them")
        if shared else None,
        "importance_examples": n_importance, "eval_examples": n_eval,
        "strategies": setup.strategies, "plan_strategy": setup.plan_strategy, "steps": setup.config.steps,
        "importance_seconds": importance.seconds,
        "skipped_rows": skipped,
        "accuracy_unpruned": unpruned["accuracy"], "loss_unpruned": unpruned["loss"],
        "accuracy_by_fraction": {s: {f"{f:.2f}": at(s, f) for f in setup.grid} for s in setup.strategies},
        "plan": {"heads_pruned": plan_size(plan), "fraction": plan_size(plan) / total,
                 "accuracy_masked": masked["accuracy"], "loss_masked": masked["loss"],
                 "accuracy_pruned": physical["accuracy"], "loss_pruned": physical["loss"],
                 "masked_equals_pruned": abs(masked["loss"] - physical["loss"]) < 1e-4
                 and masked["accuracy"] == physical["accuracy"]},
        "parameters": {"before": before, "after": after, "saving": 1 - after / before},
        "latency": {"batch_size": m["latency_batch"], "repeats": setup.config.latency_repeats,
                    "median_s_before": batch["before"], "median_s_after": batch["after"],
                    "speedup": batch["before"] / batch["after"],
                    "single_median_s_before": single["before"], "single_median_s_after": single["after"],
                    "single_speedup": single["before"] / single["after"],
                    "device": str(next(model.parameters()).device), "threads": torch.get_num_threads()},
        "pruned_model": m["model_dir"],
        "outputs": ["head_importance.csv", "pruning_curve.csv", "pruning_curve.png", "pruned_heads.json",
                    "summary.json", "report.html"] + (["pruned_model/"] if m["model_dir"] else []),
    }
    if setup.engine.cache is not None:
        summary["cache"] = dict(setup.engine.stats)
    return summary
