"""The command line as a whole (``attrtools.cli``, ``attrtools.cli_kit``): options every command takes,
the length rule and label maps in every command, bad input as one line with its exit code. Each tool's
own options are tested in its file."""
import os
import re

import pytest
import torch
from click.testing import CliRunner

from attrtools.cache import AttributionCache
from attrtools.cli import main as cli

from helpers import LONG
from helpers import SIX_TEXTS as TEXTS
from helpers import attribute_run as _attribute
from helpers import cache_entries as _entries
from helpers import jsonl_dataset as _dataset
from helpers import one_line as _one_line
from helpers import run_cli as _cli
from helpers import summary_line as _line
from helpers import textattack_or_skip as _textattack


# ----------------------------------------------------------------------------- options every command takes
def _commands():
    """Every command of the CLI (subcommands of groups too), as ``(name, click command)``."""
    import click

    from attrtools.cli import main

    ctx = click.Context(main)
    found = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", command.get_command(ctx, sub)) for sub in command.list_commands(ctx)]
        else:
            found.append((name, command))
    return found


def test_every_command_that_reads_data_or_runs_a_model_takes_the_input_options():
    """README and every TruncationWarning tell the user to pass --max-length, and label errors say
    --label-names: every command taking a model or a dataset must have both (found over the CLI, not
    a list kept by hand)."""
    commands = _commands()
    readers = []
    for name, command in commands:
        options = {opt for param in command.params for opt in param.opts}
        if {"--model", "--dataset"} & options:
            readers.append(name)
            assert {"--max-length", "--label-names"} <= options, name
    assert {"attribute", "tree", "evaluate", "prune", "triggers", "audit", "demo"} <= set(readers)
    assert "methods" not in readers and len(readers) < len(commands)


def test_completeness_hint_names_each_commands_own_steps_option():
    """The warning tells the user which option raises the steps; each one it names exists on that
    command (prune/triggers/audit take --steps or --rank-steps, not --param)."""
    import click

    from attrtools.cli import main
    from attrtools.engine import STEPS_HINT, STEPS_OPTIONS

    ctx = click.Context(main)
    for name, options in STEPS_OPTIONS.items():
        command = main.get_command(ctx, name)
        have = {o for p in command.params for o in p.opts}
        assert set(options) <= have, (name, set(options) - have)
        assert all(o.split("=")[0] in STEPS_HINT for o in options) and f"in {name}" in STEPS_HINT
    assert {"attribute", "evaluate", "prune", "tree", "triggers", "audit"} <= set(STEPS_OPTIONS)


