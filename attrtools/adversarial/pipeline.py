"""The whole robustness audit as one function (:func:`run`): triggers (extract or reuse), the paper's
per-class table, the TextAttack attacks, and the HTML report. Used by ``attrtools audit``,
``attrtools triggers`` (``extract_and_save``), the comparison and the demo."""
from __future__ import annotations

import os

from ..config import resolve_config
from ..errors import AttrtoolsError
from .config import AuditConfig


class AuditError(AttrtoolsError, ValueError):
    """An audit that cannot run as asked (no trigger source, no pattern above the threshold, ...)."""


def extract_and_save(model, tokenizer, train, out_dir, config: AuditConfig | None = None, cache=None, **options):
    """``extract_triggers`` with the extraction settings of ``config`` (``options``: overrides),
    and write ``triggers.json`` (with its settings) into ``out_dir``. Returns ``(patterns, stats)``."""
    from .triggers import extract_triggers, save_triggers

    c = resolve_config(AuditConfig, config, options)
    patterns, stats = extract_triggers(model, tokenizer, train, num_examples=c.num_train_examples, steps=c.steps,
                                       tolerance=c.tolerance,
                                       cache=cache, pattern_threshold=c.pattern_threshold, top2_ratio=c.top2_ratio,
                                       use_all=c.use_all, batch_size=c.batch_size, progress=c.progress,
                                       max_length=c.max_length)
    save_triggers(os.path.join(out_dir, "triggers.json"), patterns,
                  {"num_examples": c.num_train_examples, "steps": c.steps, "tolerance": c.tolerance,
                   "pattern_threshold": c.pattern_threshold,
                   "top2_ratio": c.top2_ratio, "use_all": c.use_all, **stats})
    return patterns, stats


def _load_patterns(path: str) -> list:
    from .triggers import load_triggers

    try:
        patterns, _ = load_triggers(path)
    except (OSError, ValueError) as err:
        raise AuditError(f"cannot read triggers from {path}: {err}") from None
    return patterns


Config = AuditConfig  # every tool's pipeline exposes ``Config`` and ``run`` the same way


def run(engine, examples, config: AuditConfig | None = None, run_dir: str = ".", *, train=None,
        triggers_path=None, report: dict | None = None, num_requested=None, resources=None, attacks=None,
        head_mask=None, parts=None, **options) -> dict:
    """Run the audit of ``engine``'s model on ``examples`` into ``run_dir`` (resumable) and return
    TextAttack's summary.

    Args:
        engine: an ``attrtools.engine.Engine`` around a classifier from ``attrtools.load_model``
            (its cache serves the trigger extraction and the attribution-ranked search).
        examples: labelled ``Example`` items to attack.
        config: an :class:`AuditConfig`; ``options``: overrides of its fields.
        run_dir: output folder: triggers.json, per_class.csv, results.csv (TextAttack's CSV
            columns), summary.json, report.html. Rerunning into it resumes.
        train: labelled training examples to extract triggers from; triggers_path: a
            triggers.json to use instead (or ``run_dir/triggers.json`` when resuming).
        report: extra settings shown in report.html.
        resources, attacks, head_mask, parts: see :func:`attrtools.adversarial.audit.run_audit`;
            every recipe's resources are checked before triggers are extracted. With ``head_mask``
            the per-class table (which predicts with the unmasked model) is not written.

    Returns TextAttack's summary per recipe (success rate, accuracy under attack in %, queries).
    Raises ``AuditError`` when no trigger source is given or no pattern passes the threshold,
    ``MissingDependencyError`` (``TextAttackUnavailable``) without the ``attack`` extra.
    Source: Hao et al. 2021 (AAAI), §6; TextAttack (Morris et al. 2020) for the recipes.
    """
    c = resolve_config(AuditConfig, config, options)
    from .audit import check_audit, run_audit, write_per_class
    from .triggers import per_class_accuracy, unique_triggers

    model, tokenizer = engine.model, engine.tokenizer
    names = list(c.recipes)
    check_audit(names, resources, attacks, masked=head_mask is not None, query_budget=c.query_budget)
    patterns, per_class = None, None
    if c.use_triggers:
        patterns = _patterns(engine, run_dir, train, triggers_path, c)
        if head_mask is None:
            per_class = per_class_accuracy(model, tokenizer, examples, patterns, top_k=c.top_k,
                                           max_length=c.max_length)
            write_per_class(os.path.join(run_dir, "per_class.csv"), per_class)
        patterns = unique_triggers(patterns)[:c.top_triggers]
        names = ["triggers"] + [n for n in names if n != "triggers"]
    rank_params = {"steps": c.rank_steps, "tolerance": c.tolerance} if c.rank_method == "attattr" else {}
    summary = run_audit(model, tokenizer, examples, run_dir, recipes=names, patterns=patterns,
                        chunk_size=c.chunk_size, max_inserted_words=c.max_inserted_words, rank_method=c.rank_method,
                        rank_params=rank_params, cache=engine.cache, query_budget=c.query_budget, seed=c.seed,
                        progress=c.progress, num_requested=num_requested, max_length=c.max_length,
                        resources=resources, attacks=attacks, head_mask=head_mask, parts=parts,
                        batch_size=c.query_batch_size)
    _write_report(model, summary, per_class, patterns, run_dir, dict(report or {"examples": len(examples)}))
    return summary


