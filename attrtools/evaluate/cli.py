"""``attrtools evaluate``: faithfulness of several attribution methods on one model and dataset."""
from __future__ import annotations

import json
import os
import shlex
import sys

import click

from ..commands.common import (BadUsage, UserError, cache_options, check_method_params, load_examples_or_fail, open_cache_or_fail, dataset_options, device_option, echo_summary, make_run_dir, model_option,
                               output_dir_option, quiet_transformers)
from . import OPERATORS, PRESETS


def _parse_params(items, methods):
    """``METHOD:KEY=VALUE`` (or ``KEY=VALUE`` for every method) -> {method: {key: value}}."""
    out: dict = {}
    for item in items:
        head, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--param {item!r} is not METHOD:KEY=VALUE")
        method, colon, key = head.partition(":")
        key = key if colon else method
        if colon:
            targets = [method]
        else:  # KEY=VALUE: every chosen method that takes KEY
            from .. import methods as registry

            targets = [m for m in methods if m in registry.list_methods() and key in registry.get(m).defaults]
            if not targets:
                raise BadUsage(f"--param {item!r}: none of the chosen methods takes a parameter {key!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        for m in targets:
            out.setdefault(m, {})[key] = parsed
    return out


def _parse_limits(items):
    out = {}
    for item in items:
        method, sep, value = item.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise UserError(f"--method-limit {item!r} is not METHOD=N (N >= 1)")
        out[method] = int(value)
    return out


@click.command()
@model_option
@dataset_options
@click.option("--methods", "methods_arg", default="all", show_default=True,
              help="Comma-separated method names, or 'all' (every registered method). A seeded random "
                   "attribution is always added.")
@click.option("--exclude", default="", help="Comma-separated methods to leave out of 'all'.")
@click.option("--preset", type=click.Choice(PRESETS), default="decompx", show_default=True,
              help="Bins: eraser 1/5/10/20/50 %, ferret 10..100 %, decompx 0..90 % of non-special tokens.")
@click.option("--operator", type=click.Choice(OPERATORS), default=None,
              help="How tokens are taken out (default: the preset's own: mask for decompx, delete otherwise).")
@click.option("--param", "params", multiple=True, metavar="METHOD:KEY=VALUE",
              help="Method parameter, e.g. --param attattr:steps=20 (repeatable; KEY=VALUE applies to all).")
@click.option("--method-limit", "method_limits", multiple=True, metavar="METHOD=N",
              help="Evaluate METHOD on the first N examples only (slow methods such as flow); repeatable.")
@click.option("--reference", default="grad_input", show_default=True,
              help="Method for the Spearman agreement column ('none' to skip).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-attribution row.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Examples per attribution batch.")
@cache_options
@output_dir_option
@device_option
def evaluate(model_name, dataset, text_column, pair_column, label_column, limit, methods_arg, exclude, preset,
             operator, params, method_limits, reference, seed, batch_size, cache_dir, no_cache, output_dir, device):
    """Faithfulness of attribution methods: AOPC comprehensiveness/sufficiency, deletion/insertion AUC,
    log-odds, accuracy under perturbation and Spearman agreement with gradient x input.

    Writes faithfulness.csv, faithfulness.md, curves.csv, per_example.csv and faithfulness_curves.png."""
    if not dataset:
        raise UserError("--dataset is required (a local csv/tsv/jsonl file or a hub name such as glue/sst2:validation)")
    if limit is not None and limit < 1:
        raise UserError("--limit must be >= 1")
    from .. import methods as registry

    available = registry.list_methods()
    if methods_arg.strip() == "all":
        chosen = list(available)
    else:
        chosen = [m.strip() for m in methods_arg.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in available and m != "random"]
        if unknown:
            raise UserError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available)}")
    excluded = {m.strip() for m in exclude.split(",") if m.strip()}
    chosen = [m for m in chosen if m not in excluded and m != "random"]
    operator = operator or ("mask" if preset == "decompx" else "delete")
    parsed = _parse_params(params, chosen)
    for method, method_params in parsed.items():  # checked before anything loads: never "skipped"
        check_method_params(method, method_params, what=f"--param {method}")
    limits = _parse_limits(method_limits)
    reference = None if reference.lower() == "none" else reference

    quiet_transformers()
    examples = load_examples_or_fail(dataset, text_column, pair_column, label_column, limit, model=model_name)
    from ..commands.common import load_model_or_fail

    run_dir = make_run_dir(output_dir, "evaluate", {
        "model": model_name, "dataset": dataset, "n": len(examples), "methods": chosen, "preset": preset,
        "operator": operator, "params": parsed, "method_limits": limits, "reference": reference, "seed": seed},
        examples=examples)  # before the model loads: an unusable folder fails at once
    model, tokenizer = load_model_or_fail(model_name, device)
    if operator == "mask" and tokenizer.mask_token_id is None:
        raise UserError("this tokenizer has no mask token: use --operator delete or pad")
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)

    from .report import write_all
    from .run import evaluate_methods

    from ..models import fingerprint
    from ..report import model_label

    label = model_label(model_name, fingerprint(model))
    progress = sys.stderr.isatty()
    command = "attrtools " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    ids = [e.id for e in examples]

    def partial(evaluation):  # rewrite the reports after every method: a killed run keeps what it finished
        write_all(evaluation, run_dir, command=command, example_ids=ids, model=label)

    try:
        evaluation = evaluate_methods(model, tokenizer, examples, chosen, preset=preset, operator=operator,
                                      cache=cache, method_params=parsed, method_limits=limits, reference=reference,
                                      seed=seed, batch_size=batch_size, progress=progress,
                                      log=lambda m: click.echo(m, err=True), on_result=partial)
    except ValueError as err:
        raise UserError(str(err)) from None
    paths = write_all(evaluation, run_dir, command=command, example_ids=ids, model=label)
    click.echo(open(paths["markdown"], encoding="utf-8").read())
    echo_summary({"examples": len(examples), "methods evaluated": len(evaluation.ok()),
                  "skipped": ", ".join(r.name for r in evaluation.skipped()) or "none",
                  "perturbed forwards": evaluation.forwards,
                  "perturbed forwards from cache": getattr(evaluation, "forwards_reused", 0), "output": os.path.abspath(run_dir)})
