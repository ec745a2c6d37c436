"""``attrtools triggers`` and ``attrtools audit`` (no torch or TextAttack import until they run)."""
from __future__ import annotations

import os

import click

from ..cli_kit import (AtLeast, UserError, check_labels, command, common_run_options, dataset_options, echo_summary, finite,
                       keep_content_or_fail, load_examples_or_fail, load_model_or_fail, make_run_dir, model_config_for_labels, model_option, open_cache_or_fail,
                       options, resolve_progress, seed_option, steps_option, train_columns, train_dataset_options)
from .config import AuditConfig

D = AuditConfig()  # the defaults shown by --help are the config's


def _examples(spec, text_column, pair_column, label_column, limit, what, label_names=None, model=None):
    """Labelled examples, each label a class of ``model`` (checked on its config, before it loads)."""
    examples = load_examples_or_fail(spec, text_column, pair_column, label_column, limit, what=what, need_labels=True,
                                     label_names=label_names, model=model)
    check_labels(examples, model_config_for_labels(model), what)
    return examples


extraction_options = options(
    click.option("--num-train-examples", type=AtLeast(1), default=D.num_train_examples,
                 help="Correctly classified training examples to extract patterns from (official: 500)."),
    steps_option(64, "the official trigger code"),
    click.option("--pattern-threshold", type=float, default=D.pattern_threshold,
                 help="Drop patterns with v1+v2 below this."),
    click.option("--top2-ratio", type=float, default=D.top2_ratio, help="Keep the top-2 pair when v2/v1 >= this."),
    click.option("--use-all", is_flag=True, help="Always keep the top-2 pair (official --if_all)."),
    click.option("--cache", "old_cache_flag", is_flag=True, hidden=True,
                 help="Old spelling: the cache is on unless --no-cache."),
)


def _config(**fields) -> AuditConfig:
    fields["progress"] = resolve_progress(fields.get("progress"))
    finite("--pattern-threshold", fields.get("pattern_threshold"), 0.0)
    finite("--top2-ratio", fields.get("top2_ratio"), 0.0, 1.0)
    return AuditConfig(**fields)


