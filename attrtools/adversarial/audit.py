"""Robustness audit: the trigger attack and offline TextAttack recipes on the same examples.

Every attack is a TextAttack ``Attack`` run by ``textattack.Attacker`` with ``AttackArgs`` (its
own parallelism off), one example per run from the same seeded state (``attack_each``), so a
result depends on the example and the seed only; after each chunk of ``chunk_size`` examples the
rows (TextAttack's ``CSVLogger`` columns, plus ``recipe``, ``example_index``, ``num_words``,
``num_words_perturbed``) are appended to ``results.csv`` atomically, so a rerun with the same
output directory skips what is done.

Under a launcher (torchrun, ``attrtools.distributed``) each rank attacks its share of a recipe's
examples (``audit_shares``: longest first by estimated cost), chunk by chunk; after each round
the rows of every rank are gathered, and rank 0 writes ``results.csv``, each recipe's rows in
input order, so the outputs equal one process's.

Recipes (all run offline):

- ``triggers``: attribution triggers (``TriggerInsertion``), greedy search over the top patterns;
- ``deepwordbug`` / ``pruthi`` / ``input-reduction``: ``DeepWordBugGao2018``, ``Pruthi2019``,
  ``InputReductionFeng2018`` as TextAttack builds them;
- ``wir-delete`` / ``wir-attribution``: DeepWordBug's transformation and constraints with the
  search ``GreedyWordSwapWIR("delete")`` vs ``AttributionWIR`` (words ranked by a cached
  attribution, no ranking queries).

``summary.json`` holds per recipe the numbers of TextAttack's ``AttackSuccessRate``,
``AttackQueries`` and ``WordsPerturbed``, recomputed from all rows of ``results.csv`` (so they
cover resumed runs; ``summarize_rows`` reproduces TextAttack's formulas, and the metrics
TextAttack computes on this session's result objects are stored next to them as a check). Words
perturbed are counted from an alignment of the original and perturbed words (``diffs.py``:
insertions, deletions and substitutions as such), TextAttack's positional count kept beside it
as ``*_positional``.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import os
import warnings

from ..errors import InputDataError, ParameterError, did_you_mean
from ..io import atomic_path, write_json, write_text
from ..progress import enabled_default
from ..types import Example
from .recipes import RECIPES, build_recipe, dropped_constraints, prepare_resources, resource_report
from .resources import AttackResources, LoadedResources, RecipeError
from .diffs import DIFF_COLUMNS, realign_row
from .textattack_compat import load_textattack

TEXTATTACK_COLUMNS = ["original_text", "perturbed_text", "original_score", "perturbed_score", "original_output",
                      "perturbed_output", "ground_truth_output", "num_queries", "result_type"]
EXTRA_COLUMNS = ["recipe", "example_index", "num_words", "num_words_perturbed"] + DIFF_COLUMNS  # diffs.py
OFFLINE_RECIPES = ("deepwordbug", "pruthi", "input-reduction")
SEARCH_COMPARISON = ("wir-delete", "wir-attribution")
ALL_RECIPES = tuple(RECIPES)   # attrtools' own three, then every TextAttack classification recipe


@contextlib.contextmanager
def quiet_textattack():
    """Silence TextAttack's INFO log lines, its own tqdm bar (printed even with ``silent=True``)
    and its metric warnings; our own progress bar reports instead."""
    ta = load_textattack()
    log = ta.shared.logger
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        log.setLevel(level)


def build_attack(name: str, wrapper, model=None, tokenizer=None, patterns=None, max_inserted_words: int = 4,
                 rank_method: str = "attattr", rank_params: dict | None = None, cache=None,
                 query_budget: int | None = None, resources: AttackResources | None = None, parts=None):
    """``(attack, search_or_None)`` for a recipe name (``RECIPES``): attrtools' own recipes here,
    TextAttack's through :func:`attrtools.adversarial.recipes.build_recipe` with ``resources``."""
    ta = load_textattack()
    if name == "triggers":
        from .transformation import build_trigger_attack

        if not patterns:
            raise ParameterError("the triggers recipe needs trigger patterns (extract them first)")
        return build_trigger_attack(wrapper, patterns, max_inserted_words=max_inserted_words,
                                    query_budget=query_budget), None
    if name in SEARCH_COMPARISON:
        base = ta.attack_recipes.DeepWordBugGao2018.build(wrapper)
        if name == "wir-delete":
            search = ta.search_methods.GreedyWordSwapWIR(wir_method="delete")
        else:
            from .search import AttributionWIR

            search = AttributionWIR(model, tokenizer, method=rank_method, cache=cache,
                                    max_length=getattr(getattr(wrapper, "engine", None), "max_length", None),
                                    **(rank_params or {}))
        attack = ta.Attack(base.goal_function, base.pre_transformation_constraints + base.constraints,
                           base.transformation, search)
        if query_budget:
            attack.goal_function.query_budget = query_budget
        return attack, search
    if name not in RECIPES:
        raise ParameterError(f"unknown recipe {name!r}; choose from {', '.join(ALL_RECIPES)}"
                             f"{did_you_mean(name, ALL_RECIPES)}")
    attack = build_recipe(name, wrapper, resources or AttackResources(), parts)
    if query_budget:
        attack.goal_function.query_budget = query_budget
    return attack, None