# ------------------------------------------------------------------------ the length rule in every command
@pytest.fixture(scope="module")
def short_bert_dir(short_table, tmp_path_factory):
    model, tok = short_table["bert"]
    folder = str(tmp_path_factory.mktemp("short-bert") / "model")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_cli_records_the_rule_and_reports_truncation_skips_and_gap(short_bert_dir, tmp_path):
    """A long text ended the command in a size-mismatch traceback and the summary said nothing of skipped rows
    or completeness; now the summary reports the max length and its source, truncations, skipped rows and
    the worst gap, run_config.json records the rule, and a --max-length beyond the positions is one line."""
    import json

    data = tmp_path / "d.csv"
    data.write_text(f"text,label\n{LONG},1\n12345,0\nthe movie was good,0\n", encoding="utf-8")
    out = tmp_path / "run"
    result = _cli(["attribute", "--model", short_bert_dir, "--dataset", data, "--method", "ig_embed",
                   "--param", "steps=1", "--output-dir", out, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert _line(result.output, "examples") == "2"
    assert _line(result.output, "max length") == "34 tokens (the model's limit)"
    assert _line(result.output, "inputs truncated").startswith("1 data row(s) longer than the max length")
    assert _line(result.output, "rows skipped").startswith("1 without content (no letters in text: 1)")
    gap = _line(result.output, "worst IG completeness gap")
    assert "relative (ig_embed, example '" in gap and float(gap.split()[0]) > 0
    config = json.loads((out / "run_config.json").read_text())
    assert (config["max_length_used"], config["position_limit"], config["tokenizer_limit"]) == (34, 34, 128)
    assert config["max_length_option"] is None
    again = _cli(["attribute", "--model", short_bert_dir, "--dataset", data, "--method", "ig_embed",
                  "--param", "steps=1", "--output-dir", out])  # the recorded rule is no reason to refuse a resume
    assert again.exit_code == 0, again.output
    # the report is per command: a command that truncates nothing and has no IG says nothing of either
    short = _cli(["attribute", "--model", short_bert_dir, "--text", "good", "--method", "raw",
                  "--output-dir", tmp_path / "short", "--no-cache"])
    assert short.exit_code == 0 and "inputs truncated" not in short.output and "completeness" not in short.output
    bad = _cli(["attribute", "--model", short_bert_dir, "--text", "good", "--max-length", "200",
                "--output-dir", tmp_path / "bad", "--no-cache"])
    assert bad.exit_code == 2 and "exceeds the 34 positions" in bad.output and len(bad.output.strip().splitlines()) == 1
    ok = _cli(["attribute", "--model", short_bert_dir, "--text", LONG, "--max-length", "20", "--method", "raw",
               "--output-dir", tmp_path / "ok", "--no-cache"])
    assert ok.exit_code == 0, ok.output
    assert _line(ok.output, "max length") == "20 tokens (--max-length)"
    assert json.loads((tmp_path / "ok" / "run_config.json").read_text())["max_length_used"] == 20
    from attrtools.types import Attribution

    assert Attribution.load(str(tmp_path / "ok" / "attributions" / "000000.safetensors")).n_tokens == 20


def test_every_tool_command_records_the_max_length_and_truncations(short_bert_dir, tmp_path):
    """tree, evaluate, prune and triggers on a dataset with one long row: each summary says what was
    truncated, and each run_config.json holds the max length used (--max-length where given)."""
    import json

    data = tmp_path / "d.csv"
    data.write_text(f"text,label\n{LONG},1\nthe movie was good,0\na dull film,1\n", encoding="utf-8")
    runs = {
        "tree": ["tree", "--steps", "1", "--formats", "json"],
        "evaluate": ["evaluate", "--methods", "grad_input", "--reference", "none", "--preset", "eraser"],
        "prune": ["prune", "--strategies", "attention", "--fractions", "0,0.5", "--latency-repeats", "1",
                  "--no-save-model", "--max-length", "30"],
        "triggers": ["triggers", "--steps", "1", "--num-train-examples", "3"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        result = _cli(args + ["--model", short_bert_dir, "--dataset", data, "--output-dir", out, "--no-cache"])
        assert result.exit_code == 0, (name, result.output)
        used = 30 if "--max-length" in args else 34
        assert json.loads((out / "run_config.json").read_text())["max_length_used"] == used, name
        assert _line(result.output, "max length").startswith(f"{used} tokens"), name
        assert _line(result.output, "inputs truncated").startswith("1 "), (name, result.output)


# ------------------------------------------------------------------------------ labels
def test_cli_label_names_conflict_shows_both_maps_before_anything_loads(nli_dir, tmp_path):
    """Every command reading a dataset maps its labels through the model's own map and shows both
    maps on a conflict, before the weights load or the run directory is written."""
    data = tmp_path / "nli.csv"
    data.write_text("premise,hypothesis,label\nthe movie,a film,entailment\n", encoding="utf-8")
    extra = {"audit": ["--recipes", "deepwordbug", "--no-triggers"], "demo": ["--train-dataset", str(data)]}
    checked = []
    for name, command in _commands():
        if "--dataset" not in {opt for param in command.params for opt in param.opts}:
            continue
        if name == "finetune":  # its --label-names name the classes of the new head (docs/datasets.md)
            continue
        if name == "audit":
            _textattack()
        out = tmp_path / name.replace(" ", "-")
        result = _cli(name.split() + ["--model", nli_dir, "--dataset", data, "--label-names",
                                      "entailment,neutral,contradiction", "--output-dir", out] + extra.get(name, []))
        assert result.exit_code != 0, (name, result.output)
        assert "{0: 'contradiction', 1: 'entailment', 2: 'neutral'}" in result.output, (name, result.output)
        assert not (out / "run_config.json").exists(), name  # the demo too: it reads its data first
        checked.append(name)
    assert {"attribute", "tree", "evaluate", "prune", "triggers", "audit", "demo"} <= set(checked)


def test_cli_maps_string_labels_through_the_models_own_label2id(tmp_path):
    """A dataset with string labels and a model whose id2label names them: every command reads the
    labels through the model's map (the config is read before the model loads)."""
    import json as _json

    from click.testing import CliRunner

    from attrtools.cli import main as cli
    from attrtools.testing import build_tiny_model
    from attrtools.types import Attribution

    model_dir = build_tiny_model("bert", str(tmp_path / "model"))
    config_path = os.path.join(model_dir, "config.json")
    with open(config_path) as f:
        config = _json.load(f)
    config["id2label"], config["label2id"] = {"0": "neg", "1": "pos"}, {"neg": 0, "pos": 1}
    with open(config_path, "w") as f:
        _json.dump(config, f)
    data = tmp_path / "data.csv"
    data.write_text("text,label\nthe movie was good,pos\na dull film,neg\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["attribute", "--model", model_dir, "--dataset", str(data), "--method", "raw",
                                      "--target", "gold", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    labels = [Attribution.load(str(out / "attributions" / f"{i:06d}.safetensors")).label for i in range(2)]
    assert labels == [1, 0]
    tree = CliRunner().invoke(cli, ["tree", "--model", model_dir, "--dataset", str(data), "--steps", "2",
                                    "--target", "gold", "--formats", "json", "--output-dir", str(tmp_path / "tree")])
    assert tree.exit_code == 0, tree.output


# ------------------------------------------------------------------------------ bad input, one line
def _bad_inputs(planted_dir, tmp_path):
    """(name, argv, exit code, text the line must contain) for each bad input the issue lists."""
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("text\tlabel\ncaf\xe9 au lait\t1\n".encode("latin-1"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine", "label": 1}\n{"text": "oops", "label": \n')
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "x", "label": 1}\n')
    (folder / "b.jsonl").write_text('{"text": "y", "label": 0}\n')
    good = _dataset(tmp_path / "good.jsonl", TEXTS[:2])
    three_classes = tmp_path / "labels.jsonl"
    three_classes.write_text('{"text": "alpha beta", "label": 0}\n{"text": "beta alpha", "label": 7}\n')
    out = lambda name: ["--output-dir", str(tmp_path / "runs" / name)]  # noqa: E731
    attr = ["attribute", "--model", planted_dir, "--method", "raw", "--no-cache"]
    return [
        ("device banana", [*attr, "--text", "a", "--device", "banana", *out("d1")], 2, "banana"),
        ("device cuda:7", [*attr, "--text", "a", "--device", "cuda:7", *out("d2")], 2, "cuda:7"),
        ("header-only csv", [*attr, "--dataset", str(header_only), *out("h")], 1, "header line but no rows"),
        ("non-UTF-8 tsv", [*attr, "--dataset", str(latin1), *out("u")], 1, "line 2, byte offset 14"),
        ("broken jsonl", [*attr, "--dataset", str(broken), *out("j")], 1, "line 2"),
        ("dataset folder", [*attr, "--dataset", str(folder), *out("f")], 1, "is a folder"),
        ("limit 0", [*attr, "--dataset", good, "--limit", "0", *out("l")], 2, "--limit must be at least 1"),
        ("tree threshold nan", ["tree", "--model", planted_dir, "--text", "alpha beta", "--threshold", "nan",
                                *out("t")], 2, "--threshold"),
        ("evaluate steps=0", ["evaluate", "--model", planted_dir, "--dataset", good, "--methods", "attattr",
                              "--param", "attattr:steps=0", *out("e")], 2, "'steps'"),
        ("triggers steps 0", ["triggers", "--model", planted_dir, "--dataset", good, "--steps", "0", *out("s")],
         2, "--steps must be at least 1"),
        ("triggers label 7", ["triggers", "--model", planted_dir, "--dataset", str(three_classes),
                              "--num-train-examples", "2", "--steps", "2", *out("lab")], 2, "label 7"),
        ("audit chunk-size 0", ["audit", "--model", planted_dir, "--dataset", good, "--no-triggers",
                                "--chunk-size", "0", *out("c")], 2, "--chunk-size must be at least 1"),
        ("internal_batch_size -1", [*attr[:-1], "--param", "internal_batch_size=-1", "--method", "attattr",
                                    "--text", "a", *out("i")], 2, "internal_batch_size"),
        ("steps abc", [*attr[:4], "attattr", "--param", "steps=abc", "--text", "a", *out("sa")], 2, "'steps'"),
        ("steps 1.5", [*attr[:4], "attattr", "--param", "steps=1.5", "--text", "a", *out("sb")], 2, "'steps'"),
        ("steps 0", [*attr[:4], "attattr", "--param", "steps=0", "--text", "a", *out("s0")], 2,
         "an integer from 1 to 100000"),
        ("cache clear without --yes", ["cache", "clear", "--cache-dir", str(tmp_path / "cache")], 2, "--yes"),
        ("target 5 of 2 classes", [*attr[:4], "gradsam", "--text", "a", "--target", "5", *out("tg")], 2,
         "target class 5 out of range for a 2-class model (classes 0–1)"),
        ("tree threshold 2", ["tree", "--model", planted_dir, "--text", "alpha beta", "--threshold", "2",
                              *out("t2")], 2, "--threshold must be a finite number in [0, 1]"),
    ]


def test_each_bad_input_is_one_line_with_its_exit_code(planted_dir, tmp_path):
    """Of 103 bad inputs tried, 57 got a clear error; the rest gave tracebacks, datasets' internal wording or
    silent results (``cache clear`` without --yes deleted everything when stdin was not a terminal); now
    each is one line with exit 2 (usage) or 1 (runtime)."""
    runner = CliRunner()
    store = AttributionCache(tmp_path / "cache")
    store.put("a" * 64, torch.ones(2), {})
    answered = []
    for name, argv, code, text in _bad_inputs(planted_dir, tmp_path):
        result = runner.invoke(cli, argv)  # CliRunner's stdin is not a terminal
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
        assert result.exit_code == code and _one_line(result.output) and text in result.output, (name, result.output)
        assert "Traceback" not in result.output
        answered.append(name)
    assert len(_entries(tmp_path / "cache")) == 1  # `cache clear` without --yes deleted nothing
    print(f"bad inputs answered with one line: {len(answered)}/{len(answered)}")


# ------------------------------------------------------------------------------ a full disk for outputs
def test_full_disk_for_outputs_stops_in_one_line_and_keeps_the_work(planted_dir, tmp_path, monkeypatch):
    """ENOSPC while writing outputs ended in a traceback; now one line naming the file, and the rerun takes
    the finished work from the cache."""
    import errno

    from attrtools.types import Attribution

    data = _dataset(tmp_path / "d.jsonl", TEXTS)
    original = Attribution.save
    saved = []

    def save(self, path):
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        saved.append(path)
        return original(self, path)

    monkeypatch.setattr(Attribution, "save", save)
    args = ["--cache-dir", str(tmp_path / "c")]
    result = _attribute(planted_dir, data, tmp_path / "run", *args)
    assert result.exit_code == 1 and _one_line(result.output), result.output
    assert "No space left on device" in result.output and "000002.safetensors" in result.output
    monkeypatch.setattr(Attribution, "save", original)  # space freed: the rerun takes everything from the cache
    again = _attribute(planted_dir, data, tmp_path / "run", *args)
    assert again.exit_code == 0 and re.search(r"from cache\s+6", again.output), again.output