@command()
@model_option()
@dataset_options(limit_help="Read only the first N training examples of --dataset.")
@extraction_options
@click.option("--eval-dataset", default=None, help="Labelled dataset for the per-class accuracy table (e.g. dev).")
@click.option("--top-k", type=AtLeast(1), default=D.top_k, help="Triggers evaluated in the per-class table.")
@common_run_options(batch_size=D.batch_size, max_length=D.max_length)
def triggers(model_name, dataset, text_column, pair_column, label_column, label_names, limit, num_train_examples,
             steps, pattern_threshold, top2_ratio, use_all, old_cache_flag, eval_dataset, top_k, cache_dir, no_cache,
             batch_size, max_length, progress, output_dir, device):
    """Extract adversarial trigger patterns from AttAttr on correctly classified training examples
    (Hao et al. 2021, §6); with --eval-dataset, also the per-class accuracy after inserting the
    top-k triggers. Writes triggers.json (and per_class.csv)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = _config(num_train_examples=num_train_examples, steps=steps, pattern_threshold=pattern_threshold,
                     top2_ratio=top2_ratio, use_all=use_all, top_k=top_k, batch_size=batch_size, max_length=max_length,
                     progress=progress)
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

        rows = per_class_accuracy(model, tok, dev, patterns, top_k=top_k, max_length=max_length)
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


@command()
@model_option(required=False, help="Hub id or local folder of a sequence classifier "
                                   "(default with --prune-run: its unpruned model).")
@dataset_options(limit_help="Read only the first N examples of --dataset (then --num-examples of those are attacked).")
@train_dataset_options
@click.option("--triggers", "triggers_path", default=None, type=click.Path(dir_okay=False),
              help="A triggers.json from `attrtools triggers` (instead of --train-dataset).")
@click.option("--recipes", "--recipe", default=",".join(D.recipes), show_default=True,
              help="Comma list of TextAttack recipes by their CLI names (textfooler, pwws, bae, bert-attack, a2t, "
                   "textbugger, deepwordbug, pruthi, checklist, kuleshov, alzantot, faster-alzantot, iga, pso, clare, "
                   "input-reduction, hotflip, leap, bad-characters) and attrtools' wir-delete, wir-attribution; "
                   "'all' for every one. Missing resources are reported before anything runs.")
@resource_options
@click.option("--compare-model", "compare_models", multiple=True,
              help="Another model (folder, hub id or saved pruned model) attacked on the same examples; repeatable.")
@click.option("--prune-run", "prune_runs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A run directory of `attrtools prune`: its unpruned model and each strategy's chosen plan "
                   "(heads masked) are compared; repeatable.")
@click.option("--no-triggers", is_flag=True, help="Skip the trigger attack and the per-class table.")
@click.option("--num-examples", type=AtLeast(1), default=100,
              help="Examples of --dataset to attack (the first N, after --limit).")
@extraction_options
@click.option("--top-triggers", type=AtLeast(1), default=D.top_triggers,
              help="Trigger candidates the search chooses from.")
@click.option("--top-k", type=AtLeast(1), default=D.top_k, help="Triggers evaluated in the per-class table.")
@click.option("--max-inserted-words", type=AtLeast(1), default=D.max_inserted_words,
              help="Constraint of the trigger attack.")
@click.option("--rank-method", default=D.rank_method,
              help="Attribution ranking the words for wir-attribution (any attrtools method, e.g. grad_input).")
@steps_option(20, "of the ranking (attattr only)", name="--rank-steps", protocol=False)
@click.option("--query-budget", default=D.query_budget, type=AtLeast(1),
              help="TextAttack query budget per example (default: unlimited).")
@click.option("--chunk-size", type=AtLeast(1), default=D.chunk_size,
              help="Examples per Attacker run (resume granularity).")
@seed_option(D.seed, "TextAttack random seed.")
@click.option("--attribution-batch-size", type=AtLeast(1), default=D.batch_size,
              help="Examples per attribution batch (trigger extraction).")
@common_run_options(batch_size=D.query_batch_size, max_length=D.max_length,
                    batch_help="Candidate texts per forward pass of the attacked model (TextAttack's "
                               "model_batch_size; results do not depend on it, larger helps on a GPU).")
def audit(model_name, dataset, text_column, pair_column, label_column, label_names, limit, train_dataset,
          train_text_column, train_pair_column, train_label_column, triggers_path, recipes, word_embeddings,
          sentence_encoder, no_use_constraint, mlm, nltk_data, no_pos_constraint, lm, no_lm_constraint, homoglyphs,
          compare_models, prune_runs, no_triggers, num_examples, num_train_examples, steps, pattern_threshold,
          top2_ratio, use_all, old_cache_flag, top_triggers, top_k, max_inserted_words, rank_method, rank_steps,
          query_budget, chunk_size, seed, attribution_batch_size, cache_dir, no_cache, batch_size, max_length,
          progress, output_dir, device):
    """Robustness audit with TextAttack: every classification recipe by its TextAttack name, the
    attribution-trigger attack, and attribution-ranked vs leave-one-out word ranking, on the same
    examples. With --compare-model / --prune-run, every model is attacked on the same examples and
    comparison.csv/.png/.html hold one table. Writes results.csv (TextAttack's CSV columns),
    summary.json, per_class.csv and report.html (per model under models/ when comparing). Rerun
    with the same --output-dir to resume."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .recipes import parse_recipes
    from .resources import RecipeError

    try:
        names = [n for n in parse_recipes(recipes) if n != "triggers"]
    except RecipeError as err:
        raise UserError(str(err)) from None
    if not model_name and not prune_runs:
        raise UserError("give --model (or --prune-run, whose unpruned model is then used)")
    res = _resources(word_embeddings, sentence_encoder, no_use_constraint, mlm, nltk_data, no_pos_constraint, lm,
                     no_lm_constraint, homoglyphs)
    config = _config(recipes=tuple(names), use_triggers=not no_triggers, num_train_examples=num_train_examples,
                     steps=steps, pattern_threshold=pattern_threshold, top2_ratio=top2_ratio, use_all=use_all,
                     top_triggers=top_triggers, top_k=top_k, max_inserted_words=max_inserted_words,
                     rank_method=rank_method, rank_steps=rank_steps, query_budget=query_budget, chunk_size=chunk_size,
                     seed=seed, batch_size=attribution_batch_size, query_batch_size=batch_size, max_length=max_length,
                     progress=progress)
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
    model_name = model_name or runs[0][1]["model"]
    try:
        check_audit(names, res, masked=bool(runs), query_budget=query_budget)
    except RecipeError as err:
        raise UserError(str(err)) from None
    if not no_triggers and not train_dataset and not triggers_path and not (
            output_dir and os.path.exists(os.path.join(output_dir, "triggers.json"))):
        raise UserError("the trigger attack needs --train-dataset or --triggers (or pass --no-triggers)")
    from ..data import ExampleList

    rows = _examples(dataset, text_column, pair_column, label_column, limit, "--dataset", label_names, model_name)
    columns = train_columns((train_text_column, train_pair_column, train_label_column),
                            (text_column, pair_column, label_column))
    train = _examples(train_dataset, *columns, None, "--train-dataset", label_names,
                      model_name) if train_dataset and not no_triggers else None
    comparing = bool(compare_models or runs)
    from ..config import config_dict

    out = make_run_dir(output_dir, "audit", {"model": model_name, "dataset": dataset, "train_dataset": train_dataset,
                                             "num_examples": num_examples, **config_dict(config),
                                             "recipes": (["triggers"] if not no_triggers else []) + names,
                                             "compare_models": list(compare_models), "prune_runs": list(prune_runs),
                                             "resources": res.to_config()})
    model, tok = load_model_or_fail(model_name, device)
    rows = keep_content_or_fail(rows, tok)  # every row checked, so the counts below are exact
    dev = ExampleList(rows[:num_examples], rows.skipped)
    if num_examples > len(rows):
        click.echo(f"--num-examples {num_examples}: the dataset has only {len(rows)} usable example(s) "
                   f"({rows.total} rows read); attacking {len(dev)}", err=True)
    from .pipeline import run_full_audit

    cache = open_cache_or_fail(cache_dir, not no_cache)
    try:
        if comparing:
            from .compare import AuditedModel, prune_run_variants, run_comparison

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
            result = run_comparison(models, dev, out, train=train, triggers_path=triggers_path, config=config,
                                    cache=cache, resources=res, report={"dataset": dataset},
                                    num_requested=num_examples)
            lines = {"output": out, **rows_lines(rows, len(dev), num_examples),
                     "table": os.path.join(out, "comparison.csv")}
            for row in result["table"]:
                lines[f"{row['model']} / {row['recipe']}"] = (
                    f"clean {row['clean_accuracy']}%, under attack {row['accuracy_under_attack']}%, "
                    f"success {row['attack_success_rate']}%, avg queries {row['avg_queries']}, "
                    f"{row['queries_per_second']} queries/s")
            echo_summary(lines)
            return
        summary = run_full_audit(model, tok, dev, out, train=train, triggers_path=triggers_path, config=config,
                                 cache=cache, resources=res,
                                 report={"model": model_name, "dataset": dataset, "examples": len(dev)},
                                 num_requested=num_examples)
    except RecipeError as err:
        raise UserError(str(err)) from None
    lines = {"output": out, **rows_lines(rows, summary["num_examples"], num_examples),
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
    echo_summary(lines)
