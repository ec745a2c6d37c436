"""Findings of the second new-user trial and code review: one test per fix.

Each test would fail on the code before its fix (the docstring says what the old code did)."""
import math
import os

import pytest

import attrtools


def _cli(args):
    from click.testing import CliRunner

    from attrtools.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _line(output: str, key: str) -> str:
    """The value of summary line ``key`` (the summary pads keys to one width)."""
    for line in output.splitlines():
        if line.startswith(key + " ") or line == key:
            return line[len(key):].strip()
    raise AssertionError(f"no summary line {key!r} in:\n{output}")


def _textattack():
    from attrtools.adversarial.textattack_compat import TextAttackUnavailable, load_textattack

    try:
        return load_textattack()
    except TextAttackUnavailable:
        pytest.skip("textattack (the attack extra) is not installed")


def _write_tsv(path, rows, header=("sentence", "label")):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


# ------------------------------------------------------------------ 3. a parameter for a method not run
def test_evaluate_param_for_a_method_not_chosen_is_a_usage_error(planted_dir, tmp_path):
    """``--methods grad_input,raw --param attattr:steps=3`` was accepted and the parameter ignored."""
    data = _write_tsv(tmp_path / "d.tsv", [("a good film", 1), ("a bad film", 0)])
    out = tmp_path / "run"
    result = _cli(["evaluate", "--model", planted_dir, "--dataset", data, "--methods", "grad_input,raw",
                   "--param", "attattr:steps=3", "--output-dir", out, "--no-cache"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "attattr:steps=3" in lines[0] and "'attattr' is not among" in lines[0], lines
    assert not out.exists()  # refused before anything ran
    from attrtools.cli_kit import UserError, parse_params

    assert parse_params(["attattr:steps=3"], ["attattr", "raw"]) == {"attattr": {"steps": 3}}
    with pytest.raises(UserError, match="ig_embed"):
        parse_params(["ig_embed:steps=3"], ["attattr", "raw"])


# ------------------------------------------------------------------ 8. the reference is not its own best
def test_agreement_column_does_not_mark_the_reference_itself_best():
    """grad_input's ρ = 1 with itself was marked the best of the agreement column."""
    from attrtools.evaluate.report import html_report, markdown
    from attrtools.evaluate.run import Evaluation, MethodResult

    def result(name, comp, rho):
        return MethodResult(name, n_examples=2, summary={"aopc_comp": comp, "aopc_suff": 0.1, "deletion_auc": 0.2,
                                                          "insertion_auc": 0.3, "log_odds": -0.1, "accuracy": 0.5},
                            spearman=rho, spearman_std=0.0)

    evaluation = Evaluation("eraser", "delete", "grad_input", 2, 1.0,
                            [result("grad_input", 0.3, 1.0), result("attattr", 0.5, 0.6), result("raw", 0.2, 0.4)])
    rows = {line.split("|")[1].strip(): line for line in markdown(evaluation).splitlines() if line.startswith("| ")}
    assert "**1.000 ±" not in rows["grad_input"] and "1.000 ±" in rows["grad_input"]
    assert "**0.600 ±" in rows["attattr"] and "**0.400" not in rows["raw"]
    report = html_report(evaluation)
    table = [b for s in report.sections for b in s.blocks if getattr(b, "best", None) is not None][0]
    rho_column = table.columns.index("ρ vs G×I ↑")
    marked = {table.rows[r][0] for r, c in table.best if c == rho_column}
    assert marked == {"attattr"}
    assert not math.isnan(evaluation.results[0].spearman)


# ------------------------------------------------------------------ 5. a result prints in one line
def test_attribution_repr_is_one_line_without_the_scores(planted):
    """``print(result)`` dumped the whole scores tensor (the dataclass repr)."""
    model, tok = planted
    [a] = attrtools.attribute(model, tok, ["alpha the movie beta"], method="attattr", steps=2)
    text = repr(a)
    assert "\n" not in text and "tensor" not in text and len(text) < 300, text
    assert text.startswith("Attribution(method='attattr'")
    assert f"target={a.target}" in text and f"shape={tuple(a.scores.shape)}" in text
    assert f"tokens={a.n_tokens}" in text
    gap = a.completeness["worst_relative_gap"]
    assert f"completeness_gap={gap:.3g}" in text
    results = attrtools.attribute(model, tok, ["alpha the movie beta"] * 7, method="raw")
    listed = repr(results)
    assert "tensor" not in listed and listed.count("Attribution(method='raw'") == 5 and "and 2 more" in listed
    assert "completeness_gap" not in listed  # raw attention has no completeness property


# ------------------------------------------------------------------ 6. no datasets progress bar
def test_load_examples_shows_no_datasets_progress_bar_and_restores_its_state(tmp_path, capfd):
    """A library ``load_examples`` of a local file printed datasets' "Generating data split" bar."""
    import datasets

    from attrtools.data import load_examples

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.enable_progress_bars()
    try:
        capfd.readouterr()
        path = _write_tsv(tmp_path / "fresh.tsv", [(f"a good film number {i}", i % 2) for i in range(5)])
        examples = load_examples(str(path))
        captured = capfd.readouterr()
        assert len(examples) == 5
        assert "Generating" not in captured.err + captured.out and "split" not in captured.err, captured.err
        assert not datasets.are_progress_bars_disabled()  # the caller's setting is restored
    finally:
        if was_disabled:
            datasets.disable_progress_bars()


# ------------------------------------------------------------------ 9. rows numbered as the user counts them
def test_skipped_and_refused_rows_are_named_by_their_1_based_data_row(planted, planted_dir, tmp_path):
    """Messages and reports named the first data row "row 0" (the 0-based index)."""
    from attrtools.data import DataError, keep_content, load_examples, row_label
    from attrtools.evaluate.run import evaluate_methods

    model, tok = planted
    data = tmp_path / "rows.csv"
    data.write_text("text,label\n12345,1\nalpha the movie beta,1\n,0\nbeta was alpha,0\n", encoding="utf-8")
    loaded = load_examples(str(data))
    assert [(r["index"], r["row"]) for r in loaded.skipped] == [(0, 1), (2, 3)]
    assert [row_label(r) for r in loaded.skipped] == ["row 1", "row 3"]
    assert row_label({"index": 4, "id": "x"}) == "row 5"  # a record written before "row" existed
    evaluation = evaluate_methods(model, tok, keep_content(loaded, tok), ["raw"], reference=None, preset="eraser")
    [note] = [n for n in evaluation.notes if "without content" in n]
    assert "row 1 (no letters in text" in note and "row 3 (empty text)" in note and "row 0" not in note
    bad = tmp_path / "labels.csv"
    bad.write_text("text,label\nalpha the movie,1\nbeta was alpha,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^row 2: label 'maybe'"):
        load_examples(str(bad))
    out_of_range = tmp_path / "range.csv"
    out_of_range.write_text("text,label\n12345,0\nalpha the movie,1\nbeta was alpha,7\n", encoding="utf-8")
    result = _cli(["triggers", "--model", planted_dir, "--dataset", out_of_range, "--steps", "1",
                   "--output-dir", tmp_path / "tr", "--no-cache"])
    assert result.exit_code == 2 and "--dataset: row 3 has label 7" in result.output, result.output
    from attrtools.adversarial.report import render_report

    page = render_report({"recipes": {}, "skipped_rows": list(loaded.skipped)}, [], None, None)
    assert "row 1" in page and "row 3" in page


# ------------------------------------------------------------------ 2. truncations counted in rows
def test_triggers_count_truncated_rows_not_the_texts_built_from_them(planted_dir, tmp_path):
    """``triggers --eval-dataset`` counted every distinct trigger-inserted text that was truncated,
    so one long row read as several "inputs truncated"."""
    from attrtools.testing import planted_dataset

    long_row = " ".join(["alpha the movie was fine"] * 6)
    rows = [(t, y) for t, y in planted_dataset(30, seed=11)] + [(long_row, 1)]
    data = _write_tsv(tmp_path / "d.tsv", rows)
    out = tmp_path / "run"
    result = _cli(["triggers", "--model", planted_dir, "--dataset", data, "--eval-dataset", data, "--steps", "4",
                   "--num-train-examples", "24", "--max-length", "24", "--top-k", "3", "--output-dir", out,
                   "--no-cache"])
    assert result.exit_code == 0, result.output
    assert (out / "per_class.csv").exists()
    line = _line(result.output, "inputs truncated")
    assert line.startswith("1 data row(s) longer than the max length"), line
    # the inserted texts (the long row with a trigger, truncated too) are said apart, not added to the rows
    assert "; besides, " in line and "perturbed or trigger-inserted text(s) built from the data" in line


def test_run_report_counts_rows_and_derived_inputs_apart():
    from attrtools import runreport
    from attrtools.types import Example

    runreport.reset()
    try:
        runreport.note_truncated("x y", None, 40, 20)
        assert runreport.report()["truncated"] == 1 and runreport.report()["truncated_unit"] == "input"
        runreport.note_rows([Example("x y"), Example("short")])
        runreport.note_truncated("x y INSERTED", None, 43, 20)
        runreport.note_truncated("x y PERTURBED", None, 41, 20)
        report = runreport.report()
        assert (report["truncated"], report["truncated_unit"], report["truncated_derived"]) == (1, "row", 2)
    finally:
        runreport.reset()


# ------------------------------------------------------------------ 1. audit's training file, own columns
def test_audit_reads_a_train_file_with_its_own_column_names(planted_dir, tmp_path):
    """``audit`` had no --train-*-column options: a training file whose columns differ from the dev
    data's could be read only by the guess (and here, not at all)."""
    _textattack()
    from attrtools.testing import planted_dataset

    dev = _write_tsv(tmp_path / "dev.tsv", planted_dataset(4, seed=3), header=("sentence", "label"))
    train = _write_tsv(tmp_path / "train.tsv", planted_dataset(30, seed=11), header=("phrase", "y"))
    common = ["audit", "--model", planted_dir, "--dataset", dev, "--text-column", "sentence", "--label-column",
              "label", "--train-dataset", train, "--recipes", "wir-delete", "--num-examples", "2",
              "--num-train-examples", "12", "--steps", "2", "--no-cache"]
    refused = _cli(common + ["--output-dir", tmp_path / "guess"])
    assert refused.exit_code != 0 and "--train-dataset" in refused.output and "'sentence' not found" in refused.output
    result = _cli(common + ["--train-text-column", "phrase", "--train-label-column", "y",
                            "--output-dir", tmp_path / "run"])
    assert result.exit_code == 0, result.output
    import json

    meta = json.loads((tmp_path / "run" / "triggers.json").read_text())["config"]
    assert meta["scanned"] == 30 and meta["correct_used"] == 12 and meta["patterns"] > 0  # the train file's rows
    from attrtools.cli_kit import train_columns

    assert train_columns((None, None, "y"), ("sentence", None, "label")) == ("sentence", None, "y")


# ------------------------------------------------------------------ 4. warnings name the caller's line
@pytest.fixture(scope="module")
def short_bert(tmp_path_factory):
    """Tiny BERT with a 34-row position table: a long text is truncated."""
    from attrtools.testing import build_tiny_model

    return attrtools.load_model(build_tiny_model("bert", str(tmp_path_factory.mktemp("short")), max_positions=32))


def test_truncation_and_completeness_warnings_name_the_callers_line(short_bert, planted):
    """Both warnings named an engine or torch frame (``torch.no_grad``'s wrapper), not the user's call."""
    import inspect
    import warnings

    from attrtools.engine import CompletenessWarning, TruncationWarning

    long_text = " ".join(["the movie was very good and the acting was fine"] * 8)
    for (model, tok), category, text in ((short_bert, TruncationWarning, long_text),
                                         (planted, CompletenessWarning, "alpha the movie beta")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = inspect.currentframe().f_lineno + 1
            attrtools.attribute(model, tok, [text], method="attattr", steps=1)
        [w] = [w for w in caught if w.category is category] or [None]
        assert w is not None, (category, [str(c.message) for c in caught])
        assert os.path.samefile(w.filename, __file__) and w.lineno == line, (category, w.filename, w.lineno)


def test_warn_points_past_every_attrtools_frame():
    import warnings

    from attrtools.notices import caller_stacklevel, warn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn("here", UserWarning)
    assert os.path.samefile(caught[0].filename, __file__)
    assert caller_stacklevel() == 2  # no attrtools frame above this test: the direct caller


# ------------------------------------------------------------------ 7. a pruned folder without its marker
@pytest.fixture
def transformers_warnings():
    """What transformers logs at its default verbosity (the suite's conftest silences it below
    errors), as the messages its library root logger's handlers receive (whatever stream they write to)."""
    import logging

    import transformers
    from transformers.utils import logging as hf_logging

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    seen: list[str] = []
    root, handler = hf_logging.get_logger(), Collect()
    before = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    root.addHandler(handler)
    yield seen
    root.removeHandler(handler)
    transformers.logging.set_verbosity(before)


def test_pruned_folder_without_marker_fails_in_one_line_without_transformers_report(
        tiny_models, tmp_path, capfd, transformers_warnings):
    """transformers printed its multi-line LOAD REPORT (size mismatches) before attrtools' one line."""
    import copy

    from attrtools.models import CheckpointMismatchError
    from attrtools.pruning.prune import prune_heads, save_pruned

    model, tok = tiny_models["bert"]
    pruned = copy.deepcopy(model)
    prune_heads(pruned, {0: [1], 1: [0, 1]})
    folder = save_pruned(pruned, tok, str(tmp_path / "p"))
    (tmp_path / "p" / "pruned_heads.json").unlink()
    capfd.readouterr()
    with pytest.raises(CheckpointMismatchError, match="pruned_heads.json"):
        attrtools.load_model(folder)
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "MISMATCH" not in err, err
    assert not [m for m in transformers_warnings if "LOAD REPORT" in m], transformers_warnings
    result = _cli(["attribute", "--model", folder, "--text", "a good film", "--method", "raw",
                   "--output-dir", tmp_path / "run", "--no-cache"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: ") and "pruned_heads.json" in result.output


def test_held_transformers_logs_pass_on_unless_dropped(transformers_warnings):
    from transformers.utils import logging as hf_logging

    from attrtools.models import held_transformers_logs

    # a logger of its own: one another test or library disabled (logging.config) would create no record
    logger = hf_logging.get_logger("transformers.attrtools_probe")
    with held_transformers_logs():
        logger.warning("kept for the user")
        assert transformers_warnings == []  # held while the load runs
    assert transformers_warnings == ["kept for the user"]  # then passed on to transformers' handlers
    with held_transformers_logs() as logs:
        logger.warning("replaced by our line")
        logs["drop"] = True
    assert transformers_warnings == ["kept for the user"]


# ------------------------------------------------------------------ 10. checked before anything is written
def test_prune_count_beyond_the_config_heads_is_refused_before_the_run_dir(planted_dir, tmp_path):
    """An out-of-range --prune-count was found only after the model loaded, with the run directory
    already written."""
    from attrtools.models import config_head_count, load_config

    heads = config_head_count(load_config(planted_dir))
    assert heads == 8
    data = _write_tsv(tmp_path / "d.tsv", [("alpha the movie beta", 1), ("beta was alpha", 0)])
    out = tmp_path / "run"
    result = _cli(["prune", "--model", planted_dir, "--dataset", data, "--prune-count", str(heads + 1),
                   "--strategies", "attention", "--output-dir", out, "--no-cache"])
    assert result.exit_code == 2 and f"--prune-count must be in 0..{heads}" in result.output, result.output
    assert not out.exists()
    negative = _cli(["prune", "--model", planted_dir, "--dataset", data, "--prune-count", "-1",
                     "--output-dir", out, "--no-cache"])
    assert negative.exit_code == 2 and "--prune-count" in negative.output and not out.exists()
    from attrtools.errors import ParameterError
    from attrtools.pruning.cli import prune_command

    with pytest.raises(ParameterError, match=r"PruneConfig.prune_count \(--prune-count\) must be a whole number >= 0"):
        prune_command(planted_dir, str(data), strategies="attention", num_examples=4, prune_count=-1,
                      no_cache=True, output_dir=str(out))  # the Python entry point too (its options are keywords)
    assert not out.exists()


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


# ------------------------------------------------------------------ 11. code-review leftovers
def test_run_comparison_resolves_its_config_once(monkeypatch, tmp_path):
    """run_comparison resolved its config, then resolved the result again to drop 'triggers'."""
    from attrtools import config as config_module
    from attrtools.adversarial.compare import AuditedModel, run_comparison
    from attrtools.adversarial.recipes import RecipeError

    _textattack()
    resolved = []
    real = config_module.resolve_config

    def counting(cls, config=None, options=None):
        resolved.append(real(cls, config, options))
        return resolved[-1]

    monkeypatch.setattr(config_module, "resolve_config", counting)
    with pytest.raises(RecipeError):  # an unknown recipe: refused right after the config is resolved
        run_comparison([AuditedModel("a", None, None)], [], str(tmp_path / "cmp"),
                       recipes=("triggers", "no-such-recipe"), use_triggers=False)
    assert len(resolved) == 1 and resolved[0].recipes == ("no-such-recipe",)


def test_no_module_imports_a_private_name_of_another_attrtools_package():
    """compare.py imported report.figures._figure (now the public blank_figure). The two imports
    listed are older ones this change leaves alone (named in its report)."""
    import ast
    import pathlib

    root = pathlib.Path(attrtools.__file__).parent
    known = {("tree/export.py", "_show"), ("commands/prune_audit.py", "_resources")}
    found = set()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level >= 1 and (node.level > 1 or "/" not in rel):
                found |= {(rel, a.name) for a in node.names if a.name.startswith("_") and a.name != "__version__"}
    assert found <= known, found - known
    from attrtools.report.figures import blank_figure

    assert blank_figure(2.0, 1.0).get_size_inches().tolist() == [2.0, 1.0]


def test_bench_scripts_import_bench_env_for_a_call_pyflakes_sees():
    """``import bench_env`` (imported for its effect) was flagged unused by pyflakes."""
    import importlib
    import io
    import pathlib
    import sys

    from pyflakes import api as pyflakes_api  # the dev extra
    from pyflakes.reporter import Reporter

    scripts = pathlib.Path(__file__).resolve().parent.parent / "scripts"
    out = io.StringIO()
    for name in ("bench_cache.py", "bench_distributed.py", "bench_env.py"):
        pyflakes_api.checkPath(str(scripts / name), Reporter(out, out))
    assert "bench_env" not in out.getvalue(), out.getvalue()
    sys.path.insert(0, str(scripts))
    try:
        bench_env = importlib.import_module("bench_env")
        assert bench_env.prepare() == str(scripts.parent) and sys.path.index(str(scripts.parent)) >= 0
        assert os.environ["HF_HUB_OFFLINE"]
    finally:
        sys.path.remove(str(scripts))
