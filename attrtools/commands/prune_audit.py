"""``attrtools prune`` with ``--audit RECIPES``: the planner, then a robustness comparison of the
unpruned model against each strategy's plan at the planner's chosen fraction.

It sits in ``commands/`` because it joins two tools (the pruning planner and the audit); neither
tool imports the other. Without ``--audit`` the command is exactly ``attrtools.pruning.cli.prune``.
"""
from __future__ import annotations

import os

import click

from ..adversarial.cli import RESOURCE_NAMES, _resources, resource_options
from ..pruning.cli import prune as _prune
from ..pruning.cli import prune_command, summary_lines
from ..cli_kit import AtLeast, Command, UserError, echo_summary

AUDIT_OPTIONS = [
    click.Option(["--audit"], default=None,
                 help="After pruning, attack the unpruned model and every strategy's plan (heads masked) at the "
                      "chosen fraction with these recipes (comma list, TextAttack CLI names; see `attrtools audit`). "
                      "Writes audit/comparison.csv/.png/.html in the run directory."),
    click.Option(["--audit-examples"], type=AtLeast(1), default=100, show_default=True,
                 help="Evaluation examples (the first N of --eval-dataset, else --dataset) attacked per model."),
    click.Option(["--audit-query-budget"], type=AtLeast(1), default=None, help="TextAttack query budget per example."),
    click.Option(["--audit-seed"], type=int, default=765, show_default=True, help="TextAttack random seed."),
]


def _resource_params() -> list[click.Parameter]:
    def collect(**kwargs):
        return kwargs

    return list(reversed(resource_options(collect).__click_params__))


def _callback(**kwargs):
    recipes = kwargs.pop("audit")
    audit_examples = kwargs.pop("audit_examples")
    query_budget = kwargs.pop("audit_query_budget")
    seed = kwargs.pop("audit_seed")
    resources = _resources(*(kwargs.pop(name) for name in RESOURCE_NAMES))
    names = None
    if recipes:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from ..adversarial.audit import check_audit
        from ..adversarial.recipes import parse_recipes
        from ..adversarial.resources import RecipeError

        try:
            names = [n for n in parse_recipes(recipes) if n != "triggers"]
            check_audit(names, resources, masked=True, query_budget=query_budget)
        except RecipeError as err:   # checked before the planner runs: nothing is computed in vain
            raise UserError(str(err)) from None
    summary = prune_command(**kwargs)
    echo_summary(summary_lines(summary), report=not names)  # with --audit, the audit's summary reports
    if not names:
        return
    run_dir = summary["run_dir"]
    from ..adversarial.compare import AuditedModel, prune_run_variants, run_comparison
    from ..adversarial.pipeline import AuditError
    from ..adversarial.resources import RecipeError
    from ..cli_kit import load_examples_or_fail, load_model_or_fail

    spec = kwargs["eval_dataset"] or kwargs["dataset"]
    dev = load_examples_or_fail(spec, kwargs["text_column"], kwargs["pair_column"], kwargs["label_column"],
                                audit_examples, what="--eval-dataset" if kwargs["eval_dataset"] else "--dataset",
                                need_labels=True, label_names=kwargs.get("label_names"), model=kwargs["model_name"])
    model, tok = load_model_or_fail(kwargs["model_name"], kwargs["device"])
    models = [AuditedModel("unpruned", model, tok, source={"source": kwargs["model_name"]})]
    models += prune_run_variants(model, tok, run_dir)
    click.echo(f"robustness audit of {len(models)} models on {len(dev)} examples: {', '.join(names)}", err=True)
    try:
        result = run_comparison(models, dev, os.path.join(run_dir, "audit"), recipes=tuple(names), use_triggers=False,
                                resources=resources, query_budget=query_budget, seed=seed,
                                report={"prune_run": run_dir, "dataset": spec})
    except (AuditError, RecipeError) as err:
        raise UserError(str(err)) from None
    lines = {"audit": os.path.join(run_dir, "audit", "comparison.csv")}
    for row in result["table"]:
        lines[f"{row['model']} / {row['recipe']}"] = (
            f"clean {row['clean_accuracy']}%, under attack {row['accuracy_under_attack']}%, "
            f"success {row['attack_success_rate']}%, avg queries {row['avg_queries']}")
    echo_summary(lines)


prune = Command(
    name="prune", callback=_callback,
    params=list(_prune.params) + AUDIT_OPTIONS + _resource_params(),
    help=(_prune.help or "") + "\n\nWith --audit RECIPES, the unpruned model and each strategy's plan are then attacked "
                               "on the same examples (audit/comparison.csv, .png, .html).",
    short_help=_prune.short_help)
