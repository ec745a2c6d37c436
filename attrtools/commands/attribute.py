"""``attrtools attribute`` and ``attrtools methods``."""
from __future__ import annotations

import os

import click

from ..cli_kit import (check_labels, check_method_params, command, common_run_options, dataset_options, dump, echo_summary,
                       examples_from, keep_content_or_fail, load_model_or_fail, make_run_dir, model_option, open_cache_or_fail, parse_params,
                       parse_target, resolve_progress, target_option, text_options)


@command()
@model_option()
@text_options
@dataset_options
@click.option("--method", default="attattr", help="Method name (see `attrtools methods`).")
@target_option()
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Method parameter, e.g. --param steps=64 (repeatable; values parsed as JSON when possible).")
@click.option("--html", "write_html", is_flag=True,
              help="Also write views/NNNNNN.html per example (token heat-map; layer/head view for matrix methods) "
                   "and views/index.html (all examples in one table). Self-contained, open offline.")
@click.option("--figures", "figure_formats", default=None, metavar="FORMATS",
              help="Also write figures/ for papers: per example the token heat-map (and the n x n map and layer x head "
                   "importance for matrix methods), and for the run all-tokens (up to 20 examples) and all-heads; "
                   "FORMATS is a comma-separated list of png, svg, pdf (e.g. png,pdf).")
@common_run_options
def attribute(model_name, texts, pairs, dataset, text_column, pair_column, label_column, label_names, limit, method,
              target, params, write_html, figure_formats, cache_dir, no_cache, batch_size, max_length, progress, output_dir, device):
    """Attribute texts or a dataset with one method: attributions/NNNNNN.safetensors per example,
    token_scores.csv beside that folder (one row per token), word_scores.csv (one row per word of the
    original text: sum, max and mean of its tokens' scores), and with --html views/ (one page per example).

    Results go through the attribution cache (unless --no-cache): each batch is written as soon as
    it is computed, so an interrupted run resumes where it stopped when started again."""
    from .. import methods as registry
    from ..engine import Engine

    registry.get(method)  # an unknown name: UnknownMethodError, one line
    parsed = parse_params(params)
    check_method_params(method, parsed)  # before anything loads: one line, exit 2
    target_spec = parse_target(target)
    from ..report.plots import parse_formats

    formats = parse_formats(figure_formats)  # before anything loads: one line, exit 2
    examples = examples_from(texts, pairs, dataset, text_column, pair_column, label_column, limit, label_names,
                             model=model_name)
    if dataset and target_spec == "gold":  # the one label rule: unlabeled (-1) rows left out with their reason
        examples = check_labels(examples, None, "--dataset", need=True)
    from .. import distributed

    here = distributed.init()
    config = {"model": model_name, "method": method, "target": target, "params": parsed, "dataset": dataset,
              "n": len(examples), "max_length": max_length}
    # before the model loads: an unusable folder fails at once (rank 0 writes the outputs)
    run_dir = make_run_dir(output_dir, "attribute", config, examples=examples) if here.is_main else None
    model, tokenizer = load_model_or_fail(model_name, device)
    if dataset:  # rows this tokenizer keeps no token of: skipped with their reason (summary), as in every tool
        examples = keep_content_or_fail(examples, tokenizer)
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, max_length=max_length,
                    progress=resolve_progress(progress))
    out = os.path.join(run_dir, "attributions") if run_dir else None
    count = 0
    # Streamed: each result is written as soon as it comes (input order), never all held.
    # (A DistributedError is an AttrtoolsError: one line, like every other refusal.)
    stream = engine.stream(examples, method=method, target=target_spec, **parsed)
    for count, attribution in enumerate(stream, 1):
        attribution.save(os.path.join(out, f"{count - 1:06d}.safetensors"))
    if not here.is_main:
        return
    plan = stream.stats.plan
    if plan is not None:
        from ..io import write_json

        write_json(os.path.join(run_dir, "plan.json"), plan)
    csv_path, words_path, no_words, pages = _write_run_files(run_dir, out, count, write_html, formats,
                                                             echo_scores=bool(texts))
    echo_summary({"method": method, "examples": count, "computed": stream.stats.computed,
                  "from cache": stream.stats.hits, "cache": cache.directory if cache is not None else "off",
                  **({"ranks": here.size} if here.distributed else {}), "output": out, "token scores": csv_path,
                  "word scores": words_path + (f" ({no_words} example(s) without token offsets left out: slow "
                                               "tokenizer)" if no_words else ""),
                  **({"views": pages["html"]} if "html" in pages else {}),
                  **({"figures": pages["figures"]} if "figures" in pages else {})})


