"""The whole robustness audit as one function: triggers (extract or reuse), the paper's per-class
table, the TextAttack attacks, and the HTML report. Used by ``attrtools audit`` and the demo."""
from __future__ import annotations

import os


class AuditError(ValueError):
    """An audit that cannot run as asked (no trigger source, no pattern above the threshold, ...)."""


def extract_and_save(model, tokenizer, train, out_dir, num_train_examples=500, steps=20, pattern_threshold=0.02,
                     top2_ratio=0.2, use_all=False, cache=None):
    """``extract_triggers`` and write ``triggers.json`` (with its settings) into ``out_dir``."""
    from .triggers import extract_triggers, save_triggers

    patterns, stats = extract_triggers(model, tokenizer, train, num_examples=num_train_examples, steps=steps,
                                       cache=cache, pattern_threshold=pattern_threshold, top2_ratio=top2_ratio,
                                       use_all=use_all)
    save_triggers(os.path.join(out_dir, "triggers.json"), patterns,
                  {"num_examples": num_train_examples, "steps": steps, "pattern_threshold": pattern_threshold,
                   "top2_ratio": top2_ratio, "use_all": use_all, **stats})
    return patterns, stats


def run_full_audit(model, tokenizer, dev, out_dir, train=None, triggers_path=None, recipes=("deepwordbug",),
                   use_triggers=True, num_train_examples=500, steps=20, pattern_threshold=0.02, top2_ratio=0.2,
                   use_all=False, top_triggers=10, top_k=3, max_inserted_words=4, rank_method="attattr",
                   rank_steps=20, query_budget=None, chunk_size=10, seed=765, cache=None, progress=None,
                   config=None, num_requested=None, max_length=None, resources=None, attacks=None, head_mask=None,
                   parts=None, batch_size=32) -> dict:
    """Run the audit into ``out_dir`` (resumable) and return TextAttack's summary.

    Triggers come from ``triggers_path``, else from ``out_dir/triggers.json`` when resuming, else
    are extracted from ``train``. Writes triggers.json, per_class.csv, results.csv, summary.json,
    report.html.

    ``resources`` / ``attacks`` / ``head_mask``: see :func:`attrtools.adversarial.audit.run_audit`;
    every recipe's resources are checked before triggers are extracted. With ``head_mask`` the
    per-class table (which predicts with the unmasked model) is not written."""
    from ..io import write_text
    from .audit import check_audit, read_rows, run_audit, write_per_class
    from .report import render_report
    from .triggers import load_triggers, per_class_accuracy, unique_triggers

    names = list(recipes)
    check_audit(names, resources, attacks, masked=head_mask is not None, query_budget=query_budget)
    patterns, per_class = None, None
    if use_triggers:
        existing = triggers_path or os.path.join(out_dir, "triggers.json")
        resuming = os.path.exists(existing) and (train is None or os.path.exists(os.path.join(out_dir, "results.csv")))
        if triggers_path or resuming:
            try:
                patterns, _ = load_triggers(existing)
            except (OSError, ValueError) as err:
                raise AuditError(f"cannot read triggers from {existing}: {err}") from None
        elif train is not None:
            patterns, _ = extract_and_save(model, tokenizer, train, out_dir, num_train_examples, steps,
                                           pattern_threshold, top2_ratio, use_all, cache)
        else:
            raise AuditError("the trigger attack needs training data or a triggers.json")
        if not patterns:
            raise AuditError("no trigger pattern passed the threshold; lower the pattern threshold or use more examples")
        if head_mask is None:
            per_class = per_class_accuracy(model, tokenizer, dev, patterns, top_k=top_k)
            write_per_class(os.path.join(out_dir, "per_class.csv"), per_class)
        patterns = unique_triggers(patterns)[:top_triggers]
        names = ["triggers"] + [n for n in names if n != "triggers"]
    rank_params = {"steps": rank_steps} if rank_method == "attattr" else {}
    summary = run_audit(model, tokenizer, dev, out_dir, recipes=names, patterns=patterns, chunk_size=chunk_size,
                        max_inserted_words=max_inserted_words, rank_method=rank_method, rank_params=rank_params,
                        cache=cache, query_budget=query_budget, seed=seed, progress=progress,
                        num_requested=num_requested, max_length=max_length, resources=resources,
                        attacks=attacks, head_mask=head_mask, parts=parts, batch_size=batch_size)
    config = dict(config or {"examples": len(dev)})
    dropped = {n: s["dropped_constraints"] for n, s in summary["recipes"].items() if s.get("dropped_constraints")}
    if dropped:
        config["constraints dropped by request"] = "; ".join(f"{n}: {', '.join(d)}" for n, d in dropped.items())
    from ..models import fingerprint
    from ..report import label_names_from_config, model_label

    write_text(os.path.join(out_dir, "report.html"),
               render_report(summary, read_rows(os.path.join(out_dir, "results.csv")), per_class, patterns,
                             config=config, label_names=label_names_from_config(model.config),
                             model=model_label(getattr(model.config, "_name_or_path", None), fingerprint(model))))
    return summary
