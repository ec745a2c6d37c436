"""``attrtools prune``: rank heads, draw the pruning curve, prune physically and save the smaller model."""
from __future__ import annotations

import click

from ..commands.common import (UserError, dataset_options, device_option, echo_summary, make_run_dir, model_option,
                               output_dir_option, quiet_transformers)


def prune_options(f):
    options = [
        click.option("--strategies", default="attattr,taylor,attention,ablation,random", show_default=True,
                     help="Comma-separated importance strategies: attattr, taylor, attention, ablation, random."),
        click.option("--plan-strategy", default=None,
                     help="Strategy whose plan is pruned physically and saved (default: the first one)."),
        click.option("--num-examples", type=int, default=200, show_default=True,
                     help="Importance from the first N examples (official AttAttr protocol: 200 dev examples)."),
        click.option("--prune-fraction", type=float, default=None,
                     help="Fraction of all heads to prune physically (default 0.5)."),
        click.option("--prune-count", type=int, default=None, help="Number of heads to prune physically."),
        click.option("--per-layer", is_flag=True, help="Rank heads within each layer; prune evenly across layers."),
        click.option("--keep-one-per-layer", is_flag=True, help="Never remove the last head of a layer."),
        click.option("--iterative", is_flag=True,
                     help="Re-estimate importance with the already-pruned heads masked after each 10%% step."),
        click.option("--steps", type=int, default=20, show_default=True, help="AttAttr integration steps (m)."),
        click.option("--fraction-step", type=float, default=0.1, show_default=True,
                     help="Spacing of the pruning curve (fractions of heads)."),
        click.option("--fractions", default=None,
                     help="Explicit curve points instead of the grid, e.g. 0,0.3,0.5,0.7 (saves time)."),
        click.option("--ablation-metric", type=click.Choice(["loss", "accuracy"]), default="loss", show_default=True,
                     help="What the single-head ablation baseline measures."),
        click.option("--eval-dataset", default=None,
                     help="Dataset for the curve and checks (default: the whole --dataset, as the official code)."),
        click.option("--eval-limit", type=int, default=None, help="Use only the first N evaluation examples."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random strategy."),
        click.option("--batch-size", type=int, default=8, show_default=True, help="Attribution batch size."),
        click.option("--eval-batch-size", type=int, default=64, show_default=True),
        click.option("--latency-repeats", type=int, default=20, show_default=True),
        click.option("--no-save-model", is_flag=True, help="Do not write the pruned model."),
        click.option("--cache-dir", default=None, help="Attribution cache folder (default $ATTRTOOLS_CACHE)."),
        click.option("--no-cache", is_flag=True, help="Read and write no attribution cache."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command()
@model_option
@dataset_options
@prune_options
@output_dir_option
@device_option
def prune(model_name, dataset, text_column, pair_column, label_column, limit, **options):
    """Rank attention heads (AttAttr and baselines), plot accuracy vs heads pruned, prune and save.

    Outputs in the run directory: head_importance.csv, pruning_curve.csv/.png, pruned_heads.json,
    pruned_model/ (reload with attrtools.load_pruned) and summary.json.
    """
    summary = prune_command(model_name, dataset, text_column, pair_column, label_column, limit, **options)
    echo_summary(summary_lines(summary))


def prune_command(model_name, dataset, text_column, pair_column, label_column, limit, strategies, plan_strategy,
                  num_examples, prune_fraction, prune_count, per_layer, keep_one_per_layer, iterative, steps,
                  fraction_step, fractions, ablation_metric, eval_dataset, eval_limit, seed, batch_size,
                  eval_batch_size, latency_repeats, no_save_model, cache_dir, no_cache, output_dir, device, log=None):
    """The function behind ``attrtools prune`` and ``scripts/prune_model.py``; returns the summary."""
    if not dataset:
        raise UserError("--dataset is required")
    if prune_fraction is not None and prune_count is not None:
        raise UserError("give either --prune-fraction or --prune-count, not both")
    if prune_fraction is None and prune_count is None:
        prune_fraction = 0.5
    if prune_fraction is not None and not 0 <= prune_fraction <= 1:
        raise UserError(f"--prune-fraction must be in [0, 1], got {prune_fraction}")
    if num_examples < 1:
        raise UserError("--num-examples must be at least 1")
    if steps < 1:
        raise UserError("--steps must be at least 1")
    if not 0 < fraction_step <= 1:
        raise UserError("--fraction-step must be in (0, 1]")
    grid = None
    if fractions:
        try:
            grid = [float(x) for x in fractions.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--fractions must be comma-separated numbers, got {fractions!r}") from None
        if not grid or any(not 0 <= f <= 1 for f in grid):
            raise UserError("--fractions must lie in [0, 1]")
    from .importance import check_strategies

    try:
        names = check_strategies(strategies.split(","))
    except ValueError as err:
        raise UserError(str(err)) from None
    if plan_strategy is not None and plan_strategy not in names:
        raise UserError(f"--plan-strategy {plan_strategy!r} is not among --strategies ({', '.join(names)})")
    quiet_transformers()
    from ..commands.common import load_examples_or_fail, load_model_or_fail, open_cache_or_fail

    examples = load_examples_or_fail(dataset, text_column, pair_column, label_column, limit, model=model_name)
    eval_examples = load_examples_or_fail(eval_dataset, text_column, pair_column, label_column, eval_limit,
                                          what="--eval-dataset", model=model_name) \
        if eval_dataset else (examples[:eval_limit] if eval_limit else None)
    if any(e.label is None for e in examples[:num_examples]) or \
            (eval_examples is not None and any(e.label is None for e in eval_examples)):
        raise UserError("head pruning needs gold labels: the dataset has no label column (use --label-column)")
    run_dir = make_run_dir(output_dir, "prune", {
        "model": model_name, "dataset": dataset, "eval_dataset": eval_dataset, "strategies": names,
        "plan_strategy": plan_strategy or names[0], "num_examples": num_examples, "prune_fraction": prune_fraction,
        "prune_count": prune_count, "per_layer": per_layer, "keep_one_per_layer": keep_one_per_layer,
        "iterative": iterative, "steps": steps, "fraction_step": fraction_step, "fractions": grid,
        "ablation_metric": ablation_metric,
        "seed": seed, "limit": limit, "eval_limit": eval_limit},
        examples=examples + (eval_examples or []))
    model, tokenizer = load_model_or_fail(model_name, device)
    from ..commands.common import check_labels

    check_labels(examples + (eval_examples or []), model)
    from ..models import num_layers_heads

    total = num_layers_heads(model)[0] * num_layers_heads(model)[1]
    if prune_count is not None and not 0 <= prune_count <= total:
        raise UserError(f"--prune-count must be in 0..{total} (the model has {total} heads)")
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)
    from .pipeline import run_pruning

    try:
        summary = run_pruning(model, tokenizer, examples, run_dir, eval_examples=eval_examples, strategies=names,
                              num_examples=num_examples, prune_fraction=prune_fraction, prune_count=prune_count,
                              plan_strategy=plan_strategy, per_layer=per_layer,
                              keep_one_per_layer=keep_one_per_layer, iterative=iterative, steps=steps,
                              fraction_step=fraction_step, fractions=grid, seed=seed,
                              ablation_metric=ablation_metric, cache=cache,
                              batch_size=batch_size, eval_batch_size=eval_batch_size,
                              latency_repeats=latency_repeats, save_model=not no_save_model,
                              log=log or (lambda m: click.echo(m, err=True)))
    except ValueError as err:
        raise UserError(str(err)) from None
    summary["run_dir"] = run_dir
    return summary


def summary_lines(summary: dict) -> dict:
    plan = summary["plan"]
    lines = {
        "run dir": summary.get("run_dir"),
        "accuracy (unpruned)": f"{summary['accuracy_unpruned']:.4f}",
    }
    for strategy, by_fraction in summary["accuracy_by_fraction"].items():
        picks = {k: v for k, v in by_fraction.items() if k in ("0.30", "0.50", "0.70")}
        lines[f"acc {strategy}"] = "  ".join(f"{float(k) * 100:.0f}%: {v:.4f}" for k, v in picks.items())
    lines["pruned"] = (f"{plan['heads_pruned']}/{summary['heads_total']} heads ({summary['plan_strategy']}), "
                       f"accuracy masked {plan['accuracy_masked']:.4f} / pruned {plan['accuracy_pruned']:.4f}")
    lines["parameters"] = (f"{summary['parameters']['before']:,} -> {summary['parameters']['after']:,} "
                           f"(-{100 * summary['parameters']['saving']:.1f}%)")
    lat = summary["latency"]
    lines["latency"] = (f"batch {lat['batch_size']}: {1000 * lat['median_s_before']:.1f} -> "
                        f"{1000 * lat['median_s_after']:.1f} ms (x{lat['speedup']:.2f}); batch 1: "
                        f"x{lat['single_speedup']:.2f}")
    return lines
