"""``attrtools attribute`` and ``attrtools methods``."""
from __future__ import annotations

import os

import click

from ..cli_kit import (check_method_params, command, common_run_options, dataset_options, dump, echo_summary,
                       examples_from, load_model_or_fail, make_run_dir, model_option, open_cache_or_fail, parse_params,
                       parse_target, quiet_transformers, resolve_progress, target_option, text_options)


@command()
@model_option()
@text_options
@dataset_options
@click.option("--method", default="attattr", help="Method name (see `attrtools methods`).")
@target_option()
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Method parameter, e.g. --param steps=64 (repeatable; values parsed as JSON when possible).")
@common_run_options
def attribute(model_name, texts, pairs, dataset, text_column, pair_column, label_column, label_names, limit, method,
              target, params, cache_dir, no_cache, batch_size, max_length, progress, output_dir, device):
    """Attribute texts or a dataset with one method; one safetensors file per example.

    Results go through the attribution cache (unless --no-cache): each batch is written as soon as
    it is computed, so an interrupted run resumes where it stopped when started again."""
    from .. import methods as registry
    from ..engine import Engine

    registry.get(method)  # an unknown name: UnknownMethodError, one line
    parsed = parse_params(params)
    check_method_params(method, parsed)  # before anything loads: one line, exit 2
    target_spec = parse_target(target)
    quiet_transformers()
    examples = examples_from(texts, pairs, dataset, text_column, pair_column, label_column, limit, label_names)
    from .. import distributed
    from ..errors import AttrtoolsError

    here = distributed.init()
    config = {"model": model_name, "method": method, "target": target, "params": parsed, "dataset": dataset,
              "n": len(examples), "max_length": max_length}
    # before the model loads: an unusable folder fails at once (rank 0 writes the outputs)
    run_dir = make_run_dir(output_dir, "attribute", config, examples=examples) if here.is_main else None
    model, tokenizer = load_model_or_fail(model_name, device)
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, max_length=max_length,
                    progress=resolve_progress(progress))
    out = os.path.join(run_dir, "attributions") if run_dir else None
    count = 0
    try:
        # Streamed: each result is written as soon as it comes (input order), never all held.
        for count, attribution in enumerate(engine.stream(examples, method=method, target=target_spec, **parsed), 1):
            attribution.save(os.path.join(out, f"{count - 1:06d}.safetensors"))
    except distributed.DistributedError as err:
        raise AttrtoolsError(str(err)) from None
    if not here.is_main:
        return
    plan = getattr(engine, "last_plan", None)
    if plan is not None:
        from ..io import write_json

        write_json(os.path.join(run_dir, "plan.json"), plan)
    echo_summary({"method": method, "examples": count, "computed": engine.stats["computed"],
                  "from cache": engine.stats["hits"], "cache": cache.directory if cache is not None else "off",
                  **({"ranks": here.size} if here.distributed else {}), "output": out})


@command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def methods(as_json):
    """List the attribution methods, their output kinds, targets and papers."""
    from .. import methods as registry

    rows = [registry.get(name).describe() for name in registry.list_methods()]
    if as_json:
        click.echo(dump(rows))
        return
    for row in rows:
        click.echo(f"{row['name']:<14} {row['kind']:<13} target={row['target']:<6} {row['title']}")
        click.echo(f"{'':<14} {row['paper']}")
