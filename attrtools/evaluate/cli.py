"""``attrtools evaluate``: faithfulness of several attribution methods on one model and dataset.

Its options are the fields of :class:`EvaluateConfig` (``cli_kit.config_options``), then ``--exclude``
and ``--explanations``."""
from __future__ import annotations

import os
import shlex
import sys

import click

from ..cli_kit import (ParameterError, UserError, check_method_params, command, config_from_options, config_options,
                       dataset_options, echo_summary, load_examples_or_fail, load_model_or_fail, log_to_stderr,
                       make_run_dir, model_option, open_cache_or_fail, parse_list, parse_params, resolve_progress, run_options,
                       tokenizer_for_checks)
from .config import EvaluateConfig


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
@config_options(EvaluateConfig, only=("methods",))
@click.option("--exclude", default="", help="Comma-separated methods to leave out of 'all'.")
@config_options(EvaluateConfig, exclude=("methods",))
@click.option("--explanations", "explanation_files", multiple=True, metavar="NAME=FILE.jsonl",
              help="Also evaluate explanations computed elsewhere, as row NAME: a JSONL file, one "
                   '{"tokens": [...], "scores": [...]} per evaluated example in order, on this model\'s tokens '
                   "(repeatable; --methods none evaluates only these and the random floor).")
@run_options
def evaluate(model_name, dataset, text_column, pair_column, label_column, label_names, limit, exclude,
             explanation_files, cache_dir, no_cache, output_dir, device, **settings):
    """Faithfulness of attribution methods: AOPC comprehensiveness/sufficiency, deletion/insertion AUC,
    log-odds, accuracy under perturbation and Spearman agreement with gradient x input.

    Writes faithfulness.csv, faithfulness.md, curves.csv, per_example.csv and faithfulness_curves.png."""
    if not dataset:
        raise UserError("--dataset is required (a local csv/tsv/jsonl file or a hub name such as glue/sst2:validation)")
    config = evaluate_config(settings, exclude)
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
    from ..engine import Engine
    from ..models import fingerprint
    from ..report import model_label
    from .pipeline import run

    engine = Engine(model, tokenizer, cache=open_cache_or_fail(cache_dir, enabled=not no_cache),
                    batch_size=config.batch_size, max_length=config.max_length, progress=config.progress)
    evaluation = run(engine, examples, config, run_dir, log=log_to_stderr, supplied=supplied,
                     command="attrtools " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                     model_label=model_label(model_name, fingerprint(model)))
    click.echo(open(os.path.join(run_dir, "faithfulness.md"), encoding="utf-8").read())
    summary = {"examples": evaluation.n_examples, "methods evaluated": len(evaluation.ok()),
               "skipped": ", ".join(r.name for r in evaluation.skipped()) or "none",
               "perturbed forwards": evaluation.forwards,
               "perturbed forwards from cache": evaluation.forwards_reused}
    if len(evaluation.forwards_by_rank) > 1:  # under a launcher: how the forwards were split
        summary["perturbed forwards by rank"] = ", ".join(map(str, evaluation.forwards_by_rank))
    echo_summary({**summary, "output": os.path.abspath(run_dir)})


def evaluate_config(settings: dict, exclude: str = "") -> EvaluateConfig:
    """The :class:`EvaluateConfig` of the command's options, checked before anything loads: --methods
    'all' (every registered method), 'none' or known names, less --exclude; --param items for chosen
    methods, checked against their schemas; --reference 'none' for no column; the operator resolved."""
    from .. import methods as registry

    available = registry.list_methods()
    text = settings.pop("methods").strip()
    if text == "all":
        chosen = list(available)
    elif text == "none":
        chosen = []
    else:
        chosen = parse_list(text, "--methods")
        unknown = [m for m in chosen if m not in available and m != "random"]
        if unknown:
            raise UserError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available)}")
    excluded = set(parse_list(exclude, "--exclude"))
    chosen = [m for m in chosen if m not in excluded and m != "random"]
    parsed = parse_params(settings.pop("method_params"), chosen)
    for method, method_params in parsed.items():  # checked before anything loads: never "skipped"
        check_method_params(method, method_params, option=f"--param {method}")
    reference = settings.pop("reference")
    config = config_from_options(EvaluateConfig, settings, methods=tuple(chosen), method_params=parsed,
                                 reference=None if reference.lower() == "none" else reference,
                                 progress=resolve_progress(settings["progress"]))
    config.operator = config.resolved_operator()
    return config
