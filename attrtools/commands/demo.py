"""``attrtools demo``: the whole product end to end, offline, in one report.

On the embedded default classifier (MiniLM fine-tuned on attrtools' own sentiment data, built on
first use) or any ``--model``: every attribution method on a few sentences, the head-pruning
curve with a physically pruned model, attribution trees with dataset statistics, and a
robustness audit (trigger attack + an offline TextAttack recipe, when TextAttack is installed).
Everything goes through one attribution cache, so a second run takes seconds.
"""
from __future__ import annotations

import base64
import html
import os
import time
from dataclasses import asdict, dataclass

import click

from ..cli_kit import (cache_options, command, device_option, echo_summary, make_run_dir, open_cache_or_fail,
                       output_dir_option, quiet_transformers)


@dataclass
class DemoConfig:
    """Sizes of the demo's sections (small, so the demo runs in minutes on a laptop CPU).

    ``attribution_examples``: dev sentences explained by every method; ``steps``: AttAttr
    integration steps m everywhere; ``prune_importance_examples`` / ``prune_eval_examples``: the
    pruning planner's importance and evaluation sets; ``prune_strategies``: its strategies;
    ``tree_examples``: trees drawn; ``tree_stats_examples``: trees in the statistics;
    ``trigger_train_examples``: training sentences for trigger extraction; ``audit_examples``:
    dev sentences attacked; ``audit_recipes``: TextAttack recipes besides the trigger attack;
    ``latency_repeats``: timed forwards of the pruned model.
    """

    attribution_examples: int = 3
    steps: int = 20
    prune_importance_examples: int = 64
    prune_eval_examples: int = 200
    prune_strategies: tuple = ("attattr", "attention", "taylor", "random")
    tree_examples: int = 3
    tree_stats_examples: int = 60
    trigger_train_examples: int = 150
    audit_examples: int = 24
    audit_recipes: tuple = ("deepwordbug",)
    latency_repeats: int = 10


def run_demo(model_dir: str, train_path: str, dev_path: str, output_dir: str, config: DemoConfig | None = None,
             cache=True, device=None, log=print) -> dict:
    """Run every tool on ``model_dir`` and write ``output_dir/report.html``; returns the summary.

    ``train_path`` / ``dev_path``: datasets (local files or hub names) for trigger extraction and
    for everything else; ``config``: a :class:`DemoConfig`; ``cache``: an attribution cache, a
    folder, True (the default folder) or None; ``log``: called with progress lines. Each section
    calls its tool's pipeline (``run_pruning``, ``run_trees``, ``run_full_audit``) with the
    tool's config, so the demo and the commands cannot drift apart."""
    from ..api import load_model
    from ..cache import open_cache
    from ..data import load_examples
    from ..engine import Engine
    from ..io import write_json, write_text

    config = config or DemoConfig()
    started = time.time()
    model, tokenizer = load_model(model_dir, device=device)
    cache = open_cache(cache)
    train, dev = load_examples(train_path), load_examples(dev_path)
    engine = Engine(model, tokenizer, cache=cache)
    sections, summary, timings = [], {"model": model_dir}, {}

    def timed(name, fn):
        t0 = time.time()
        log(f"[demo] {name} ...")
        result = fn()
        timings[name] = round(time.time() - t0, 1)
        return result

    sections.append(timed("attribution", lambda: _attributions(engine, dev[: config.attribution_examples], config,
                                                               os.path.join(output_dir, "attributions"))))
    pruning = timed("pruning", lambda: _pruning(model, tokenizer, dev, config, cache,
                                                os.path.join(output_dir, "pruning"), log))
    summary["pruning"] = pruning["summary"]
    sections.append(pruning["html"])
    trees = timed("trees", lambda: _trees(engine, dev, config, os.path.join(output_dir, "trees")))
    summary["trees"] = trees["summary"]
    sections.append(trees["html"])
    audit = timed("audit", lambda: _audit(model, tokenizer, train, dev, config, cache,
                                          os.path.join(output_dir, "audit"), log))
    summary["audit"] = audit["summary"]
    sections.append(audit["html"])
    summary["timings_s"] = timings
    summary["seconds"] = round(time.time() - started, 1)
    summary["engine"] = dict(engine.stats)
    write_json(os.path.join(output_dir, "summary.json"), summary)
    write_text(os.path.join(output_dir, "report.html"), _page(model_dir, sections, summary, config))
    return summary


