"""``attrtools demo``: the whole product end to end, offline, in one report.

On the embedded default classifier (MiniLM fine-tuned on attrtools' own sentiment data, built on
first use) or any ``--model``: every attribution method on a few sentences, the head-pruning
curve with a physically pruned model, attribution trees with dataset statistics, and a
robustness audit (trigger attack + an offline TextAttack recipe, when TextAttack is installed).
Everything goes through one attribution cache, so a second run takes seconds.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import click

from ..cli_kit import (cache_options, command, device_option, echo_summary, label_names_option,
                       load_examples_or_fail, load_model_or_fail, make_run_dir, max_length_option, open_cache_or_fail,
                       output_dir_option, quiet_transformers, label_names_list)


@dataclass
class DemoConfig:
    """Sizes of the demo's sections (small, so the demo runs in minutes on a laptop CPU).

    ``attribution_examples``: dev sentences explained by every method; ``steps``: AttAttr
    integration steps m everywhere; ``prune_importance_examples`` / ``prune_eval_examples``: the
    pruning planner's importance and evaluation sets; ``prune_strategies``: its strategies;
    ``tree_examples``: trees drawn; ``tree_stats_examples``: trees in the statistics;
    ``trigger_train_examples``: training sentences for trigger extraction; ``audit_examples``:
    dev sentences attacked; ``audit_recipes``: TextAttack recipes besides the trigger attack;
    ``latency_repeats``: timed forwards of the pruned model; ``max_length``: truncation in tokens
    for every section (None: the engine's rule, ``models.max_input_length``).
    """

    attribution_examples: int = 3
    steps: int | str = "auto"
    prune_importance_examples: int = 64
    prune_eval_examples: int = 200
    prune_strategies: tuple = ("attattr", "attention", "taylor", "random")
    tree_examples: int = 3
    tree_stats_examples: int = 60
    trigger_train_examples: int = 150
    audit_examples: int = 24
    audit_recipes: tuple = ("deepwordbug",)
    latency_repeats: int = 10
    max_length: int | None = None


def run_demo(model_dir: str, train_path: str, dev_path: str, output_dir: str, config: DemoConfig | None = None,
             cache=True, device=None, log=print, label_names=None, loaded=None, data=None) -> dict:
    """Run every tool on ``model_dir`` and write ``output_dir/report.html``; returns the summary.

    ``train_path`` / ``dev_path``: datasets (local files or hub names) for trigger extraction and
    for everything else; ``config``: a :class:`DemoConfig`; ``cache``: an attribution cache, a
    folder, True (the default folder) or None; ``log``: called with progress lines. Each section
    calls its tool's entry point, ``run(engine, examples, config, run_dir)`` of
    ``attrtools.{pruning,tree,adversarial}.pipeline``, with the tool's ``Config``, so the demo, the
    commands and Python users cannot drift apart. ``label_names``: class names of
    string labels (``--label-names``; default: the model's own ``label2id``); ``loaded``: the
    ``(model, tokenizer)`` of ``model_dir`` when already loaded; ``data``: the ``(train, dev)``
    examples of ``train_path`` / ``dev_path`` when already read (the command reads them before it
    writes its run directory)."""
    from ..api import load_model
    from ..cache import open_cache
    from ..data import load_examples
    from ..engine import Engine
    from ..io import write_json
    from ..models import fingerprint
    from ..report import fmt_seconds, model_label

    config = config or DemoConfig()
    started = time.time()
    model, tokenizer = loaded or load_model(model_dir, device=device)
    cache = open_cache(cache)
    train, dev = data if data is not None else (load_examples(path, label_names=label_names, model_config=model.config)
                                                for path in (train_path, dev_path))
    engine = Engine(model, tokenizer, cache=cache, max_length=config.max_length)
    summary, timings = {"model": model_dir, "fingerprint": fingerprint(model)}, {}
    name = model_label(model_dir, summary["fingerprint"])
    parts = {}

    # A section whose outputs a finished earlier run left in ``output_dir`` for the same model
    # (fingerprint), data and settings is read back instead of recomputed (a rerun takes seconds).
    identity = section_identity(summary["fingerprint"], config, train, dev)

    reused = {}  # step -> seconds the earlier run spent computing it

    def timed(step, fn, restore=None):
        t0 = time.time()
        saved = read_section(os.path.join(output_dir, step), identity) if restore else None
        if saved is not None:
            result = restore(saved)
            reused[step] = saved.get("seconds")
            log(f"[demo] {step}: outputs of an earlier run with the same model, data and settings reused")
        else:
            log(f"[demo] {step} ...")
            result = fn()
            if restore:
                write_section(os.path.join(output_dir, step), identity, result, seconds=time.time() - t0)
        timings[step] = round(time.time() - t0, 1)
        log(f"[demo] {step} done in {fmt_seconds(timings[step])}")
        return result

    parts["attribution"] = timed("attribution", lambda: _attributions(
        engine, dev[: config.attribution_examples], config, os.path.join(output_dir, "attributions")))
    # each tool's section runs its entry point, run(engine, examples, config, run_dir); pruning and the
    # audit on an engine of their own (their counts stay apart from the attributions' and the trees')
    pruning = timed("pruning", lambda: _pruning(Engine(model, tokenizer, cache=cache, max_length=config.max_length),
                                                dev, config, os.path.join(output_dir, "pruning")),
                    restore=lambda saved: _pruning_restored(saved, os.path.join(output_dir, "pruning")))
    trees = timed("trees", lambda: _trees(engine, dev, config, os.path.join(output_dir, "trees")),
                  restore=lambda saved: _trees_restored(saved, os.path.join(output_dir, "trees")))
    audit = timed("audit", lambda: _audit(Engine(model, tokenizer, cache=cache, max_length=config.max_length),
                                          train, dev, config, os.path.join(output_dir, "audit"), log),
                  restore=lambda saved: _audit_restored(saved, model, os.path.join(output_dir, "audit")))
    summary.update(pruning=pruning["summary"], trees=trees["summary"], audit=audit["summary"], timings_s=timings,
                   reused_sections=dict(reused), seconds=round(time.time() - started, 1), engine=dict(engine.stats))
    write_json(os.path.join(output_dir, "summary.json"), summary)
    sections = {"attribution": parts["attribution"], "pruning": pruning, "trees": trees, "audit": audit}
    _demo_report(summary, sections, config, timings, reused, name, (train_path, train), (dev_path, dev),
                 model, engine).save(os.path.join(output_dir, "report.html"))
    return summary


def _demo_report(summary: dict, sections: dict, config: DemoConfig, timings: dict, reused: dict, name: str,
                 train, dev, model, engine):
    """The demo's report: facts, the steps with their times, then each section's own report.
    ``train`` / ``dev``: ``(path, examples)``."""
    from ..report import Report, fmt_seconds

    (train_path, train), (dev_path, dev) = train, dev
    report = Report("attrtools demo", "Every tool of attrtools on one classifier: attributions, head pruning, "
                                      "attribution trees and a robustness audit, all sharing one attribution cache.",
                    facts=[("model", name), ("training data", f"{os.path.basename(train_path)} ({len(train)} rows)"),
                           ("evaluation data", f"{os.path.basename(dev_path)} ({len(dev)} rows)"),
                           ("device", str(next(model.parameters()).device)),
                           ("total time", fmt_seconds(summary["seconds"])),
                           ("attributions", f"{engine.stats['computed']} computed, {engine.stats['hits']} from the "
                                            "cache")])
    steps = report.section("Steps", "What ran, on how much data, and how long it took. A step read back from an "
                                    "earlier run into this folder (same model, data and settings) shows both times.")

    def took(step):
        if step not in reused:
            return fmt_seconds(timings[step])
        earlier = f"; computed in {fmt_seconds(reused[step])} by the earlier run" if reused[step] else ""
        return f"{fmt_seconds(timings[step])} (read back{earlier})"

    steps.table(["step", "what", "time"], [
        ["attribution", f"every attribution method on {config.attribution_examples} dev sentences",
         fmt_seconds(timings["attribution"])],
        ["pruning", f"head importance ({', '.join(config.prune_strategies)}) on {config.prune_importance_examples} "
                    f"sentences, accuracy curve on {min(len(dev), config.prune_eval_examples)}, physical pruning",
         took("pruning")],
        ["trees", f"AttAttr trees for {min(len(dev), max(config.tree_examples, config.tree_stats_examples))} "
                  "sentences and their statistics", took("trees")],
        ["audit", sections["audit"]["what"], took("audit")]])
    report.extend(sections["attribution"])
    report.extend(sections["pruning"]["report"], prefix="Head pruning")
    report.extend(sections["trees"]["report"], prefix="Trees")
    report.extend(sections["audit"]["report"], prefix="Robustness audit")
    report.section("Configuration", "The demo's settings (DemoConfig).").table(
        ["setting", "value"], [[k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v]
                               for k, v in asdict(config).items()])
    return report


# ----------------------------------------------------------------------------------- reuse
SECTION_FILE = "section.json"


def section_identity(fingerprint: str, config: DemoConfig, train, dev) -> str:
    """sha256 over what a section's outputs depend on: the model's weights (fingerprint), the
    demo's settings and every training / evaluation row."""
    import hashlib
    import json

    from ..rundir import data_identity

    record = [fingerprint, asdict(config), data_identity(train), data_identity(dev)]
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def read_section(out_dir: str, identity: str) -> dict | None:
    """The saved record of a finished section in ``out_dir`` when it was made with ``identity``;
    None when there is none, it is unreadable, or it belongs to another model, data or settings."""
    import json

    try:
        with open(os.path.join(out_dir, SECTION_FILE), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(saved, dict) or saved.get("identity") != identity or "summary" not in saved:
        return None
    return saved


def write_section(out_dir: str, identity: str, result: dict, seconds: float | None = None) -> None:
    """Record a finished section (written last, atomically: a killed section is recomputed), with
    the ``seconds`` it took, which a rerun's report shows beside its own read-back time."""
    from ..io import write_json

    if result.get("final") is False:
        return
    record = {k: v for k, v in result.items() if k not in ("report", "final")}
    write_json(os.path.join(out_dir, SECTION_FILE),
               {"identity": identity, **record, "seconds": None if seconds is None else round(seconds, 1)})


# ----------------------------------------------------------------------------------- sections
def _attributions(engine, examples, config, out_dir):
    from .. import methods as registry
    from ..io import write_text
    from ..report import Report, attribution_heatmap, class_name, matrix_view
    from ..report.page import Table, markup
    from ..report.colors import scale_for
    from ..report.views import is_signed

    rows, skipped = [], {}
    per_method = {}
    for name in registry.list_methods():
        impl = registry.get(name)
        params = {"steps": config.steps} if "steps" in impl.defaults else {}
        try:
            per_method[name] = engine.attribute(examples, method=name, **params)
        except (ValueError, NotImplementedError) as err:  # method refuses this architecture
            skipped[name] = str(err)
            continue
        for index, attribution in enumerate(per_method[name]):
            attribution.save(os.path.join(out_dir, f"{name}-{index:02d}.safetensors"))
            rows.append([name, index] + [f"{v:.6g}" for v in attribution.token_scores().tolist()])
    write_text(os.path.join(out_dir, "token_scores.csv"),
               "method,example,scores...\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    report = Report("Attributions")
    section = report.section("Attributions", "Every attribution method on the same sentences. Signed methods "
                                             "(blue – white – red, 0 in the middle): red raises the predicted "
                                             "class's score, blue lowers it. Unsigned methods (white – orange): "
                                             "shares without a direction. Each row has its own scale; hover a "
                                             "token for its score. Files: attributions/.")
    for index, example in enumerate(examples):
        first = next(iter(per_method.values()))[index]
        names = first.label_names
        p = first.probs[first.predicted]
        table = []
        for name, attributions in per_method.items():
            a = attributions[index]
            scores = a.token_scores().tolist()
            special = a.special_tokens_mask or [0] * len(scores)
            content = [v for v, m in zip(scores, special) if not m] or scores
            scale = scale_for(content, is_signed(a))
            table.append([name, f"±{scale.vmax:.3g}" if scale.signed else f"0 – {scale.vmax:.3g}",
                          markup(attribution_heatmap(a, header=False, show_legend=False))])
        section.add(Table(["method", "colour range", "tokens"], table,
                          caption=f"“{example.text}” — predicted {class_name(first.predicted, names)} "
                                  f"(p = {p:.3f}), gold {class_name(example.label, names)}"))
    if skipped:
        section.table(["method", "why it was skipped"], list(skipped.items()))
    matrix_method = next((n for n, a in per_method.items() if a[0].kind == "matrix" and a[0].params.get("_signed")),
                         None)
    if matrix_method and examples:
        a = per_method[matrix_method][0]
        a.to_html(os.path.join(out_dir, f"{matrix_method}-00.html"))
        report.section(f"{matrix_method}: token × token maps per layer and head",
                       f"The first sentence's {matrix_method} maps: pick a layer and a head (or their sums). Row i, "
                       "column j: how much query token i draws from key token j. The same view for any attribution: "
                       "attrtools attribute --html, or the attribution itself in a notebook."
                       ).html(attribution_heatmap(a) + matrix_view(a))
    return report


def _pruning(engine, dev, config, out_dir):
    from ..pruning.pipeline import Config, run
    from ..pruning.report import pruning_report

    os.makedirs(out_dir, exist_ok=True)
    prune_config = Config(strategies=tuple(config.prune_strategies), num_examples=config.prune_importance_examples,
                          prune_fraction=0.5, steps=config.steps, latency_repeats=config.latency_repeats,
                          max_length=config.max_length)
    summary = run(engine, dev[: config.prune_importance_examples], prune_config, out_dir,
                  eval_examples=dev[: config.prune_eval_examples], log=lambda *a: None)
    return {"summary": summary, "report": pruning_report(out_dir)}


def _pruning_restored(saved, out_dir):
    from ..pruning.report import pruning_report

    return {"summary": saved["summary"], "report": pruning_report(out_dir)}


def _trees(engine, dev, config, out_dir):
    from ..report import class_name
    from ..tree.pipeline import Config, run
    from ..tree.report import tree_report

    os.makedirs(out_dir, exist_ok=True)
    examples = dev[: max(config.tree_examples, config.tree_stats_examples)]
    tree_config = Config(steps=config.steps, formats=("graphml", "json", "png", "svg", "html"), max_pictures=-1,
                             max_length=config.max_length)
    stats_dir = os.path.join(out_dir, "stats")
    result = run(engine, examples, tree_config, out_dir, tree_dir=out_dir, stats_dir=stats_dir,
                 file_name="tree-{index:02d}", export_limit=config.tree_examples)
    pictures = []
    examples = result["examples"]  # the rows with content (data.keep_content)
    for index, files in enumerate(result["written"]):
        a = result["attributions"][index]
        pictures.append((f"“{examples[index].text}” — predicted {class_name(a.predicted, a.label_names)}, "
                         f"gold {class_name(examples[index].label, a.label_names)}", files["svg"]))
    return {"summary": result["summary"], "report": tree_report(stats_dir, pictures, threshold=tree_config.threshold),
            "pictures": [[caption, os.path.relpath(path, out_dir)] for caption, path in pictures],
            "threshold": tree_config.threshold}


def _trees_restored(saved, out_dir):
    from ..tree.report import tree_report

    pictures = [(caption, os.path.join(out_dir, path)) for caption, path in saved["pictures"]]
    return {**saved, "report": tree_report(os.path.join(out_dir, "stats"), pictures, threshold=saved["threshold"])}


def _audit(engine, train, dev, config, out_dir, log):
    from ..adversarial.textattack_compat import TextAttackUnavailable, load_textattack
    from ..report import Report

    try:
        load_textattack()
    except TextAttackUnavailable as err:
        note = f"TextAttack is not installed, audit skipped: {err}"
        log(f"[demo] {note}")
        report = Report("Robustness audit")
        report.section("Skipped", note)
        return {"summary": {"skipped": note}, "report": report, "what": "skipped (TextAttack not installed)",
                "final": False}  # TextAttack installed later: the next run audits
    from ..adversarial.pipeline import Config, run
    from ..adversarial.report import audit_report

    audit_config = Config(recipes=tuple(config.audit_recipes), num_train_examples=config.trigger_train_examples,
                          steps=config.steps, progress=False, max_length=config.max_length)
    summary = run(engine, dev[: config.audit_examples], audit_config, out_dir, train=train)
    from ..report import label_names_from_config

    return {"summary": summary,
            "report": audit_report(out_dir, label_names=label_names_from_config(engine.model.config)),
            "what": f"triggers from {config.trigger_train_examples} training sentences, then attacks "
                    f"({', '.join(['triggers', *config.audit_recipes])}) on {config.audit_examples} dev sentences"}


def _audit_restored(saved, model, out_dir):
    from ..adversarial.report import audit_report
    from ..report import label_names_from_config

    return {**saved, "report": audit_report(out_dir, label_names=label_names_from_config(model.config))}


# ----------------------------------------------------------------------------------- announcement
#: wall time of each step of a first run on a 2-core CPU with the default DemoConfig (measured on the
#: project's development machine with the embedded MiniLM default, rounded up; see issue 15);
#: scaled by cores below. Rough by design.
COST_2CPU_S = {"fine-tune": 40, "attribution": 10, "pruning": 70, "trees": 5, "audit": 75}


def plan_text(config: DemoConfig, needs_training: bool, device: str, threads: int, train_rows: int | None = None) -> str:
    """What the demo is about to do and roughly how long it takes on this kind of machine."""
    from ..report import fmt_seconds

    speed = 8.0 if device.startswith("cuda") else max(1.0, min(threads, 16) / 2)
    steps = []
    if needs_training:
        steps.append(("fine-tune", f"fine-tune the default classifier (MiniLM) on {train_rows or 'the'} sentiment "
                                   "sentences, once (cached for later runs)"))
    steps += [("attribution", f"run every attribution method on {config.attribution_examples} sentences"),
              ("pruning", f"rank attention heads ({', '.join(config.prune_strategies)}), draw the pruning curve on "
                          f"{config.prune_eval_examples} sentences and prune the model physically"),
              ("trees", f"build attribution trees for {config.tree_stats_examples} sentences with statistics"),
              ("audit", f"extract triggers from {config.trigger_train_examples} training sentences and attack "
                        f"{config.audit_examples} sentences (triggers, {', '.join(config.audit_recipes)})")]
    total = sum(COST_2CPU_S[name] for name, _ in steps) / speed
    lines = ["attrtools demo will:"]
    for k, (name, what) in enumerate(steps, 1):
        lines.append(f"  {k}. {what}  [~{fmt_seconds(COST_2CPU_S[name] / speed)}]")
    where = f"{device}, {threads} CPU thread(s)" if not device.startswith("cuda") else device
    lines.append(f"Roughly {fmt_seconds(total)} in all on this machine ({where}); a rerun into the same "
                 "folder reads finished sections back, and runs into other folders reuse the attribution "
                 "cache. Report: <run dir>/report.html")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- command
@command()
@click.option("--model", "model_name", default=None,
              help="Classifier to use instead of the embedded default (hub id or folder).")
@click.option("--train-dataset", default=None, help="Training data for trigger extraction (default: attrtools' own).")
@click.option("--dataset", default=None, help="Evaluation data (default: attrtools' own sentiment dev set).")
@click.option("--train-data", "old_train_data", default=None, hidden=True, help="Old spelling of --train-dataset.")
@click.option("--dev-data", "old_dev_data", default=None, hidden=True, help="Old spelling of --dataset.")
@label_names_option
@max_length_option()
@cache_options
@output_dir_option
@device_option
def demo(model_name, train_dataset, dataset, old_train_data, old_dev_data, label_names, max_length, cache_dir, no_cache,
         output_dir, device):
    """Run attribution, pruning, trees and a robustness audit end to end, offline, into one HTML report."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_transformers()
    from ..default_model import ensure_default_model, sentiment_data
    from ..errors import MissingDependencyError

    from .. import distributed

    data = sentiment_data()
    train = train_dataset or old_train_data or data["train"]
    dev = dataset or old_dev_data or data["dev"]
    from ..data import check_local_file
    from ..errors import InputDataError

    for spec, option in ((train, "--train-dataset"), (dev, "--dataset")):  # before the default model is trained
        try:
            check_local_file(spec)
        except InputDataError as err:
            raise InputDataError(f"{option}: {err}") from None
    here = distributed.world()
    import torch

    from ..default_model import DEFAULT_NAME, models_dir

    needs_training = model_name is None and not os.path.exists(os.path.join(models_dir(), DEFAULT_NAME, "training.json"))
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    train_rows = None
    if os.path.isfile(train):
        with open(train, encoding="utf-8") as f:
            train_rows = max(0, sum(1 for _ in f) - 1)
    if here.is_main:  # one announcement for the whole job
        click.echo(plan_text(DemoConfig(), needs_training, chosen, torch.get_num_threads(), train_rows))
    if here.distributed and not model_name:
        distributed.init()
        if not here.is_main:
            distributed.barrier()  # rank 0 builds the default model once; the others then load it
    try:
        model_dir = model_name or ensure_default_model(log=click.echo)
    except RuntimeError as err:  # the default model's package is missing or cannot be built
        raise MissingDependencyError(str(err)) from None
    finally:
        if here.distributed and not model_name and here.is_main:
            distributed.barrier()
    if device is None and here.distributed:
        device = str(distributed.device())
    # The data is read (and its labels checked against the model's) before the run directory is
    # written: a bad path or label leaves nothing behind.
    examples = (load_examples_or_fail(train, label_names=label_names, model=model_dir, what="--train-dataset"),
                load_examples_or_fail(dev, label_names=label_names, model=model_dir, what="--dataset"))
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)
    config = DemoConfig(max_length=max_length)
    out = make_run_dir(output_dir, "demo", {"model": model_dir, "train": train, "dev": dev, "label_names": label_names,
                                            **asdict(config)})
    loaded = load_model_or_fail(model_dir, device)  # the input rule goes into run_config.json
    summary = run_demo(model_dir, train, dev, out, config=config, cache=cache, device=device, log=click.echo,
                       label_names=label_names_list(label_names), loaded=loaded, data=examples)
    files = sorted(os.path.relpath(os.path.join(root, f), out) for root, _, names in os.walk(out) for f in names)
    from ..report import fmt_seconds

    echo_summary({"report": os.path.join(out, "report.html"), "files": len(files),
                  "time": fmt_seconds(summary["seconds"]),
                  "steps": ", ".join(f"{k} {fmt_seconds(v)}" for k, v in summary["timings_s"].items())})