def _patterns(engine, run_dir: str, train, triggers_path, c: AuditConfig) -> list:
    """The trigger patterns of the audit: from ``triggers_path``, from the run folder when resuming,
    else extracted from ``train`` (and saved). Raises ``AuditError`` without a source or a pattern."""
    from .. import distributed

    existing = triggers_path or os.path.join(run_dir, "triggers.json")
    resuming = os.path.exists(existing) and (train is None or os.path.exists(os.path.join(run_dir, "results.csv")))
    # Under a launcher only rank 0's run folder holds what a resumed run left: every rank
    # follows rank 0's choice (another choice would run the extraction's collectives on some
    # ranks only), and ranks other than 0 take rank 0's patterns.
    from_main = distributed.sharding() and not triggers_path
    if from_main:
        resuming = distributed.broadcast(resuming)
    if resuming and from_main:
        patterns = distributed.broadcast(_load_patterns(existing) if distributed.is_main() else None)
    elif triggers_path or resuming:
        patterns = _load_patterns(existing)
    elif train is not None:
        patterns, _ = extract_and_save(engine.model, engine.tokenizer, train, run_dir, c, engine.cache)
    else:
        raise AuditError("the trigger attack needs training data (--train-dataset) or a triggers.json; "
                         "or audit without it (--no-triggers)")
    if not patterns:
        raise AuditError(f"no trigger pattern passed the threshold (--pattern-threshold {c.pattern_threshold:g}); "
                         "lower it (0 keeps every pattern), use more training examples (--num-train-examples), "
                         "or audit without the trigger attack (--no-triggers)")
    return patterns


def _write_report(model, summary: dict, per_class, patterns, run_dir: str, report: dict) -> None:
    """``run_dir/report.html``: the summary, the rows of results.csv, the per-class table, the triggers."""
    from ..io import write_text
    from ..models import fingerprint
    from ..report import label_names_from_config, model_label
    from .audit import read_rows
    from .report import render_report

    dropped = {n: s["dropped_constraints"] for n, s in summary["recipes"].items() if s.get("dropped_constraints")}
    if dropped:
        report["constraints dropped by request"] = "; ".join(f"{n}: {', '.join(d)}" for n, d in dropped.items())
    write_text(os.path.join(run_dir, "report.html"),
               render_report(summary, read_rows(os.path.join(run_dir, "results.csv")), per_class, patterns,
                             config=report, label_names=label_names_from_config(model.config),
                             model=model_label(getattr(model.config, "_name_or_path", None), fingerprint(model))))