# ----------------------------------------------------------------------------------- sections
def _attributions(engine, examples, config, out_dir):
    from .. import methods as registry
    from ..io import write_text

    rows, skipped, blocks = [], {}, []
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
    for index, example in enumerate(examples):
        lines = []
        for name, attributions in per_method.items():
            a = attributions[index]
            lines.append(f"<tr><th>{html.escape(name)}</th><td>{_heat(a.tokens, a.token_scores().tolist(), a.special_tokens_mask)}</td></tr>")
        first = next(iter(per_method.values()))[index]
        blocks.append(f"<h3>{html.escape(example.text)}</h3><p>predicted class {first.predicted} "
                      f"(p = {first.probs[first.predicted]:.3f}), gold {example.label}</p>"
                      f"<table class='heat'>{''.join(lines)}</table>")
    write_text(os.path.join(out_dir, "token_scores.csv"),
               "method,example,scores...\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    note = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in skipped.items())
    return ("<h2>Attributions</h2><p>Token view of every method (red: supports the explained class, blue: "
            "against; each row scaled by its largest magnitude). Files: <code>attributions/</code>.</p>"
            + "".join(blocks) + (f"<p>Skipped:</p><ul>{note}</ul>" if note else ""))


def _pruning(model, tokenizer, dev, config, cache, out_dir, log):
    from ..pruning.config import PruneConfig
    from ..pruning.pipeline import run_pruning

    os.makedirs(out_dir, exist_ok=True)
    prune_config = PruneConfig(strategies=tuple(config.prune_strategies), num_examples=config.prune_importance_examples,
                               prune_fraction=0.5, steps=config.steps, latency_repeats=config.latency_repeats)
    summary = run_pruning(model, tokenizer, dev[: config.prune_importance_examples], out_dir,
                          eval_examples=dev[: config.prune_eval_examples], config=prune_config, cache=cache,
                          log=lambda *a: None)
    body = [f"<h2>Head pruning</h2><p>Importance from {config.prune_importance_examples} dev sentences "
            f"(AttAttr: gold-label probability, m = {config.steps}); accuracy on "
            f"{min(len(dev), config.prune_eval_examples)} dev sentences as heads are masked.</p>",
            _img(os.path.join(out_dir, "pruning_curve.png")),
            f"<pre>{html.escape(_short_json(summary))}</pre>"]
    return {"summary": summary, "html": "".join(body)}


def _trees(engine, dev, config, out_dir):
    from ..tree.config import TreeConfig
    from ..tree.pipeline import run_trees

    os.makedirs(out_dir, exist_ok=True)
    examples = dev[: max(config.tree_examples, config.tree_stats_examples)]
    tree_config = TreeConfig(steps=config.steps, formats=("graphml", "json", "png", "svg", "html"), max_pictures=-1)
    result = run_trees(engine, examples, out_dir, tree_config, tree_dir=out_dir, stats_dir=os.path.join(out_dir, "stats"),
                       file_name="tree-{index:02d}", export_limit=config.tree_examples)
    trees = result["trees"]
    pictures = []
    for index, files in enumerate(result["written"]):
        with open(files["svg"], encoding="utf-8") as f:
            svg = f.read()
        pictures.append(f"<h3>{html.escape(examples[index].text)}</h3><div class='svg'>{svg[svg.find('<svg'):]}</div>")
    summary = result["summary"]
    body = (f"<h2>Attribution trees</h2><p>AttAttr trees (threshold 0.4). Statistics over {len(trees)} dev "
            f"sentences in <code>trees/stats/</code>.</p>" + "".join(pictures)
            + _img(os.path.join(out_dir, "stats", "layer_stats.png"))
            + f"<pre>{html.escape(_short_json(summary))}</pre>")
    return {"summary": summary, "html": body}


def _audit(model, tokenizer, train, dev, config, cache, out_dir, log):
    from ..adversarial.textattack_compat import TextAttackUnavailable, load_textattack

    try:
        load_textattack()
    except TextAttackUnavailable as err:
        note = f"TextAttack is not installed, audit skipped: {err}"
        log(f"[demo] {note}")
        return {"summary": {"skipped": note}, "html": f"<h2>Robustness audit</h2><p>{html.escape(note)}</p>"}
    from ..adversarial.config import AuditConfig
    from ..adversarial.pipeline import run_full_audit

    audit_config = AuditConfig(recipes=tuple(config.audit_recipes), num_train_examples=config.trigger_train_examples,
                               steps=config.steps, progress=False)
    summary = run_full_audit(model, tokenizer, dev[: config.audit_examples], out_dir, train=train, config=audit_config,
                             cache=cache)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{s.get('attack_success_rate')}</td><td>{s.get('attack_accuracy_perc')}</td>"
        f"<td>{s.get('original_accuracy')}</td><td>{s.get('avg_num_queries')}</td></tr>"
        for name, s in summary.get("recipes", {}).items())
    body = ("<h2>Robustness audit</h2><p>Attribution triggers and TextAttack recipes on the same "
            f"{config.audit_examples} dev sentences; full report: <code>audit/report.html</code>.</p>"
            "<table><tr><th>attack</th><th>success %</th><th>accuracy under attack %</th><th>clean accuracy %</th>"
            f"<th>avg queries</th></tr>{rows}</table>")
    return {"summary": summary, "html": body}


