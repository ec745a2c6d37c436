"""``attrtools prune``: rank heads, draw the pruning curve, prune physically and save the smaller model."""
from __future__ import annotations

import os

import click

from ..cli_kit import (AtLeast, Finite, UserError, at_least, command, common_run_options, dataset_options,
                       echo_summary, finite,
                       load_examples_or_fail, load_model_or_fail, log_to_stderr, make_run_dir, model_config_for_labels,
                       model_option,
                       open_cache_or_fail, options, parse_floats, parse_list, seed_option,
                       steps_option)
from .config import PruneConfig

D = PruneConfig()  # the defaults shown by --help are the config's


def prune_options(f):
    return options(
        click.option("--strategies", default=",".join(D.strategies),
                     help="Comma-separated importance strategies: attattr, taylor, attention, ablation, random."),
        click.option("--plan-strategy", default=None,
                     help="Strategy whose plan is pruned physically and saved (default: the first of --strategies)."),
        click.option("--num-examples", type=AtLeast(1), default=D.num_examples,
                     help="Importance from the first N examples of --dataset (after --limit; official AttAttr "
                          "protocol: 200 dev examples)."),
        click.option("--prune-fraction", type=Finite(0.0, 1.0), default=None,
                     help=f"Fraction of all heads to prune physically (default {D.prune_fraction} unless --prune-count)."),
        click.option("--prune-count", type=AtLeast(0), default=None,
                     help="Number of heads to prune physically (instead of --prune-fraction)."),
        click.option("--per-layer", is_flag=True, help="Rank heads within each layer; prune evenly across layers."),
        click.option("--keep-one-per-layer", is_flag=True, help="Never remove the last head of a layer."),
        click.option("--iterative", is_flag=True,
                     help="Re-estimate importance with the already-pruned heads masked after each step of the "
                          "curve (each 10% with the default --fraction-step)."),
        steps_option(20, "importance of the attattr strategy, as prune_head_with_attr.py"),
        click.option("--fraction-step", type=Finite(0.0, 1.0), default=D.fraction_step,
                     help="Spacing of the pruning curve (fractions of heads)."),
        click.option("--fractions", default=None,
                     help="Explicit curve points instead of the grid, e.g. 0,0.3,0.5,0.7 (saves time)."),
        click.option("--ablation-metric", type=click.Choice(["loss", "accuracy"]), default=D.ablation_metric,
                     help="What the single-head ablation baseline measures."),
        click.option("--eval-dataset", default=None,
                     help="Dataset for the curve and checks (default: the whole --dataset, as the official code)."),
        click.option("--eval-limit", type=AtLeast(1), default=None,
                     help="Use only the first N evaluation examples."),
        seed_option(D.seed, "Seed of the random strategy."),
        click.option("--eval-batch-size", type=AtLeast(1), default=D.eval_batch_size,
                     help="Examples per batch of the masked evaluation (curve, checks)."),
        click.option("--latency-repeats", type=AtLeast(1), default=D.latency_repeats,
                     help="Timed forwards per model for the latency before/after."),
        click.option("--no-save-model", is_flag=True, help="Do not write the pruned model."),
        click.option("--figures", "figure_formats", default=None, metavar="FORMATS",
                     help="Also write figures/head-importance-STRATEGY.* for papers (plan crossed out); "
                          "FORMATS: a comma-separated list of png, svg, pdf."),
    )(f)


@command()
@model_option()
@dataset_options
@prune_options
@common_run_options(batch_size=D.batch_size, max_length=D.max_length)
def prune(model_name, dataset, text_column, pair_column, label_column, label_names, limit, **options):
    """Rank attention heads (AttAttr and baselines), plot accuracy vs heads pruned, prune and save.

    Outputs in the run directory: head_importance.csv, pruning_curve.csv/.png, pruned_heads.json,
    pruned_model/ (reload with attrtools.load_pruned) and summary.json.
    """
    summary = prune_command(model_name, dataset, text_column, pair_column, label_column, limit,
                            label_names=label_names, **options)
    echo_summary(summary_lines(summary))


