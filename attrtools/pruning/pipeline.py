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

import torch

from ..config import resolve_config
from ..engine import Engine
from ..errors import ParameterError
from ..io import write_json, write_text
from ..adapters import adapter_for
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


def run_pruning(model, tokenizer, examples: list[Example], run_dir: str, eval_examples: list[Example] | None = None,
                config: PruneConfig | None = None, cache=None, log=print, **options) -> dict:
    """Run the planner; write every output into ``run_dir``; return the summary dict.

    Args:
        model, tokenizer: a sequence classifier from ``attrtools.load_model`` (any supported family).
        examples: labelled ``Example`` items; importance uses the first ``config.num_examples``.
        run_dir: output folder (created): head_importance.csv, pruning_curve.csv/.png,
            pruned_heads.json, pruned_model/, summary.json.
        eval_examples: labelled examples for the curve and the checks (default: ``examples``, as
            the official code evaluates on the whole dev set).
        config: a :class:`PruneConfig`; ``options``: overrides of its fields (keywords).
        cache: the attribution cache (``AttributionCache``, a folder, True for the default, None).
        log: called with one progress line at a time.

    Returns the summary (also written to ``summary.json``): accuracy per strategy and fraction,
    the pruned plan's masked and physical accuracy (equal up to 1e-4 in loss), parameters and
    median latency (seconds) before and after; ``shared_layers`` lists the layers that run one
    shared block (ALBERT), whose heads every plan prunes together.

    Raises ``ParameterError`` for an unknown strategy or a plan that cannot be made,
    ``InputDataError`` for examples without labels. Source: Hao et al. 2021 (AAAI), §4; Michel
    et al. 2019 for the Taylor and ablation baselines.
    """
    config = resolve_config(PruneConfig, config, options)
    (strategies, num_examples, prune_fraction, prune_count, plan_strategy, per_layer, keep_one_per_layer, iterative,
     steps, fraction_step, fractions, seed, ablation_metric, batch_size, eval_batch_size, latency_batch,
     latency_repeats, save_model) = (
        config.strategies, config.num_examples, config.prune_fraction, config.prune_count, config.plan_strategy,
        config.per_layer, config.keep_one_per_layer, config.iterative, config.steps, config.fraction_step,
        config.fractions, config.seed, config.ablation_metric, config.batch_size, config.eval_batch_size,
        config.latency_batch, config.latency_repeats, config.save_model)
    from ..architecture import require_classes

    require_classes(model, "head pruning (accuracy and cross-entropy under masking)")
    from ..heads import require_single_label

    # The curve's accuracy and cross-entropy (and Taylor importance's loss) score one gold class per example.
    require_single_label(model, "head pruning (accuracy and cross-entropy of one gold class under masking)")
    strategies = check_strategies(strategies)
    refusal = adapter_for(model).refusal("prune_heads")
    if refusal:  # say so before any importance is computed
        raise UnsupportedPruningError(f"model_type {model.config.model_type!r} cannot be pruned physically: "
                                      f"{refusal}")
    plan_strategy = plan_strategy or strategies[0]
    if plan_strategy not in strategies:
        raise ParameterError(f"plan strategy {plan_strategy!r} is not among the strategies run ({', '.join(strategies)})")
    num_layers, num_heads = num_layers_heads(model)
    total = num_layers * num_heads
    target_count = heads_for(prune_fraction if prune_count is None else None, prune_count, total)
    group = kv_group_size(model)
    from ..data import keep_content, row_label
    from ..errors import InputDataError

    # Rows without content (none for this tokenizer either) are left out with their reason, as in every tool.
    examples = keep_content(examples, tokenizer)
    skipped = list(examples.skipped)
    if eval_examples is not None:
        eval_examples = keep_content(eval_examples, tokenizer)
        skipped += eval_examples.skipped
    if not examples or (eval_examples is not None and not eval_examples):
        raise InputDataError(f"no examples with content to prune with ({len(skipped)} row(s) skipped: "
                             + "; ".join(f"{row_label(r)}: {r['reason']}" for r in skipped[:5]) + ")")
    importance_examples = list(examples[:num_examples])
    eval_examples = list(eval_examples) if eval_examples is not None else list(examples)
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, max_length=config.max_length,
                    progress=config.progress)
    eval_batches = prepare_batches(engine, eval_examples, eval_batch_size)
    grid = sorted({round(float(f), 10) for f in fractions}) if fractions else fraction_grid(fraction_step)
    # A model pruned before (a folder saved by save_pruned): its heads stay gone, every plan extends
    # them, and fractions/counts are of the original L*H heads (never below what is already gone).
    already = pruned_heads(model)
    counts = [max(c, plan_size(already)) for c in counts_for_fractions(grid, total)]
    target_count = max(target_count, plan_size(already))
    # ALBERT: layers that run one shared block lose a head together (physical pruning of the shared
    # block removes it in all of them), so plans, curves and the physical step prune tied units.
    shared = [g for g in tied_layers(model) if len(g) > 1]
    plan_kwargs = dict(per_layer=per_layer, keep_one_per_layer=keep_one_per_layer, group_size=group,
                       tied_layers=tied_layers(model) if shared else None)
    os.makedirs(run_dir, exist_ok=True)

    tables: dict[str, torch.Tensor] = {}
    plans: dict[str, dict[float, dict]] = {}
    chosen_plans: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for strategy in strategies:
        started = time.time()
        log(f"[{strategy}] head importance on {len(importance_examples)} examples")

        def score(base_plan, strategy=strategy):
            return head_importance(model, tokenizer, importance_examples, strategy, engine=engine, steps=steps,
                                   seed=seed, ablation_metric=ablation_metric, batch_size=batch_size,
                                   eval_batch_size=eval_batch_size, base_plan=base_plan)

        tables[strategy] = score(None)
        if iterative:
            wanted = sorted(set(counts) | {target_count})
            nested = iterative_plans(lambda p: tables[strategy] if p == already else score(p), wanted,
                                     already=already, **plan_kwargs)
            plans[strategy] = {f: nested[c] for f, c in zip(grid, counts)}
            chosen_plans[strategy] = nested[target_count]
        else:
            plans[strategy] = {f: make_plan(tables[strategy], count=c, already=already, **plan_kwargs)
                               for f, c in zip(grid, counts)}
            chosen_plans[strategy] = make_plan(tables[strategy], count=target_count, already=already, **plan_kwargs)
        seconds[strategy] = round(time.time() - started, 2)
    write_importance_csv(os.path.join(run_dir, "head_importance.csv"), tables)

    log(f"pruning curve on {len(eval_examples)} examples")
    from ..progress import bar

    curve_bar = bar(sum(len(p) for p in plans.values()), "pruning curve", unit="plan", enabled=engine.progress)
    rows = pruning_curve(model, eval_batches, plans, progress=lambda row: curve_bar.update(1), cache=engine.cache)
    curve_bar.close()
    write_curve_csv(os.path.join(run_dir, "pruning_curve.csv"), rows)
    plot_curve(os.path.join(run_dir, "pruning_curve.png"), rows,
               title=f"{getattr(model.config, '_name_or_path', '') or model.config.model_type}: heads pruned by masking")

    plan = chosen_plans[plan_strategy]
    write_json(os.path.join(run_dir, "pruned_heads.json"),
               {"strategy": plan_strategy, "heads_pruned": plan_size(plan), "heads_total": total,
                "per_layer": per_layer, "keep_one_per_layer": keep_one_per_layer, "iterative": iterative,
                "group_size": group, "shared_layers": shared, "pruned_heads": plan_to_json(plan),
                "all_strategies": {s: plan_to_json(p) for s, p in chosen_plans.items()}})

    log(f"physical pruning: {plan_size(plan)} of {total} heads ({plan_strategy})"
        + (f"; layers {shared} share blocks, so their heads go together" if shared else ""))
    digest = batches_digest(eval_batches)
    masked = evaluate_masked(model, eval_batches, plan_to_mask(plan, num_layers, num_heads), cache=engine.cache,
                             digest=digest)
    pruned = copy.deepcopy(model)
    prune_heads(pruned, {l: [h for h in hs if h not in already.get(l, [])] for l, hs in plan.items()},
                optimizer=False)  # a fresh copy: no optimizer holds it
    physical = evaluate_masked(pruned, eval_batches, None)  # always run: it checks the physical pruning
    unpruned = evaluate_masked(model, eval_batches, None, cache=engine.cache, digest=digest)
    latency_inputs = engine.collate([engine.encode(e) for e in eval_examples[:latency_batch]])
    single_inputs = engine.collate([engine.encode(eval_examples[0])])
    batch_latency = measure_latency({"before": model, "after": pruned}, latency_inputs, repeats=latency_repeats)
    single_latency = measure_latency({"before": model, "after": pruned}, single_inputs, repeats=latency_repeats)
    params_before, params_after = count_parameters(model), count_parameters(pruned)
    model_dir = None
    if save_model:
        model_dir = os.path.join(run_dir, "pruned_model")
        save_pruned(pruned, tokenizer, model_dir, extra={"strategy": plan_strategy})

    def at(strategy, fraction):
        for row in rows:
            if row["strategy"] == strategy and abs(row["fraction"] - fraction) < 1e-9:
                return row["accuracy"]
        return None

    from ..models import fingerprint

    summary = {
        "model": getattr(model.config, "_name_or_path", None) or model.config.model_type,
        "fingerprint": fingerprint(model),
        "model_type": model.config.model_type,
        "layers": num_layers, "heads_per_layer": num_heads, "heads_total": total, "kv_group_size": group,
        "shared_layers": shared,
        "shared_layers_note": ("each list of layers runs one shared block: a head pruned there is pruned in every "
                               "layer of the list, so every plan (curve and physical) removes it in all of them")
        if shared else None,
        "importance_examples": len(importance_examples), "eval_examples": len(eval_examples),
        "strategies": strategies, "plan_strategy": plan_strategy, "steps": steps,
        "importance_seconds": seconds,
        "skipped_rows": skipped,
        "accuracy_unpruned": unpruned["accuracy"], "loss_unpruned": unpruned["loss"],
        "accuracy_by_fraction": {s: {f"{f:.2f}": at(s, f) for f in grid} for s in strategies},
        "plan": {"heads_pruned": plan_size(plan), "fraction": plan_size(plan) / total,
                 "accuracy_masked": masked["accuracy"], "loss_masked": masked["loss"],
                 "accuracy_pruned": physical["accuracy"], "loss_pruned": physical["loss"],
                 "masked_equals_pruned": abs(masked["loss"] - physical["loss"]) < 1e-4
                 and masked["accuracy"] == physical["accuracy"]},
        "parameters": {"before": params_before, "after": params_after,
                       "saving": 1 - params_after / params_before},
        "latency": {"batch_size": len(eval_examples[:latency_batch]), "repeats": latency_repeats,
                    "median_s_before": batch_latency["before"], "median_s_after": batch_latency["after"],
                    "speedup": batch_latency["before"] / batch_latency["after"],
                    "single_median_s_before": single_latency["before"],
                    "single_median_s_after": single_latency["after"],
                    "single_speedup": single_latency["before"] / single_latency["after"],
                    "device": str(next(model.parameters()).device), "threads": torch.get_num_threads()},
        "pruned_model": model_dir,
        "outputs": ["head_importance.csv", "pruning_curve.csv", "pruning_curve.png", "pruned_heads.json",
                    "summary.json", "report.html"] + (["pruned_model/"] if model_dir else []),
    }
    if engine.cache is not None:
        summary["cache"] = dict(engine.stats)
    write_json(os.path.join(run_dir, "summary.json"), summary)
    from .report import write_pruning_report

    write_pruning_report(run_dir)
    return summary