def _hook_attack(hook, wrapper):
    """A user's attack: a ``textattack.Attack`` (run as given, on the model it was built with) or a
    callable ``build(model_wrapper) -> Attack`` (built on this model's wrapper, like a recipe)."""
    ta = load_textattack()
    attack = hook if isinstance(hook, ta.Attack) else hook(wrapper)
    if not isinstance(attack, ta.Attack):
        raise TypeError(f"an attack hook must be a textattack.Attack or return one, got {type(attack).__name__}")
    return attack


def result_row(result, recipe: str, index: int) -> dict:
    """TextAttack's CSVLogger row for one ``AttackResult`` plus our bookkeeping columns."""
    ta = load_textattack()
    with quiet_textattack():
        logger = ta.loggers.CSVLogger(filename=os.devnull, color_method="file")
        logger.log_attack_result(result)
    logger._flushed = True
    row = dict(logger.row_list[0])
    original = result.original_result.attacked_text
    perturbed = result.perturbed_result.attacked_text
    skipped_or_failed = result.__class__.__name__ in ("SkippedAttackResult", "FailedAttackResult")
    row.update(recipe=recipe, example_index=index, num_words=len(original.words))
    # words perturbed from an alignment of the two word sequences; TextAttack's positional count beside it
    return realign_row(row, original.words, perturbed.words,
                       positional=0 if skipped_or_failed else len(original.all_words_diff(perturbed)))


def summarize_rows(rows: list[dict]) -> dict:
    """TextAttack's AttackSuccessRate / AttackQueries / WordsPerturbed formulas over CSV rows."""
    import numpy as np

    total = len(rows)
    failed = sum(r["result_type"] == "Failed" for r in rows)
    skipped = sum(r["result_type"] == "Skipped" for r in rows)
    successful = total - failed - skipped
    attacked = [r for r in rows if r["result_type"] not in ("Failed", "Skipped")]
    percs = [100.0 * r["num_words_perturbed"] / r["num_words"] for r in attacked
             if r["num_words"] > 0 and r["num_words_perturbed"] > 0]
    queries = [float(r["num_queries"]) for r in rows if r["result_type"] != "Skipped"]
    types: dict[str, int] = {}
    for r in rows:
        types[r["result_type"]] = types.get(r["result_type"], 0) + 1
    return {
        "total": total, "successful_attacks": successful, "failed_attacks": failed, "skipped_attacks": skipped,
        "result_types": types,
        "original_accuracy": round(100.0 * (total - skipped) / total, 2) if total else None,
        "attack_accuracy_perc": round(100.0 * failed / total, 2) if total else None,
        "attack_success_rate": round(100.0 * successful / (successful + failed), 2) if successful + failed else 0,
        "avg_word_perturbed_perc": round(float(np.mean(percs)), 2) if percs else None,
        "avg_words_perturbed": round(float(np.mean([r["num_words_perturbed"] for r in attacked])), 2)
        if attacked else None,
        # TextAttack's count, word i against word i (an insertion shifts every later word): diffs.py
        "avg_words_perturbed_positional": round(float(np.mean([r.get("num_words_perturbed_positional", 0)
                                                                for r in attacked])), 2) if attacked else None,
        "avg_num_words": round(float(np.mean([r["num_words"] for r in rows])), 2) if rows else None,
        "avg_num_queries": round(float(np.mean(queries)), 2) if queries else None,
    }


