"""``attrtools triggers`` and ``attrtools audit`` (no torch or TextAttack import until they run).

Their settings are the fields of :class:`AuditConfig` (``cli_kit.config_options``): ``triggers``
takes the extraction fields (``TRIGGER_FIELDS``), ``audit`` every field."""
from __future__ import annotations

import os

import click

from ..cli_kit import (AtLeast, UserError, check_labels, command, config_from_options, config_options, dataset_options,
                       echo_summary, keep_content_or_fail, load_examples_or_fail, load_model_or_fail, make_run_dir,
                       model_config_for_labels, model_option, open_cache_or_fail, options, resolve_progress,
                       run_options, train_columns, train_dataset_options)
from .config import TRIGGER_FIELDS, AuditConfig


def _examples(spec, text_column, pair_column, label_column, limit, what, label_names=None, model=None):
    """Labelled examples, each label a class of ``model`` (checked on its config, before it loads)."""
    examples = load_examples_or_fail(spec, text_column, pair_column, label_column, limit, what=what, need_labels=True,
                                     label_names=label_names, model=model)
    check_labels(examples, model_config_for_labels(model), what)
    return examples


old_cache_flag = click.option("--cache", "old_cache_flag", is_flag=True, hidden=True,
                              help="Old spelling: the cache is on unless --no-cache.")


def _config(settings: dict, **given) -> AuditConfig:
    """The :class:`AuditConfig` of the command's options (taken out of ``settings``)."""
    settings.pop("old_cache_flag", None)
    return config_from_options(AuditConfig, settings, progress=resolve_progress(settings.get("progress")), **given)


