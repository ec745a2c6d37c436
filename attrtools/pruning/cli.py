"""``attrtools prune``: rank heads, draw the pruning curve, prune physically and save the smaller model."""
from __future__ import annotations

import os

import click

from ..cli_kit import (AtLeast, UserError, command, config_from_options, config_options, dataset_options, echo_summary,
                       load_examples_or_fail, load_model_or_fail, log_to_stderr, make_run_dir,
                       model_config_for_labels, model_option, open_cache_or_fail, options, resolve_progress,
                       run_options)
from .config import PruneConfig


def prune_options(f):
    """The options of ``attrtools prune``: every :class:`PruneConfig` field (``config_options``), then
    the evaluation set and the paper figures."""
    return options(
        config_options(PruneConfig),
        click.option("--eval-dataset", default=None,
                     help="Dataset for the curve and checks (default: the whole --dataset, as the official code)."),
        click.option("--eval-limit", type=AtLeast(1), default=None,
                     help="Use only the first N evaluation examples."),
        click.option("--figures", "figure_formats", default=None, metavar="FORMATS",
                     help="Also write figures/head-importance-STRATEGY.* for papers (plan crossed out); "
                          "FORMATS: a comma-separated list of png, svg, pdf."),
    )(f)


@command()
@model_option()
@dataset_options
@prune_options
@run_options
def prune(model_name, dataset, text_column, pair_column, label_column, label_names, limit, **options):
    """Rank attention heads (AttAttr and baselines), plot accuracy vs heads pruned, prune and save.

    Outputs in the run directory: head_importance.csv, pruning_curve.csv/.png, pruned_heads.json,
    pruned_model/ (reload with attrtools.load_pruned) and summary.json.
    """
    summary = prune_command(model_name, dataset, text_column, pair_column, label_column, limit,
                            label_names=label_names, **options)
    echo_summary(summary_lines(summary))


def prune_config(model_name, settings: dict) -> PruneConfig:
    """The :class:`PruneConfig` of the command's options (taken out of ``settings``), checked before
    anything loads: known strategies, not both --prune-fraction and --prune-count, a head count the
    model's config has, a --plan-strategy among --strategies."""
    from .importance import check_strategies

    count = settings.get("prune_count")
    if count is not None and _given("prune_fraction", settings):
        raise UserError("give either --prune-fraction or --prune-count, not both")
    config = config_from_options(PruneConfig, settings, **({"prune_fraction": None} if count is not None else {}))
    config.strategies = tuple(check_strategies(config.strategies))
    if config.prune_count is not None:  # against the config's head count before anything loads or is written
        from ..architecture import config_head_count

        heads = config_head_count(model_config_for_labels(model_name))
        if heads is not None and config.prune_count > heads:
            raise UserError(f"--prune-count must be in 0..{heads} (the model has {heads} heads)")
    if config.plan_strategy is not None and config.plan_strategy not in config.strategies:
        raise UserError(f"--plan-strategy {config.plan_strategy!r} is not among --strategies "
                        f"({', '.join(config.strategies)})")
    return config


def _given(name: str, settings: dict) -> bool:
    """Whether the option ``name`` was given (on the command line, or as a value other than the
    field's default by a Python caller)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and name in ctx.params:
        from click.core import ParameterSource

        return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
    return settings.get(name) not in (None, PruneConfig().prune_fraction)


def prune_command(model_name, dataset, text_column=None, pair_column=None, label_column=None, limit=None, *,
                  eval_dataset=None, eval_limit=None, cache_dir=None, no_cache=False, output_dir=None, device=None,
                  label_names=None, log=None, figure_formats=None, **settings):
    """The function behind ``attrtools prune`` and ``scripts/prune_model.py``; returns the summary.
    ``settings``: the :class:`PruneConfig` fields as the command line gives them."""
    if not dataset:
        raise UserError("--dataset is required")
    from ..report.plots import parse_formats

    formats = parse_formats(figure_formats)  # before anything loads: one line, exit 2
    config = prune_config(model_name, settings)
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
        **config_dict(config), "plan_strategy": config.plan_strategy or config.strategies[0]},
        examples=examples + (eval_examples or []))  # before the model loads: an unusable folder fails at once
    model, tokenizer = load_model_or_fail(model_name, device)
    from ..architecture import num_layers_heads

    total = num_layers_heads(model)[0] * num_layers_heads(model)[1]
    if config.prune_count is not None and config.prune_count > total:  # the loaded model's count decides
        raise UserError(f"--prune-count must be in 0..{total} (the model has {total} heads)")
    from ..engine import Engine
    from .pipeline import run

    engine = Engine(model, tokenizer, cache=open_cache_or_fail(cache_dir, enabled=not no_cache),
                    batch_size=config.batch_size, max_length=config.max_length,
                    progress=resolve_progress(config.progress))
    summary = run(engine, examples, config, run_dir, eval_examples=eval_examples, log=log or log_to_stderr)
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