def summarize_reduction(rows: list[dict]) -> dict:
    """InputReduction (Feng et al. 2018) in its own terms: it never changes a prediction, it removes
    words while the prediction stays, so "success"/"accuracy under attack" would mislabel it.
    ``reduced``: inputs TextAttack reduced with the prediction kept (its "Maximized" or
    "Successful" results); ``reached_target``: those left with at most one word (TextAttack's
    target size); ``not_reduced``: inputs it could not shorten ("Failed"); ``skipped``: inputs
    the model already misclassified; ``avg_words_kept_perc``: words left, in % of the original,
    over the reduced inputs. Words are counted by TextAttack's own splitter, the one ``num_words``
    comes from, so punctuation left behind (the ``'`` of a removed ``'s``) is not a word."""
    import numpy as np

    words_from_text = load_textattack().shared.utils.words_from_text

    def words(text):
        return len(words_from_text(str(text).replace("[[", "").replace("]]", "")))

    reduced = [r for r in rows if r["result_type"] in ("Maximized", "Successful")]
    kept = [100.0 * words(r["perturbed_text"]) / r["num_words"] for r in reduced if r["num_words"]]
    queries = [float(r["num_queries"]) for r in rows if r["result_type"] != "Skipped"]
    total = len(rows)
    skipped = sum(r["result_type"] == "Skipped" for r in rows)
    return {
        "kind": "input-reduction", "total": total, "reduced": len(reduced),
        "reached_target": sum(words(r["perturbed_text"]) <= 1 for r in reduced),
        "not_reduced": sum(r["result_type"] == "Failed" for r in rows), "skipped_attacks": skipped,
        "original_accuracy": round(100.0 * (total - skipped) / total, 2) if total else None,
        "prediction_kept_perc": 100.0 if reduced else None,
        "avg_words_kept_perc": round(float(np.mean(kept)), 2) if kept else None,
        "avg_num_words": round(float(np.mean([r["num_words"] for r in rows])), 2) if rows else None,
        "avg_num_queries": round(float(np.mean(queries)), 2) if queries else None,
        "attack_success_rate": None, "attack_accuracy_perc": None,
        "note": "InputReduction removes words while keeping the prediction; it is not an attack, so it has "
                "no success rate or accuracy under attack",
    }


def class_mix(examples, names=None, num_classes: int | None = None) -> dict:
    """``{class name: count}`` of the gold labels of ``examples``, every class of the model listed
    (0 for a class without examples)."""
    counts: dict[int, int] = {c: 0 for c in range(num_classes or 0)}
    for e in examples:
        if e.label is not None:
            counts[int(e.label)] = counts.get(int(e.label), 0) + 1
    return {(names[c] if names and c < len(names) else str(c)): n for c, n in sorted(counts.items())}


def textattack_metrics(results) -> dict:
    """The metrics TextAttack itself computes on result objects."""
    ta = load_textattack()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # WordsPerturbed on all-failed results -> nan
        out = dict(ta.metrics.AttackSuccessRate().calculate(results))
        out.update(ta.metrics.AttackQueries().calculate(results))
        words = ta.metrics.WordsPerturbed().calculate(results)
    out["avg_word_perturbed_perc_positional"] = words["avg_word_perturbed_perc"]  # word i vs word i: diffs.py
    out["avg_num_words"] = words["avg_word_perturbed"]  # TextAttack's key holds the mean input length
    return {k: (None if isinstance(v, float) and v != v else (float(v) if hasattr(v, "item") else v))
            for k, v in out.items()}


def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in TEXTATTACK_COLUMNS + EXTRA_COLUMNS if c not in df.columns and c not in DIFF_COLUMNS]
    if missing:
        raise InputDataError(f"{path} is not an attrtools audit results.csv (missing {missing})")
    rows = df.to_dict("records")
    if any(c not in df.columns for c in DIFF_COLUMNS):  # written before word diffs: its counts were positional
        rows = [realign_row(r) for r in rows]
    return rows


def write_rows(path: str, rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=TEXTATTACK_COLUMNS + EXTRA_COLUMNS)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, quoting=csv.QUOTE_NONNUMERIC, index=False)


def textattack_dataset(examples: list[Example], pairs: bool | None = None):
    """A TextAttack dataset of labelled examples; ``pairs`` (default: whether any example has a
    ``text_pair``) makes it a premise/hypothesis dataset."""
    ta = load_textattack()
    pairs = any(e.text_pair is not None for e in examples) if pairs is None else pairs
    if pairs:
        data = [((e.text, e.text_pair or ""), int(e.label)) for e in examples]
        return ta.datasets.Dataset(data, input_columns=("premise", "hypothesis"))
    return ta.datasets.Dataset([(e.text, int(e.label)) for e in examples])