# ----------------------------------------------------------------------------------- HTML helpers
def _heat(tokens, scores, special) -> str:
    real = [abs(s) for s, m in zip(scores, special or [0] * len(scores)) if not m] or [abs(s) for s in scores]
    top = max(real) or 1.0
    spans = []
    for token, score, is_special in zip(tokens, scores, special or [0] * len(tokens)):
        v = max(-1.0, min(1.0, score / top))
        color = f"rgba(220,40,40,{v:.2f})" if v >= 0 else f"rgba(40,90,220,{-v:.2f})"
        style = "opacity:.5;" if is_special else ""
        spans.append(f"<span title='{score:.4g}' style='background:{color};{style}'>{html.escape(token)}</span>")
    return " ".join(spans)


def _img(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    return f"<img src='data:image/png;base64,{data}' style='max-width:100%'>"


def _short_json(obj) -> str:
    import json

    return json.dumps(obj, indent=1, default=str)[:4000]


def _page(model_dir, sections, summary, config) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>attrtools demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}
.heat span{{padding:1px 2px;border-radius:3px}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}
.svg svg{{max-width:100%;height:auto}}</style></head><body>
<h1>attrtools demo</h1><p>Model: <code>{html.escape(model_dir)}</code> &middot; total {summary['seconds']} s
&middot; timings {html.escape(str(summary['timings_s']))}</p>
{''.join(sections)}
<h2>Configuration</h2><pre>{html.escape(_short_json(asdict(config)))}</pre></body></html>"""


# ----------------------------------------------------------------------------------- command
@command()
@click.option("--model", "model_name", default=None,
              help="Classifier to use instead of the embedded default (hub id or folder).")
@click.option("--train-dataset", default=None, help="Training data for trigger extraction (default: attrtools' own).")
@click.option("--dataset", default=None, help="Evaluation data (default: attrtools' own sentiment dev set).")
@click.option("--train-data", "old_train_data", default=None, hidden=True, help="Old spelling of --train-dataset.")
@click.option("--dev-data", "old_dev_data", default=None, hidden=True, help="Old spelling of --dataset.")
@cache_options
@output_dir_option
@device_option
def demo(model_name, train_dataset, dataset, old_train_data, old_dev_data, cache_dir, no_cache, output_dir, device):
    """Run attribution, pruning, trees and a robustness audit end to end, offline, into one HTML report."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_transformers()
    from ..default_model import ensure_default_model, sentiment_data
    from ..errors import MissingDependencyError

    from .. import distributed

    data = sentiment_data()
    train = train_dataset or old_train_data or data["train"]
    dev = dataset or old_dev_data or data["dev"]
    here = distributed.world()
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
    cache = open_cache_or_fail(cache_dir, enabled=not no_cache)
    config = DemoConfig()
    out = make_run_dir(output_dir, "demo", {"model": model_dir, "train": train, "dev": dev, **asdict(config)})
    summary = run_demo(model_dir, train, dev, out, config=config, cache=cache, device=device, log=click.echo)
    files = sorted(os.path.relpath(os.path.join(root, f), out) for root, _, names in os.walk(out) for f in names)
    echo_summary({"report": os.path.join(out, "report.html"), "files": len(files), "seconds": summary["seconds"],
                  "timings": summary["timings_s"]})