def prune_command(model_name, dataset, text_column, pair_column, label_column, limit, strategies, plan_strategy,
                  num_examples, prune_fraction, prune_count, per_layer, keep_one_per_layer, iterative, steps,
                  fraction_step, fractions, ablation_metric, eval_dataset, eval_limit, seed, batch_size,
                  eval_batch_size, latency_repeats, no_save_model, cache_dir, no_cache, output_dir, device,
                  max_length=D.max_length, progress=None, label_names=None, log=None, figure_formats=None):
    """The function behind ``attrtools prune`` and ``scripts/prune_model.py``; returns the summary."""
    from .importance import check_strategies
    from .pipeline import run_pruning

    if not dataset:
        raise UserError("--dataset is required")
    from ..report.plots import parse_formats

    formats = parse_formats(figure_formats)  # before anything loads: one line, exit 2
    if prune_fraction is not None and prune_count is not None:
        raise UserError("give either --prune-fraction or --prune-count, not both")
    finite("--prune-fraction", prune_fraction, 0.0, 1.0)
    finite("--fraction-step", fraction_step, 0.0, 1.0)
    at_least("--prune-count", prune_count, 0)
    if prune_count is not None:  # against the config's head count before anything loads or is written
        from ..architecture import config_head_count

        heads = config_head_count(model_config_for_labels(model_name))
        if heads is not None and prune_count > heads:
            raise UserError(f"--prune-count must be in 0..{heads} (the model has {heads} heads)")
    config = PruneConfig(
        strategies=tuple(check_strategies(parse_list(strategies, "--strategies"))), num_examples=num_examples,
        prune_fraction=prune_fraction if prune_count is None else None, prune_count=prune_count,
        plan_strategy=plan_strategy, per_layer=per_layer, keep_one_per_layer=keep_one_per_layer, iterative=iterative,
        steps=steps, fraction_step=fraction_step, fractions=tuple(parse_floats(fractions, "--fractions") or ()) or None,
        seed=seed, ablation_metric=ablation_metric, batch_size=batch_size, eval_batch_size=eval_batch_size,
        max_length=max_length, latency_repeats=latency_repeats, save_model=not no_save_model, progress=progress)
    if config.prune_fraction is None and config.prune_count is None:
        config.prune_fraction = D.prune_fraction
    if plan_strategy is not None and plan_strategy not in config.strategies:
        raise UserError(f"--plan-strategy {plan_strategy!r} is not among --strategies ({', '.join(config.strategies)})")
    # the one label rule (cli_kit.check_labels): labels in range, unlabeled (-1) rows left out with their reason
    examples = load_examples_or_fail(dataset, text_column, pair_column, label_column, limit, label_names=label_names,
                                     model=model_name, need_labels=True)
    eval_examples = load_examples_or_fail(eval_dataset, text_column, pair_column, label_column, eval_limit,
                                          what="--eval-dataset", label_names=label_names, model=model_name,
                                          need_labels=True) \
        if eval_dataset else (examples[:eval_limit] if eval_limit else None)
    from ..config import config_dict

    run_dir = make_run_dir(output_dir, "prune", {
        "model": model_name, "dataset": dataset, "eval_dataset": eval_dataset, "limit": limit, "eval_limit": eval_limit,
        **config_dict(config), "plan_strategy": plan_strategy or config.strategies[0]},
        examples=examples + (eval_examples or []))  # before the model loads: an unusable folder fails at once
    model, tokenizer = load_model_or_fail(model_name, device)
    from ..architecture import num_layers_heads

    total = num_layers_heads(model)[0] * num_layers_heads(model)[1]
    if prune_count is not None and not 0 <= prune_count <= total:  # the loaded model's count decides
        raise UserError(f"--prune-count must be in 0..{total} (the model has {total} heads)")
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)
    summary = run_pruning(model, tokenizer, examples, run_dir, eval_examples=eval_examples, config=config, cache=cache,
                          log=log or log_to_stderr)
    summary["run_dir"] = run_dir
    if formats:
        from .report import write_figures

        summary["figures_dir"] = write_figures(run_dir, formats)
    return summary


def summary_lines(summary: dict) -> dict:
    plan = summary["plan"]
    report = os.path.join(summary["run_dir"], "report.html") if summary.get("run_dir") else None
    lines = {
        "run dir": summary.get("run_dir"),
        **({"report": report} if report and os.path.exists(report) else {}),
        **({"figures": summary["figures_dir"]} if summary.get("figures_dir") else {}),
        "accuracy (unpruned)": f"{summary['accuracy_unpruned']:.4f}",
    }
    for strategy, by_fraction in summary["accuracy_by_fraction"].items():
        picks = {k: v for k, v in by_fraction.items() if k in ("0.30", "0.50", "0.70")}
        lines[f"acc {strategy}"] = "  ".join(f"{float(k) * 100:.0f}%: {v:.4f}" for k, v in picks.items())
    lines["pruned"] = (f"{plan['heads_pruned']}/{summary['heads_total']} heads ({summary['plan_strategy']}), "
                       f"accuracy masked {plan['accuracy_masked']:.4f} / pruned {plan['accuracy_pruned']:.4f}")
    if summary.get("shared_layers"):  # ALBERT: a head of a shared block goes from all its layers
        lines["shared layers"] = (f"{summary['shared_layers']} run shared blocks: each head is pruned in every "
                                  "layer of its group")
    lines["parameters"] = (f"{summary['parameters']['before']:,} -> {summary['parameters']['after']:,} "
                           f"(-{100 * summary['parameters']['saving']:.1f}%)")
    lat = summary["latency"]
    lines["latency"] = "; ".join(
        f"batch {size}: {1000 * before:.1f} -> {1000 * after:.1f} ms ({speed:.2f}x {'faster' if speed >= 1 else 'slower'} "
        "pruned)" for size, before, after, speed in (
            (lat["batch_size"], lat["median_s_before"], lat["median_s_after"], lat["speedup"]),
            (1, lat.get("single_median_s_before"), lat.get("single_median_s_after"), lat.get("single_speedup")))
        if before is not None and after is not None and speed)
    return lines