def check_audit(recipes, resources: AttackResources | None = None, attacks: dict | None = None,
                masked: bool = False, query_budget: int | None = None):
    """Raise ``RecipeError`` before any work when a recipe cannot run: unknown names, refused
    recipes, missing resources (one message per resource), hook names clashing with recipes."""
    resources = resources or AttackResources()
    if query_budget and "bad-characters" in recipes:
        raise RecipeError("bad-characters: TextAttack 0.3.11's differential evolution fails with an IndexError once "
                          "a query budget is spent; run it without --query-budget")
    unknown = [r for r in recipes if r not in RECIPES and r not in (attacks or {})]
    if unknown:
        raise RecipeError(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(ALL_RECIPES)}"
                          f"{did_you_mean(unknown, ALL_RECIPES)}")
    clash = [name for name in (attacks or {}) if name in RECIPES]
    if clash:
        raise RecipeError(f"attack hook name(s) {', '.join(clash)} clash with recipe names; rename them")
    if masked and "wir-attribution" in recipes:
        raise RecipeError("wir-attribution ranks words by the model's own attributions, which a head-masked "
                          "(pruned) variant cannot give yet; leave it out of --recipes for pruned models")
    report = resource_report([r for r in recipes if r in RECIPES], resources)
    if report:
        raise RecipeError(report)


def run_audit(model, tokenizer, examples, output_dir: str, recipes=("deepwordbug",), patterns=None,
              chunk_size: int = 10, max_inserted_words: int = 4, rank_method: str = "attattr",
              rank_params: dict | None = None, cache=None, query_budget: int | None = None, seed: int = 765,
              batch_size: int = 32, max_length: int | None = None, progress: bool | None = None,
              num_requested: int | None = None, resources: AttackResources | None = None,
              attacks: dict | None = None, head_mask=None, parts=None) -> dict:
    """Attack ``examples`` (labelled) with each recipe; write/extend ``results.csv``; return the summary.

    ``recipes``: names from ``RECIPES`` (TextAttack CLI spelling) and/or keys of ``attacks``, a
    dict ``name -> textattack.Attack`` or ``name -> build(model_wrapper) -> Attack`` (the Python
    hook). ``resources``: where TextAttack recipes get their resources; every recipe is checked
    before the first attack (``RecipeError`` lists what is missing). ``head_mask``: ``(L, H)``
    0/1 tensor; the model is queried with those heads masked (a pruned variant without copying it).
    The summary gives per recipe TextAttack's metrics, the constraints dropped by the user's
    choice, and model queries per second.

    Rows without content (``data.keep_content``) are not attacked: the summary lists them under
    ``skipped_rows`` with their reason (``num_rows`` = attacked + skipped). ``num_requested``: the
    number of examples the user asked for; when fewer are available the summary says so
    (``notes``). The summary also holds the gold-class mix of the attacked examples
    (``class_mix``, every class of the model, 0 included); InputReduction is summarised in its own
    terms (``summarize_reduction``)."""
    audit = _prepare_audit(model, tokenizer, examples, recipes, resources, attacks, parts, head_mask,
                           query_budget, batch_size, max_length)
    rows, session = _attack_recipes(audit, model, tokenizer, output_dir, patterns, chunk_size, max_inserted_words,
                                    rank_method, rank_params, cache, query_budget, seed, batch_size, progress)
    summary = _audit_summary(audit, model, rows, session, num_requested, head_mask)
    write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary


@dataclasses.dataclass
class _Audit:
    """One audit's checked inputs (``_prepare_audit``): the recipe names, their resources and
    loaded parts, the attack hooks, the model's number of classes, the examples kept
    (``data.keep_content``: a list with ``total`` and ``skipped``) and the TextAttack wrapper."""
    recipes: list
    resources: AttackResources
    attacks: dict
    parts: LoadedResources
    num_classes: int
    examples: list
    wrapper: object


