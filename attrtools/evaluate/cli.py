"""``attrtools evaluate``: faithfulness of several attribution methods on one model and dataset."""
from __future__ import annotations

import os
import shlex
import sys

import click

from ..cli_kit import (ParameterError, UserError, check_method_params, command, common_run_options, dataset_options, echo_summary, load_examples_or_fail,
                       load_model_or_fail, log_to_stderr, make_run_dir, model_option, open_cache_or_fail,
                       parse_list, parse_params, resolve_progress, seed_option,
                       tokenizer_for_checks)
from . import OPERATORS, PRESETS
from .config import EvaluateConfig

D = EvaluateConfig()  # the defaults shown by --help are the config's


def _parse_limits(items):
    out = {}
    for item in items:
        method, sep, value = item.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise UserError(f"--method-limit {item!r} is not METHOD=N (N >= 1)")
        out[method] = int(value)
    return out


def _load_supplied(items) -> dict:
    """``--explanations NAME=FILE`` (repeatable) -> ``{NAME: [explanation dicts]}`` (``supplied.load_explanations``)."""
    from .supplied import load_explanations

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ParameterError(f"--explanations {item!r}: expected NAME=FILE.jsonl")
        if name.strip() in out:
            raise ParameterError(f"--explanations: the name {name.strip()!r} is given twice")
        out[name.strip()] = load_explanations(path.strip())
    return out


def check_operator(operator: str, tokenizer) -> None:
    """``--operator`` must be one this tokenizer can do (mask needs a mask token, pad a pad token):
    one line, exit 2. ``tokenizer`` None (not readable yet) checks nothing."""
    if tokenizer is None:
        return
    from .perturb import Perturber

    try:
        Perturber.for_tokenizer(operator, tokenizer)
    except ParameterError:
        others = [o for o in ("delete", "pad") if o != operator]
        raise UserError(f"--operator {operator}: this tokenizer has no {operator} token; use --operator "
                        f"{' or '.join(others)}") from None


@command()
@model_option()
@dataset_options
@click.option("--methods", "methods_arg", default="all",
              help="Comma-separated method names, or 'all' (every registered method). A seeded random "
                   "attribution is always added.")
@click.option("--exclude", default="", help="Comma-separated methods to leave out of 'all'.")
@click.option("--preset", type=click.Choice(PRESETS), default=D.preset,
              help="Bins: eraser 1/5/10/20/50 %, ferret 10..100 %, decompx 0..90 % of non-special tokens.")
@click.option("--operator", type=click.Choice(OPERATORS), default=None,
              help="How tokens are taken out (default: the preset's own: mask for decompx, delete otherwise).")
@click.option("--param", "params", multiple=True, metavar="METHOD:KEY=VALUE",
              help="Method parameter, e.g. --param attattr:steps=20 (repeatable; KEY=VALUE applies to all).")
@click.option("--method-limit", "method_limits", multiple=True, metavar="METHOD=N",
              help="Evaluate METHOD on the first N examples only (slow methods such as flow); repeatable.")
@click.option("--reference", default=D.reference,
              help="Method for the Spearman agreement column ('none' to skip).")
@click.option("--explanations", "explanation_files", multiple=True, metavar="NAME=FILE.jsonl",
              help="Also evaluate explanations computed elsewhere, as row NAME: a JSONL file, one "
                   '{"tokens": [...], "scores": [...]} per evaluated example in order, on this model\'s tokens '
                   "(repeatable; --methods none evaluates only these and the random floor).")
@seed_option(D.seed, "Seed of the random-attribution row.")
@common_run_options(batch_size=D.batch_size, max_length=D.max_length)
def evaluate(model_name, dataset, text_column, pair_column, label_column, label_names, limit, methods_arg, exclude,
             preset, operator, params, method_limits, reference, explanation_files, seed, cache_dir, no_cache, batch_size, max_length,
             progress, output_dir, device):
    """Faithfulness of attribution methods: AOPC comprehensiveness/sufficiency, deletion/insertion AUC,
    log-odds, accuracy under perturbation and Spearman agreement with gradient x input.

    Writes faithfulness.csv, faithfulness.md, curves.csv, per_example.csv and faithfulness_curves.png."""
    if not dataset:
        raise UserError("--dataset is required (a local csv/tsv/jsonl file or a hub name such as glue/sst2:validation)")
    from .. import methods as registry

    available = registry.list_methods()
    if methods_arg.strip() == "all":
        chosen = list(available)
    elif methods_arg.strip() == "none":
        chosen = []
    else:
        chosen = parse_list(methods_arg, "--methods")
        unknown = [m for m in chosen if m not in available and m != "random"]
        if unknown:
            raise UserError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available)}")
    excluded = set(parse_list(exclude, "--exclude"))
    chosen = [m for m in chosen if m not in excluded and m != "random"]
    parsed = parse_params(params, chosen)
    for method, method_params in parsed.items():  # checked before anything loads: never "skipped"
        check_method_params(method, method_params, option=f"--param {method}")
    config = EvaluateConfig(methods=tuple(chosen), preset=preset, operator=operator or None, method_params=parsed,
                            method_limits=_parse_limits(method_limits),
                            reference=None if reference.lower() == "none" else reference, seed=seed,
                            batch_size=batch_size, max_length=max_length, progress=resolve_progress(progress))
    config.operator = config.resolved_operator()
    supplied = _load_supplied(explanation_files)  # before anything loads: a bad file is one line
    check_operator(config.operator, tokenizer_for_checks(model_name))  # before the model and the run directory

    examples = load_examples_or_fail(dataset, text_column, pair_column, label_column, limit, label_names=label_names,
                                     model=model_name)
    from ..config import config_dict

    run_dir = make_run_dir(output_dir, "evaluate", {"model": model_name, "dataset": dataset, "n": len(examples),
                                                    **config_dict(config)},
                           examples=examples)  # before the model loads: an unusable folder fails at once
    model, tokenizer = load_model_or_fail(model_name, device)
    check_operator(config.operator, tokenizer)
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)

    from .report import write_all
    from .run import evaluate_methods

    from ..models import fingerprint
    from ..report import model_label

    label = model_label(model_name, fingerprint(model))
    command_line = "attrtools " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    ids = [e.id for e in examples]

    def partial(evaluation):  # rewrite the reports after every method: a killed run keeps what it finished
        write_all(evaluation, run_dir, command=command_line, example_ids=ids, model=label)

    evaluation = evaluate_methods(model, tokenizer, examples, list(chosen), config=config, cache=cache, log=log_to_stderr,
                                  on_result=partial, supplied=supplied)
    paths = write_all(evaluation, run_dir, command=command_line, example_ids=ids, model=label)
    click.echo(open(paths["markdown"], encoding="utf-8").read())
    summary = {"examples": evaluation.n_examples, "methods evaluated": len(evaluation.ok()),
               "skipped": ", ".join(r.name for r in evaluation.skipped()) or "none",
               "perturbed forwards": evaluation.forwards,
               "perturbed forwards from cache": evaluation.forwards_reused}
    if len(evaluation.forwards_by_rank) > 1:  # under a launcher: how the forwards were split
        summary["perturbed forwards by rank"] = ", ".join(map(str, evaluation.forwards_by_rank))
    echo_summary({**summary, "output": os.path.abspath(run_dir)})