def _write_run_files(run_dir: str, out: str, count: int, write_html: bool, formats, echo_scores: bool):
    """From the ``count`` attribution files saved in ``out``, read back one at a time (the run never
    holds all results): ``token_scores.csv`` and ``word_scores.csv`` in ``run_dir``, with
    ``write_html`` ``views/`` (a page per example and ``index.html``), with ``formats`` ``figures/``
    (``write_figures``), and with ``echo_scores`` each example's scores printed (``format_scores``).
    Returns ``(token scores path, word scores path, examples without word scores, {"html"/"figures": path})``."""
    from ..types import Attribution

    def saved():
        return (os.path.join(out, f"{i:06d}.safetensors") for i in range(count))

    csv_path = write_token_scores(os.path.join(run_dir, "token_scores.csv"), (Attribution.load(f) for f in saved()))
    from ..words import write_word_scores  # the word table beside it (docs/words.md)

    words_path, no_words = write_word_scores(os.path.join(run_dir, "word_scores.csv"),
                                             (Attribution.load(f) for f in saved()))
    pages = {}
    if write_html:
        from ..types import Attributions

        views = os.path.join(run_dir, "views")
        for index, path in enumerate(saved()):
            Attribution.load(path).to_html(os.path.join(views, f"{index:06d}.html"))
        Attributions([Attribution.load(f) for f in saved()]).to_html(os.path.join(views, "index.html"))
        pages["html"] = os.path.join(views, "index.html")
    if formats:
        pages["figures"] = write_figures(os.path.join(run_dir, "figures"), saved, formats)
    if echo_scores:
        for path in saved():
            click.echo(format_scores(Attribution.load(path)))
    return csv_path, words_path, no_words, pages


#: ``all-tokens`` stacks at most this many examples (a taller figure is no longer a paper figure)
ALL_TOKENS_MAX = 20


def write_figures(folder: str, saved, formats) -> str:
    """``folder/NNNNNN-{tokens,matrix,heads}.{fmt}`` per example (matrix and heads where the payload
    has them), ``all-tokens`` (first ``ALL_TOKENS_MAX`` examples, one colour scale) and ``all-heads``
    (mean head importance, per-head methods). ``saved()``: the run's attribution files; read one at
    a time except for the two run figures. Returns ``folder``."""
    from ..types import Attribution, Attributions

    def write(fig, stem):
        for fmt in formats:
            fig.save(os.path.join(folder, f"{stem}.{fmt}"))

    kinds = set()
    for index, path in enumerate(saved()):
        a = Attribution.load(path)
        kinds.add(a.kind)
        write(a.plot(view="tokens"), f"{index:06d}-tokens")
        if a.kind != "tokens":
            write(a.plot(view="matrix"), f"{index:06d}-matrix")
        if a.kind == "matrix":
            write(a.plot(view="heads"), f"{index:06d}-heads")
    files = list(saved())
    if files:
        write(Attributions([Attribution.load(f) for f in files[:ALL_TOKENS_MAX]]).plot(view="tokens"), "all-tokens")
    if kinds == {"matrix"}:
        write(Attributions([Attribution.load(f) for f in files]).plot(view="heads"), "all-heads")
    return folder


def write_token_scores(path: str, attributions) -> str:
    """``example,position,token,score,special`` for every token of every attribution (``token_scores()``),
    written row by row (atomic: the file appears complete or not at all)."""
    import csv

    from ..export import TOKEN_COLUMNS, token_rows
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(TOKEN_COLUMNS)
            for row in token_rows(attributions):
                writer.writerow(row[:4] + (f"{row[4]:.6g}", row[5]))
    return path


def format_scores(attribution, width: int = 100) -> str:
    """The text, the prediction and each token with its score, wrapped for a terminal."""
    import textwrap

    from ..report import class_name

    names = attribution.label_names
    p = attribution.probs[attribution.predicted] if attribution.probs else float("nan")
    head = (f"{attribution.text!r}" + (f" / {attribution.text_pair!r}" if attribution.text_pair else "")
            + f" -> {class_name(attribution.predicted, names)} (p = {p:.3f})"
            + (f", explaining {class_name(attribution.target, names)}" if attribution.target is not None else ""))
    cells = [f"{t}\u00a0{s:+.3g}" for t, s in zip(attribution.tokens, attribution.token_scores().tolist())]
    body = textwrap.fill("  ".join(cells), width=width, initial_indent="  ", subsequent_indent="  ")
    return head + "\n" + body.replace("\u00a0", " ")


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