def _prepare_audit(model, tokenizer, examples, recipes, resources, attacks, parts, head_mask, query_budget,
                   batch_size, max_length) -> _Audit:
    """Every check before the first attack (single-label model, TextAttack installed, recipes and
    their resources, gold labels), then the resources loaded and the model wrapped."""
    from ..heads import require_single_label

    # TextAttack's UntargetedClassification flips the argmax of one softmax distribution: a multi-label
    # head (a sigmoid per label) has no such single class to flip, so the audit refuses it first.
    require_single_label(model, "the robustness audit (TextAttack's untargeted classification goal)")
    load_textattack()  # MissingDependencyError before any work without the attack extra
    from .wrapper import AttrtoolsModelWrapper

    from ..architecture import require_classes

    from ..data import keep_content

    resources = resources or AttackResources()
    attacks = dict(attacks or {})
    recipes = list(recipes)
    check_audit(recipes, resources, attacks, masked=head_mask is not None, query_budget=query_budget)
    prepare_resources(recipes, resources)
    parts = parts or LoadedResources(resources)
    num_classes = require_classes(model, "the robustness audit (TextAttack's untargeted classification goal)")
    examples = keep_content(examples, tokenizer)
    if any(e.label is None for e in examples):
        raise InputDataError("the audit needs gold labels for every example")
    wrapper = AttrtoolsModelWrapper(model, tokenizer, batch_size=batch_size, max_length=max_length,
                                    head_mask=head_mask)
    return _Audit(recipes, resources, attacks, parts, num_classes, examples, wrapper)


def _attack_recipes(audit: _Audit, model, tokenizer, output_dir, patterns, chunk_size, max_inserted_words,
                    rank_method, rank_params, cache, query_budget, seed, batch_size, progress):
    """Attack every example not yet in ``results.csv`` with each recipe in turn (``_attack_recipe``);
    returns ``(rows, session)``: all rows of ``results.csv`` and per recipe attacked now its
    ``this_session`` numbers."""
    from .. import distributed

    # Under a launcher each rank attacks its share of every recipe's examples; all ranks take
    # rank 0's view of what is done (its run folder holds results.csv) and every rank holds the
    # merged rows (rank 0's copy is the one written to the real run folder).
    sharded = distributed.sharding()
    here = distributed.world()
    results_path = os.path.join(output_dir, "results.csv")
    rows = _read_rows_on_main(results_path) if sharded else read_rows(results_path)
    done = {(r["recipe"], int(r["example_index"])) for r in rows}
    examples, recipes, wrapper = audit.examples, audit.recipes, audit.wrapper
    progress = enabled_default(progress) and here.is_main
    total = len(recipes) * len(examples)
    from ..progress import tqdm_class

    tqdm = tqdm_class()

    pairs = any(e.text_pair is not None for e in examples)
    bar = tqdm(total=total, desc="audit", unit="attack", disable=not progress)
    bar.update(sum((r, i) in done for r in recipes for i in range(len(examples))))
    run = _AttackSettings(sharded, here, results_path, bar, progress, pairs, seed, query_budget, chunk_size,
                          rank_method)
    session: dict[str, dict] = {}
    for recipe in recipes:
        todo = [i for i in range(len(examples)) if (recipe, i) not in done]
        if not todo:
            continue
        search = None
        with quiet_textattack():
            if recipe in audit.attacks:
                attack = _hook_attack(audit.attacks[recipe], wrapper)
            else:
                attack, search = build_attack(recipe, wrapper, model, tokenizer, patterns, max_inserted_words,
                                              rank_method, rank_params, cache, query_budget, audit.resources,
                                              audit.parts)
                # candidates per model call (TextAttack's model_batch_size, 32 in its recipes): one padded
                # forward pass of the wrapper per call
                attack.goal_function.batch_size = batch_size
        if search is not None and hasattr(search, "prefetch"):
            search.prefetch([examples[i] for i in todo])  # every rank the same list: the engine shards it
        rows, session[recipe] = _attack_recipe(recipe, todo, attack, search, rows, audit, run)
    bar.close()
    return rows, session


@dataclasses.dataclass
class _AttackSettings:
    """How ``_attack_recipes`` runs every recipe's attacks: ``sharded`` / ``here`` (the launcher's
    split and this rank), where rows go (``results_path``), the progress ``bar`` (``progress``:
    whether it shows; without it rank 0 prints a line per chunk), whether the examples are
    ``pairs``, and the attack options."""
    sharded: bool
    here: object
    results_path: str
    bar: object
    progress: bool
    pairs: bool
    seed: int
    query_budget: int | None
    chunk_size: int
    rank_method: str