@command()
@model_option()
@dataset_options(limit_help="Read only the first N training examples of --dataset.")
@config_options(AuditConfig, only=TRIGGER_FIELDS)
@old_cache_flag
@click.option("--eval-dataset", default=None, help="Labelled dataset for the per-class accuracy table (e.g. dev).")
@run_options
def triggers(model_name, dataset, text_column, pair_column, label_column, label_names, limit, eval_dataset,
             cache_dir, no_cache, output_dir, device, **settings):
    """Extract adversarial trigger patterns from AttAttr on correctly classified training examples
    (Hao et al. 2021, §6); with --eval-dataset, also the per-class accuracy after inserting the
    top-k triggers. Writes triggers.json (and per_class.csv)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = _config(settings)
    train = _examples(dataset, text_column, pair_column, label_column, limit, "--dataset", label_names, model_name)
    dev = _examples(eval_dataset, text_column, pair_column, label_column, None, "--eval-dataset", label_names,
                    model_name) if eval_dataset else None
    from ..config import config_dict

    out = make_run_dir(output_dir, "triggers", {"model": model_name, "dataset": dataset, "eval_dataset": eval_dataset,
                                                **config_dict(config)}, examples=train)
    model, tok = load_model_or_fail(model_name, device)
    from .pipeline import extract_and_save

    patterns, stats = extract_and_save(model, tok, train, out, config, open_cache_or_fail(cache_dir, not no_cache))
    lines = {"output": out, "patterns kept": f"{stats['kept']} of {stats['patterns']}",
             "examples used": stats["correct_used"]}
    from .triggers import unique_triggers

    for i, p in enumerate(unique_triggers(patterns)[:5], start=1):
        lines[f"trigger {i}"] = f"{' '.join(p.trigger)!r} (class {p.target}, v1+v2 {p.score:.4f})"
    if eval_dataset:
        from .audit import write_per_class
        from .triggers import per_class_accuracy

        rows = per_class_accuracy(model, tok, dev, patterns, top_k=config.top_k, max_length=config.max_length)
        write_per_class(os.path.join(out, "per_class.csv"), rows)
        lines["per_class.csv"] = f"{len(rows)} rows"
    echo_summary(lines)


resource_options = options(
    click.option("--word-embeddings", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Counter-fitted word vectors (word2vec/GloVe text, .gz, or .npz words+vectors) for textfooler, "
                      "a2t, alzantot, faster-alzantot, iga, kuleshov, textbugger."),
    click.option("--sentence-encoder", default=None,
                 help="Local transformers encoder (folder or cached hub id, mean-pooled) in place of USE/SBERT."),
    click.option("--no-use-constraint", is_flag=True,
                 help="Run without the sentence-encoder constraint (recorded in run_config.json and the report)."),
    click.option("--mlm", default=None, help="Masked LM (folder or cached hub id) for bae, bert-attack, clare."),
    click.option("--nltk-data", type=click.Path(exists=True, file_okay=False), default=None,
                 help="NLTK data folder (corpora/wordnet for pwws/leap; taggers/averaged_perceptron_tagger_eng and "
                      "taggers/universal_tagset for the POS constraint and clare)."),
    click.option("--no-pos-constraint", is_flag=True, help="Run without the part-of-speech constraint (recorded)."),
    click.option("--lm", default=None, help="Local GPT-2 folder for kuleshov's language-model constraint."),
    click.option("--no-lm-constraint", is_flag=True, help="Run without the language-model constraint (recorded)."),
    click.option("--homoglyphs", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Unicode's intentional.txt for textbugger and bad-characters."),
)


def rows_lines(rows, attacked: int, num_examples: int) -> dict:
    """The audit summary's account of the rows: how many were read, skipped (and why), usable and
    attacked, so that the totals add up (read = skipped + usable; attacked <= usable)."""
    read = getattr(rows, "total", len(rows))
    skipped = len(getattr(rows, "skipped", []))
    return {"rows read": f"{read}: {len(rows)} usable, {skipped} skipped without content"
                         + (" (see rows skipped)" if skipped else ""),
            "attacked": f"{attacked} (the first usable rows, at most --num-examples {num_examples})"}


def _resources(word_embeddings, sentence_encoder, no_use_constraint, mlm, nltk_data, no_pos_constraint, lm,
               no_lm_constraint, homoglyphs):
    from .resources import AttackResources

    return AttackResources(word_embeddings=word_embeddings, sentence_encoder=sentence_encoder,
                           no_use_constraint=no_use_constraint, mlm=mlm, nltk_data=nltk_data,
                           no_pos_constraint=no_pos_constraint, lm=lm, no_lm_constraint=no_lm_constraint,
                           homoglyphs=homoglyphs)


#: the audit's own options (not settings of AuditConfig): what is attacked, and by which models
audit_options = options(
    click.option("--triggers", "triggers_path", default=None, type=click.Path(dir_okay=False),
                 help="A triggers.json from `attrtools triggers` (instead of --train-dataset)."),
    resource_options,
    click.option("--compare-model", "compare_models", multiple=True,
                 help="Another model (folder, hub id or saved pruned model) attacked on the same examples; repeatable."),
    click.option("--prune-run", "prune_runs", multiple=True, type=click.Path(exists=True, file_okay=False),
                 help="A run directory of `attrtools prune`: its unpruned model and each strategy's chosen plan "
                      "(heads masked) are compared; repeatable."),
    click.option("--num-examples", type=AtLeast(1), default=100,
                 help="Examples of --dataset to attack (the first N, after --limit)."),
)

RESOURCE_NAMES = ("word_embeddings", "sentence_encoder", "no_use_constraint", "mlm", "nltk_data", "no_pos_constraint",
                  "lm", "no_lm_constraint", "homoglyphs")


@command()
@model_option(required=False, help="Hub id or local folder of a sequence classifier "
                                   "(default with --prune-run: its unpruned model).")
@dataset_options(limit_help="Read only the first N examples of --dataset (then --num-examples of those are attacked).")
@train_dataset_options
@audit_options
@config_options(AuditConfig)
@old_cache_flag
@run_options
def audit(model_name, dataset, text_column, pair_column, label_column, label_names, limit, train_dataset,
          train_text_column, train_pair_column, train_label_column, triggers_path, compare_models, prune_runs,
          num_examples, cache_dir, no_cache, output_dir, device, **settings):
    """Robustness audit with TextAttack: every classification recipe by its TextAttack name, the
    attribution-trigger attack, and attribution-ranked vs leave-one-out word ranking, on the same
    examples. With --compare-model / --prune-run, every model is attacked on the same examples and
    comparison.csv/.png/.html hold one table. Writes results.csv (TextAttack's CSV columns),
    summary.json, per_class.csv and report.html (per model under models/ when comparing). Rerun
    with the same --output-dir to resume."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = _resources(*(settings.pop(name) for name in RESOURCE_NAMES))
    config, runs = _audit_request(model_name, settings, res, prune_runs)
    model_name = model_name or runs[0][1]["model"]
    if config.use_triggers and not train_dataset and not triggers_path and not (
            output_dir and os.path.exists(os.path.join(output_dir, "triggers.json"))):
        raise UserError("the trigger attack needs --train-dataset or --triggers (or pass --no-triggers)")
    from ..data import ExampleList

    rows = _examples(dataset, text_column, pair_column, label_column, limit, "--dataset", label_names, model_name)
    columns = train_columns((train_text_column, train_pair_column, train_label_column),
                            (text_column, pair_column, label_column))
    train = _examples(train_dataset, *columns, None, "--train-dataset", label_names,
                      model_name) if train_dataset and config.use_triggers else None
    from ..config import config_dict

    out = make_run_dir(output_dir, "audit", {"model": model_name, "dataset": dataset, "train_dataset": train_dataset,
                                             "num_examples": num_examples, **config_dict(config),
                                             "recipes": (["triggers"] if config.use_triggers else [])
                                             + list(config.recipes),
                                             "compare_models": list(compare_models), "prune_runs": list(prune_runs),
                                             "resources": res.to_config()})
    model, tok = load_model_or_fail(model_name, device)
    rows = keep_content_or_fail(rows, tok)  # every row checked, so the counts below are exact
    dev = ExampleList(rows[:num_examples], rows.skipped)
    if num_examples > len(rows):
        click.echo(f"--num-examples {num_examples}: the dataset has only {len(rows)} usable example(s) "
                   f"({rows.total} rows read); attacking {len(dev)}", err=True)
    from ..engine import Engine
    from .resources import RecipeError

    engine = Engine(model, tok, cache=open_cache_or_fail(cache_dir, not no_cache))
    audited = dict(train=train, triggers_path=triggers_path, resources=res, num_requested=num_examples)
    try:
        if compare_models or runs:
            lines = _compare(engine, model_name, dev, out, config, compare_models, runs, device, dataset, audited)
        else:
            lines = _audit_one(engine, model_name, dev, out, config, dataset, audited)
    except RecipeError as err:
        raise UserError(str(err)) from None
    echo_summary({"output": out, **rows_lines(rows, lines.pop("attacked"), num_examples), **lines})


def _audit_request(model_name, settings: dict, res, prune_runs):
    """The audit's config and the prune runs it compares, checked before anything loads (recipes by
    name, their resources, a model to attack)."""
    from .recipes import parse_recipes
    from .resources import RecipeError

    try:
        names = [n for n in parse_recipes(settings.pop("recipes")) if n != "triggers"]
    except RecipeError as err:
        raise UserError(str(err)) from None
    if not model_name and not prune_runs:
        raise UserError("give --model (or --prune-run, whose unpruned model is then used)")
    config = _config(settings, recipes=tuple(names))
    from .textattack_compat import load_textattack

    load_textattack()  # TextAttackUnavailable (a MissingDependencyError): one line
    from .audit import check_audit
    from .compare import read_prune_run

    runs = []
    for run_dir in prune_runs:
        try:
            runs.append((run_dir, read_prune_run(run_dir)))
        except ValueError as err:
            raise UserError(str(err)) from None
    try:
        check_audit(names, res, masked=bool(runs), query_budget=config.query_budget)
    except RecipeError as err:
        raise UserError(str(err)) from None
    return config, runs


def _compare(engine, model_name, dev, out, config, compare_models, runs, device, dataset, audited) -> dict:
    """Every model (``--model``, each ``--compare-model``, each ``--prune-run``'s variants) attacked on
    ``dev``; the summary lines of the comparison table."""
    from .compare import AuditedModel, prune_run_variants, run_comparison

    model, tok = engine.model, engine.tokenizer
    models = [AuditedModel(os.path.basename(os.path.normpath(model_name)) or model_name, model, tok,
                           source={"source": model_name})]
    for spec in compare_models:
        other, other_tok = load_model_or_fail(spec, device)
        check_labels(dev, other, "--dataset")
        models.append(AuditedModel(os.path.basename(os.path.normpath(spec)) or spec, other, other_tok,
                                   source={"source": spec}))
    for run_dir, _ in runs:
        variants = prune_run_variants(model, tok, run_dir)
        if len(runs) > 1:
            for v in variants:
                v.label = f"{os.path.basename(os.path.normpath(run_dir))}-{v.label}"
        models += variants
    result = run_comparison(models, dev, out, config=config, cache=engine.cache, report={"dataset": dataset},
                            **audited)
    lines = {"attacked": len(dev), "table": os.path.join(out, "comparison.csv")}
    for row in result["table"]:
        lines[f"{row['model']} / {row['recipe']}"] = (
            f"clean {row['clean_accuracy']}%, under attack {row['accuracy_under_attack']}%, "
            f"success {row['attack_success_rate']}%, avg queries {row['avg_queries']}, "
            f"{row['queries_per_second']} queries/s")
    return lines


def _audit_one(engine, model_name, dev, out, config, dataset, audited) -> dict:
    """The audit of one model; the summary lines of each recipe."""
    from .pipeline import run

    summary = run(engine, dev, config, out, report={"model": model_name, "dataset": dataset, "examples": len(dev)},
                  **audited)
    lines = {"attacked": summary["num_examples"],
             "gold classes": ", ".join(f"{k}: {v}" for k, v in (summary.get("class_mix") or {}).items())}
    for i, note in enumerate(summary.get("notes") or []):
        lines[f"note {i + 1}"] = note
    for name, s in summary["recipes"].items():
        if s.get("kind") == "input-reduction":
            lines[name] = (f"reduced {s['reduced']} of {s['total']} inputs with the prediction kept "
                           f"({s['reached_target']} down to one word), avg {s['avg_words_kept_perc']}% of words kept, "
                           f"avg queries {s['avg_num_queries']}")
            continue
        qps = s.get("this_session", {}).get("queries_per_second")
        lines[name] = (f"success {s['attack_success_rate']}%, acc. under attack {s['attack_accuracy_perc']}% "
                       f"(clean {s['original_accuracy']}%), avg queries {s['avg_num_queries']}"
                       + (f", {qps} queries/s" if qps is not None else "")
                       + (f" (without: {', '.join(s['dropped_constraints'])})" if s.get("dropped_constraints") else ""))
    return lines