def _attack_recipe(recipe, todo, attack, search, rows, audit: _Audit, run: _AttackSettings):
    """Attack the examples ``todo`` (indices) with one recipe's ``attack``, chunk by chunk, each
    rank its share (``memo.split``), every rank's rows gathered after each round and
    ``results.csv`` rewritten; returns ``(rows, this_session)``: all rows so far and the recipe's
    numbers of this session (TextAttack's metrics, seconds, model inputs, rates, ranking)."""
    import sys
    import time

    from .. import distributed, memo

    examples, wrapper, sharded, here, bar = audit.examples, audit.wrapper, run.sharded, run.here, run.bar
    pairs, seed, query_budget, chunk_size = run.pairs, run.seed, run.query_budget, run.chunk_size
    results_path, progress = run.results_path, run.progress
    # attrtools.memo's split: each rank attacks its share, longest first by estimated cost
    share = memo.split(attack_costs([wrapper.engine.encode(examples[i]).length for i in todo]))
    mine = [todo[k] for k in share.mine]
    rounds = max(-(-share.ranks.count(r) // chunk_size) for r in range(share.world.size)) if todo else 0
    bar.set_postfix_str(recipe)
    results, start = [], time.time()
    forward_before = wrapper.num_forward_inputs
    has_stats = search is not None and hasattr(search, "stats")
    ranked_before = search.stats.get("ranked", 0) if has_stats else 0
    for round_ in range(rounds):
        chunk = mine[round_ * chunk_size:(round_ + 1) * chunk_size]
        with distributed.alone():  # a rank's own attacks: no collective may run inside
            chunk_results = attack_each(attack, [examples[i] for i in chunk], seed, query_budget, pairs)
        new = [(i, result_row(res, recipe, i), res) for i, res in zip(chunk, chunk_results)]
        if sharded:  # every rank's rows of this round, in input order
            new = sorted((item for part in share.gather([(i, row, _portable(res)) for i, row, res in new])
                          for item in part), key=lambda item: item[0])
        results += [res for _, _, res in new]
        rows += [row for _, row, _ in new]
        write_rows(results_path, rows)
        bar.update(len(new))
        if not progress and here.is_main:  # no bar (not a terminal): a line per chunk, a long audit is not silent
            print(f"audit: {recipe}: {len(results)} of {len(todo)} example(s) attacked "
                  f"({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    if sharded:  # the rows of this recipe in input order, as one process writes them
        rows = _recipe_in_input_order(rows, recipe)
        write_rows(results_path, rows)
    seconds = time.time() - start
    queries = sum(int(r.perturbed_result.num_queries) for r in results)
    local = {"model_inputs": wrapper.num_forward_inputs - forward_before,
             "ranked": search.stats.get("ranked", 0) - ranked_before if has_stats else 0}
    counts = {k: sum(c[k] for c in share.gather(local)) for k in local}
    this_session = {"textattack_metrics": textattack_metrics(results), "seconds": round(seconds, 2),
                    "examples": len(todo),
                    "model_inputs": counts["model_inputs"],
                    "model_inputs_per_second": round(counts["model_inputs"] / max(seconds, 1e-9), 1),
                    "queries_per_second": round(queries / max(seconds, 1e-9), 1)}
    if has_stats:
        this_session["ranking"] = dict(search.stats, ranked=ranked_before + counts["ranked"],
                                       method=run.rank_method)
    return rows, this_session


def _audit_summary(audit: _Audit, model, rows, session, num_requested, head_mask) -> dict:
    """``summary.json``'s content: per recipe the numbers over all its rows of ``results.csv``
    (``summarize_rows`` / ``summarize_reduction``), dropped constraints or ``hook``, this session's
    numbers (``session``), and the run's rows, notes, class mix, resources, device and masked heads."""
    from ..data import model_label_names, row_label

    examples, recipes, resources = audit.examples, audit.recipes, audit.resources
    notes = []
    if num_requested is not None and num_requested > examples.total:
        notes.append(f"{num_requested} examples were asked for but the dataset has {examples.total} row(s): "
                     f"attacking {len(examples)}")
    if examples.skipped:
        notes.append(f"{len(examples.skipped)} row(s) without content not attacked: " + "; ".join(
            f"{row_label(r)} ({r['reason']})" for r in examples.skipped[:10]) + (" ..." if len(examples.skipped) > 10
                                                                                 else ""))
    summary = {"recipes": {}, "num_examples": len(examples), "num_rows": examples.total,
               "num_requested": num_requested, "skipped_rows": list(examples.skipped),
               "class_mix": class_mix(examples, model_label_names(model.config), audit.num_classes),
               "notes": notes, "results_csv": "results.csv",
               "resources": resources.to_config(), "device": str(next(model.parameters()).device),
               "masked_heads": int((head_mask == 0).sum()) if head_mask is not None else 0}
    for recipe in recipes:
        mine = [r for r in rows if r["recipe"] == recipe]
        summary["recipes"][recipe] = summarize_reduction(mine) if recipe == "input-reduction" else summarize_rows(mine)
        if recipe in RECIPES:
            summary["recipes"][recipe]["dropped_constraints"] = dropped_constraints(recipe, resources)
        else:
            summary["recipes"][recipe]["hook"] = True
        if recipe in session:
            summary["recipes"][recipe]["this_session"] = session[recipe]
    return summary


def attack_each(attack, examples: list[Example], seed: int, query_budget: int | None = None,
                pairs: bool | None = None) -> list:
    """TextAttack's ``Attacker`` (its own parallelism off) over ``examples``, one example per run:
    each starts from the same seeded random state with the attack's caches empty, so an example's
    result depends on the example and ``seed`` alone, not on which examples were attacked before
    it (the chunk, the resume point, the rank)."""
    ta = load_textattack()
    results = []
    for example in examples:
        attack.clear_cache()
        args = ta.AttackArgs(num_examples=1, disable_stdout=True, silent=True, random_seed=seed,
                             query_budget=query_budget, parallel=False)
        with quiet_textattack():
            results += ta.Attacker(attack, textattack_dataset([example], pairs), args).attack_dataset()
    return results


def attack_costs(lengths: list[int]) -> list[float]:
    """The estimated cost of attacking each example: tokens² (an attack queries about once per
    word, each query a forward pass over the whole input)."""
    return [float(n) ** 2 for n in lengths]


def audit_shares(todo: list[int], lengths: list[int], world_size: int) -> list[list[int]]:
    """The examples (positions in ``todo``'s order) each of ``world_size`` ranks attacks: what
    ``memo.split`` gives each rank over ``attack_costs`` (longest processing time first),
    deterministic; each share in input order."""
    from .. import distributed

    ranks = distributed.assign(attack_costs(lengths), world_size)
    return [[i for i, r in zip(todo, ranks) if r == rank] for rank in range(world_size)]


def _read_rows_on_main(path: str) -> list[dict]:
    """Rank 0's ``read_rows(path)`` on every rank (a bad file fails every rank, not only rank 0)."""
    from .. import distributed

    payload = None
    if distributed.is_main():
        try:
            payload = ("rows", read_rows(path))
        except InputDataError as err:
            payload = ("error", str(err))
    kind, value = distributed.broadcast(payload)
    if kind == "error":
        raise InputDataError(value)
    return value


def _recipe_in_input_order(rows: list[dict], recipe: str) -> list[dict]:
    """``rows`` with ``recipe``'s rows (kept in place as a block) sorted by example index."""
    mine = sorted((r for r in rows if r["recipe"] == recipe), key=lambda r: int(r["example_index"]))
    first = next(k for k, r in enumerate(rows) if r["recipe"] == recipe)
    rest = [r for r in rows if r["recipe"] != recipe]
    return rest[:first] + mine + rest[first:]


def _portable(result):
    """A copy of a TextAttack result that travels between ranks small: its texts rebuilt without
    TextAttack's attack history (which references transformations and the model); what the
    metrics read (result types, words, queries, outputs) is unchanged."""
    import copy

    ta = load_textattack()
    out = copy.copy(result)
    for name in ("original_result", "perturbed_result"):
        part = copy.copy(getattr(result, name))
        part.attacked_text = ta.shared.AttackedText(part.attacked_text._text_input)
        setattr(out, name, part)
    return out


def write_per_class(path: str, rows: list[dict]) -> str:
    columns = ["trigger_rank", "trigger", "source_class", "score", "gold_class", "n", "accuracy", "accuracy_drop"]
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join(_csv_cell(r[c]) for c in columns))
    return write_text(path, "\n".join(lines) + "\n")


def _csv_cell(value) -> str:
    text = str(value)
    if any(ch in text for ch in ',"\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text
