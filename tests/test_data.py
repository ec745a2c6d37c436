"""Loading data: hub specs (recorded ``load_dataset`` calls), local files and dataset folders,
headerless files, the one label rule of every command, rows without content skipped with their
reasons, the model-folder guard and ``finetune``. Offline: every file is generated here."""
import csv
import json
import os
import re

import pytest
from click.testing import CliRunner

import attrtools
from attrtools.cli import main
from attrtools.data import DataError, load_examples, parse_spec
from attrtools.labels import LabelError, check_gold_labels, infer_num_classes, parse_label
from attrtools.types import Example

from helpers import MIXED
from helpers import run_cli as _cli
from helpers import summary_line as _line
from helpers import write_tsv as _write_tsv


def test_glue_style_tsv_loads_through_datasets(tmp_path):
    """A GLUE-style tsv (sentence/label, a leading quote kept as text) read as written."""
    rows = [("it 's a charming and often affecting journey . ", 1), ('"unflinchingly bleak', 0), ("fun", 1)]
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    examples = load_examples(str(path))
    assert [(e.text, e.label) for e in examples] == rows
    assert all(e.text_pair is None for e in examples)


def test_generated_sentiment_data_matches_its_generator(tmp_path):
    """data/ holds exactly what scripts/make_sentiment_data.py writes (no hand-edited data)."""
    from attrtools.sentiment_data import write_dataset

    paths = write_dataset(str(tmp_path))
    repo_data = os.path.join(os.path.dirname(__file__), "..", "data")
    for split in ("train", "dev"):
        with open(paths[split]) as fresh, open(os.path.join(repo_data, f"sentiment_{split}.tsv")) as committed:
            assert fresh.read() == committed.read()
    assert len(load_examples(paths["dev"])) == 400


# ------------------------------------------------------------------------------------ data specs
@pytest.mark.parametrize("spec, expected", [
    ("stanfordnlp/sst2:validation", ("stanfordnlp/sst2", None, "validation")),
    ("SetFit/sst2:test", ("SetFit/sst2", None, "test")),
    ("nyu-mll/glue:sst2:validation", ("nyu-mll/glue", "sst2", "validation")),
    ("stanfordnlp/imdb:test", ("stanfordnlp/imdb", None, "test")),
    ("glue/sst2:validation", ("glue", "sst2", "validation")),  # legacy: dataset/config
    ("super_glue/boolq:train", ("super_glue", "boolq", "train")),
    ("imdb:test", ("imdb", None, "test")),
    ("imdb", ("imdb", None, None)),
    ("glue:mnli:validation_matched", ("glue", "mnli", "validation_matched")),
    ("owner/name/config:train", ("owner/name", "config", "train")),
    ("glue^sst2^validation", ("glue", "sst2", "validation")),  # TextAttack's --dataset-from-huggingface
    ("https://huggingface.co/datasets/stanfordnlp/imdb:test", ("stanfordnlp/imdb", None, "test")),
    ("hf://datasets/nyu-mll/glue:sst2:validation", ("nyu-mll/glue", "sst2", "validation")),
])
def test_parse_spec_grammar(spec, expected):
    assert parse_spec(spec) == expected


def test_parse_spec_explicit_config_and_split():
    assert parse_spec("nyu-mll/glue", "sst2", "validation") == ("nyu-mll/glue", "sst2", "validation")
    assert parse_spec("SetFit/sst2", split="test") == ("SetFit/sst2", None, "test")
    assert parse_spec("nyu-mll/glue:sst2:validation", "sst2", "validation") == ("nyu-mll/glue", "sst2", "validation")
    with pytest.raises(DataError, match="names the split 'validation' but --dataset-split is 'test'"):
        parse_spec("imdb:validation", split="test")
    with pytest.raises(DataError, match="names a config twice"):
        parse_spec("glue/sst2:cola:validation")
    with pytest.raises(DataError, match="name:config:split"):
        parse_spec("a:b:c:d")
    with pytest.raises(DataError, match="needs all three parts"):
        parse_spec("imdb^test")  # TextAttack reads this as subset 'test': refused, not guessed


@pytest.fixture
def recorded_load(monkeypatch):
    """``datasets.load_dataset`` replaced by a recorder returning a two-row dataset."""
    import datasets

    calls = []

    def fake(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("split")))
        return datasets.Dataset.from_dict({"sentence": ["a good film", "a bad film"], "label": [1, 0]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    return calls


@pytest.mark.parametrize("spec, kwargs, call", [
    ("stanfordnlp/sst2:validation", {}, ("stanfordnlp/sst2", None, "validation")),
    ("SetFit/sst2:test", {}, ("SetFit/sst2", None, "test")),
    ("nyu-mll/glue:sst2:validation", {}, ("nyu-mll/glue", "sst2", "validation")),
    ("stanfordnlp/imdb:test", {}, ("stanfordnlp/imdb", None, "test")),
    ("glue/sst2:validation", {}, ("glue", "sst2", "validation")),
    ("imdb:test", {}, ("imdb", None, "test")),
    ("imdb", {}, ("imdb", None, "validation")),
    ("nyu-mll/glue", {"dataset_config": "sst2", "dataset_split": "train"}, ("nyu-mll/glue", "sst2", "train")),
])
def test_hub_specs_load_the_named_repository(recorded_load, spec, kwargs, call):
    examples = load_examples(spec, **kwargs)
    assert recorded_load == [call]
    assert [(e.text, e.label) for e in examples] == [("a good film", 1), ("a bad film", 0)]


def test_cli_dataset_config_and_split_reach_load_dataset(recorded_load, planted_dir):
    from attrtools.cli_kit import load_examples_or_fail

    evaluate = main.get_command(None, "evaluate")
    ctx = evaluate.make_context("evaluate", ["--model", planted_dir, "--dataset", "nyu-mll/glue", "--dataset-subset",
                                             "sst2", "--dataset-split", "train"])
    with ctx:
        examples = load_examples_or_fail("nyu-mll/glue", model=planted_dir)
    assert recorded_load == [("nyu-mll/glue", "sst2", "train")]
    assert len(examples) == 2


def _parquet_folder(root):
    import datasets

    folder = root / "sst2-local"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"sentence": ["good fun", "dull plot", "fine acting"], "label": [1, 0, 1]}).to_parquet(
        str(folder / "data" / "validation-00000-of-00001.parquet"))
    datasets.Dataset.from_dict({"sentence": ["train one", "train two"], "label": [0, 1]}).to_parquet(
        str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def test_local_parquet_folder_loads_through_the_same_path(tmp_path):
    folder = _parquet_folder(tmp_path)
    assert [e.text for e in load_examples(str(folder))] == ["good fun", "dull plot", "fine acting"]  # validation
    assert [e.label for e in load_examples(f"{folder}:train")] == [0, 1]
    assert [e.text for e in load_examples(str(folder), dataset_split="train")] == ["train one", "train two"]
    with pytest.raises(DataError, match="test"):
        load_examples(f"{folder}:test")


def test_a_missing_local_dataset_path_is_not_a_hub_id(tmp_path, monkeypatch, recorded_load):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for spec in ("./data/sst2:train", "data/sst2", "data/sst2/cfg:validation", str(tmp_path / "gone:test")):
        with pytest.raises(DataError, match="no such file or folder"):
            load_examples(spec)
    assert recorded_load == []


def test_a_folder_of_jsonl_files_is_still_refused(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "x", "label": 1}\n')
    with pytest.raises(DataError, match="is a folder"):
        load_examples(str(folder))


# ------------------------------------------------------------------------------- headerless files
AG_ROWS = [("3", "Wall St. Bears Claw Back Into the Black", "Reuters - Short-sellers are seeing green again."),
           ("1", "Fears for T N pension after talks", "Unions representing workers at Turner Newall say"),
           ("4", "The Race is On", "SPACE.com - TORONTO, Canada -- A second team of rocketeers"),
           ("2", "Ky. Company Wins Grant", "Louisville, Ky. - A company founded by a chemistry researcher")]


def _ag_news(path, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter, quoting=csv.QUOTE_ALL if delimiter == "," else csv.QUOTE_NONE).writerows(
            AG_ROWS)
    return str(path)


def test_headerless_csv_reads_with_numbered_columns(tmp_path):
    path = _ag_news(tmp_path / "test.csv")
    examples = load_examples(path, no_header=True, text_column="3", pair_column=2, label_column="1",
                             one_based_labels=True)
    assert [e.label for e in examples] == [2, 0, 3, 1]
    assert [e.text for e in examples] == [row[2] for row in AG_ROWS]
    assert [e.text_pair for e in examples] == [row[1] for row in AG_ROWS]
    tsv = load_examples(_ag_news(tmp_path / "test.tsv", "\t"), no_header=True, text_column=2, label_column=1)
    assert [e.label for e in tsv] == [3, 1, 4, 2] and tsv[0].text == AG_ROWS[0][1]


def test_headerless_errors_name_the_numbering(tmp_path):
    path = _ag_news(tmp_path / "test.csv")
    with pytest.raises(DataError, match="numbered 1..3"):
        load_examples(path, no_header=True, text_column="0")
    with pytest.raises(DataError, match="a column number"):
        load_examples(path, no_header=True)
    (tmp_path / "x.jsonl").write_text('{"text": "a b"}\n')
    with pytest.raises(DataError, match="--no-header/--column-names apply to"):
        load_examples(str(tmp_path / "x.jsonl"), no_header=True)


def test_a_header_that_looks_like_data_hints_at_no_header(tmp_path):
    path = _ag_news(tmp_path / "test.csv")
    with pytest.raises(DataError, match=r"looks like a data row: .*--no-header"):
        load_examples(path)
    with pytest.raises(DataError, match=r"--no-header"):
        load_examples(path, text_column="title")
    named = tmp_path / "named.csv"
    named.write_text("headline,body\nx,y\n")
    with pytest.raises(DataError) as err:
        load_examples(str(named))
    assert "--no-header" not in str(err.value)  # a real header gets no such hint


# ------------------------------------------------------------------------------- the label rule
def test_parse_label_cases():
    assert parse_label("2") == 2 and parse_label(2.0) == 2 and parse_label(" 3 ") == 3 and parse_label("1.0") == 1
    with pytest.raises(LabelError):
        parse_label("1.5")
    assert parse_label(-1) is None and parse_label("-1") is None and parse_label("") is None
    assert parse_label("Positive", ["negative", "positive"]) == 1
    assert parse_label(4, one_based=True) == 3 and parse_label("1", one_based=True) == 0
    with pytest.raises(LabelError, match="label 0 in labels declared 1-based"):
        parse_label(0, one_based=True)
    with pytest.raises(LabelError, match="--label-names"):
        parse_label("spam")


def _examples(labels):
    return [Example(f"text number {i}", None, label, str(i)) for i, label in enumerate(labels)]


def test_one_based_labels_are_named_with_the_fix():
    with pytest.raises(LabelError, match=r"run 1..4 .*row 3 has label 4.*0..3.*1-based.*--one-based-labels"):
        check_gold_labels(_examples([1, 2, 4, 3]), 4)
    with pytest.raises(LabelError, match="row 2 has label 7, but the model has 4 classes") as err:
        check_gold_labels(_examples([0, 7, 1]), 4)
    assert "1-based" not in str(err.value)
    with pytest.raises(LabelError, match="--one-based-labels"):
        infer_num_classes(_examples([1, 2, 3, 4]))
    assert infer_num_classes(_examples([0, 2, 1])) == 3
    assert infer_num_classes(_examples([1, 2]), names=["a", "b", "c"]) == 3


def test_unlabeled_rows_are_skipped_with_their_reason_when_labels_are_needed(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("sentence\tlabel\ngood film\t1\nunknown one\t-1\nbad film\t0\nempty label\t\n")
    examples = load_examples(str(path))
    assert [e.label for e in examples] == [1, None, 0, None]
    assert [e.label for e in check_gold_labels(examples, 2)] == [1, None, 0, None]  # not needed: kept
    kept = check_gold_labels(examples, 2, need=True)
    assert [e.text for e in kept] == ["good film", "bad film"]
    assert [(s["row"], s["reason"]) for s in kept.skipped] == [(2, "unlabeled row (label -1 or empty)"),
                                                               (4, "unlabeled row (label -1 or empty)")]
    assert kept.rows == [0, 2]
    only = tmp_path / "glue_test.tsv"
    only.write_text("sentence\tlabel\na\t-1\nb\t-1\n")
    with pytest.raises(LabelError, match="none of the 2 rows has a gold label"):
        check_gold_labels(load_examples(str(only)), 2, need=True)
    nolabel = tmp_path / "nolabel.tsv"
    nolabel.write_text("sentence\tidx\na b\t1\n")
    with pytest.raises(LabelError, match=r"no label column found among the columns \['sentence', 'idx'\]"):
        check_gold_labels(load_examples(str(nolabel)), 2, need=True)


def test_swapped_columns_are_named(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\nthe movie was good\t1\na dull story\t0\n")
    with pytest.raises(LabelError, match="--text-column and --label-column look swapped") as err:
        load_examples(str(path), text_column="label", label_column="text")
    assert "--label-names" not in str(err.value)
    named = tmp_path / "n.tsv"
    named.write_text("review\tsentiment\nthe movie was good\tpositive\na dull story\tnegative\n")
    with pytest.raises(LabelError, match="look swapped"):
        load_examples(str(named), text_column="sentiment", label_column="review", label_names=["negative", "positive"])


def _one_based(tmp_path):
    path = tmp_path / "ag.jsonl"
    path.write_text("".join(json.dumps({"text": f"alpha beta {w}", "label": l}) + "\n"
                            for w, l in [("the", 1), ("good", 2), ("film", 2)]))
    return str(path)


@pytest.mark.parametrize("command", [["evaluate", "--methods", "raw"], ["prune"], ["tree"],
                                     ["attribute", "--method", "raw", "--target", "gold"]])
def test_every_command_refuses_one_based_labels_alike(planted_dir, tmp_path, command):
    result = CliRunner().invoke(main, [command[0], "--model", planted_dir, "--dataset", _one_based(tmp_path),
                                       *command[1:], "--no-cache", "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "Error: --dataset: the labels run 1..2 and row 2 has label 2, but the model's 2 classes are 0..1" \
        in result.output
    assert "--one-based-labels" in result.output


def test_evaluate_reads_one_based_labels_with_the_option(planted_dir, tmp_path):
    from attrtools.cli_kit import load_examples_or_fail

    evaluate = main.get_command(None, "evaluate")
    args = ["--model", planted_dir, "--dataset", _one_based(tmp_path), "--one-based-labels"]
    with evaluate.make_context("evaluate", args):
        examples = load_examples_or_fail(_one_based(tmp_path), model=planted_dir)
    assert [e.label for e in examples] == [0, 1, 1]


# --------------------------------------------------------------------------------- model folders
def test_a_missing_local_model_folder_is_said_before_any_hub_lookup(tmp_path, monkeypatch):
    import transformers

    import attrtools
    from attrtools.guard import ModelFolderError, missing_local_folder

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "minilm-sst2").mkdir(parents=True)
    for name in ("models/minilm-sst3", "./models/x", "../nowhere/model", str(tmp_path / "absent"), "a/b/c"):
        with pytest.raises(ModelFolderError, match=f"no such folder: {name}"):
            attrtools.load_model(name)
    assert "did you mean models/minilm-sst2" in missing_local_folder("models/minilm-sst3")
    assert missing_local_folder("owner/model") is None and missing_local_folder("bert-base-uncased") is None
    result = CliRunner().invoke(main, ["attribute", "--model", "models/minilm-sst3", "--text", "a", "--no-cache",
                                       "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Error: cannot load model: no such folder: models/minilm-sst3" in result.output
    assert "couldn't connect" not in result.output and "Repo id" not in result.output


# ------------------------------------------------------------------------------------ finetune
def _write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows(rows)
    return str(path)


def test_finetune_command_writes_a_model_every_command_takes(tmp_path):
    import attrtools
    from attrtools.testing import build_tiny_model, planted_dataset
    from attrtools.training import accuracy

    base = build_tiny_model("bert", str(tmp_path / "base"))
    rows = planted_dataset(40, seed=3)
    train = _write_rows(tmp_path / "train.csv", [(label + 1, text) for text, label in rows[:32]])
    dev = _write_rows(tmp_path / "dev.csv", [(label + 1, text) for text, label in rows[32:]])
    out = tmp_path / "model"
    args = ["finetune", "--model", base, "--dataset", train, "--eval-dataset", dev, "--no-header", "--text-column",
            "2", "--label-column", "1", "--batch-size", "8", "--output-dir", str(out)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "--one-based-labels" in refused.output and not out.exists()
    args += ["--label-names", "negative,positive"]
    result = CliRunner().invoke(main, args + ["--one-based-labels"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "training.json").read_text())
    assert report["train_examples"] == 32 and report["num_labels"] == 2 and report["steps"] == 4
    assert report["estimated_seconds"] > 0
    model, tokenizer = attrtools.load_model(str(out))
    assert model.config.id2label == {0: "negative", 1: "positive"}
    gold = [Example(text, None, label) for text, label in rows[32:]]
    assert report["dev_accuracy"] == pytest.approx(accuracy(model, tokenizer, gold, max_length=128))
    assert re.search(rf"dev accuracy +{report['dev_accuracy']:.4f} \(8 examples\)", result.output)
    again = CliRunner().invoke(main, args + ["--one-based-labels"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    used = CliRunner().invoke(main, ["attribute", "--model", str(out), "--text", "alpha beta good", "--method", "raw",
                                     "--no-cache", "--output-dir", str(tmp_path / "run")])
    assert used.exit_code == 0, used.output


def test_prune_skips_unlabeled_rows_with_their_reason(planted_dir, tmp_path):
    """GLUE's test convention (-1 = no label) in part of the rows: prune runs on the labelled rows and
    counts the others as skipped, instead of claiming there is no label column."""
    from attrtools.testing import planted_dataset

    rows = planted_dataset(8, seed=12)
    data = tmp_path / "dev.csv"
    data.write_text("text,label\n" + "".join(f"{t},{l if i % 3 else -1}\n" for i, (t, l) in enumerate(rows)))
    result = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data), "--label-column",
                                       "label", "--steps", "2", "--strategies", "random", "--fractions", "0,0.5",
                                       "--prune-fraction", "0.5", "--latency-repeats", "1", "--no-save-model",
                                       "--no-cache", "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "head importance on 5 examples" in result.output
    assert re.search(r"rows skipped +3 \(unlabeled row: 3\)", result.output)
    assert "no label column" not in result.output


def test_more_files_as_they_come(tmp_path):
    import datasets

    single = tmp_path / "dev.parquet"
    datasets.Dataset.from_dict({"text": ["good fun", "dull plot"], "label": [1, 0]}).to_parquet(str(single))
    assert [(e.text, e.label) for e in load_examples(str(single))] == [("good fun", 1), ("dull plot", 0)]
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"sentence": ["a film"], "label": [-1]}),
                          "validation": datasets.Dataset.from_dict({"sentence": ["b film", "c film"],
                                                                    "label": [0, 1]})}).save_to_disk(str(saved))
    assert [e.text for e in load_examples(str(saved))] == ["b film", "c film"]
    assert [e.label for e in load_examples(f"{saved}:test")] == [None]
    same = tmp_path / "same.tsv"
    same.write_text("text\tlabel\nthe movie was good\t1\n")
    with pytest.raises(DataError, match="'text' would be both the text and the label column: name the text column "
                                        "with --text-column"):
        load_examples(str(same), label_column="text")
    with pytest.raises(DataError, match="name the label column with --label-column"):
        load_examples(str(same), text_column="label")
    with pytest.raises(DataError, match="--text-column and --label-column name the same column"):
        load_examples(str(same), text_column="text", label_column="text")
    with pytest.raises(LabelError, match="drop --no-header"):
        load_examples(str(same), no_header=True, text_column=1, label_column=2)
    with pytest.raises(DataError, match="apply to hub datasets and dataset folders"):
        load_examples(str(same), dataset_split="test")
    nan = tmp_path / "nan.csv"
    nan.write_text("text,label\ngood film,1.0\nno label here,\nbad film,0.0\n")
    assert [e.label for e in load_examples(str(nan))] == [1, None, 0]


def test_labels_one_short_of_the_classes_warn_as_maybe_one_based():
    with pytest.warns(UserWarning, match="no row has label 0 and the labels run 1..3 for a 4-class model"):
        check_gold_labels(_examples([1, 2, 3] * 3), 4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_gold_labels(_examples([0, 1, 2, 3] * 3), 4)


def test_a_missing_hub_id_says_no_such_folder_either(monkeypatch):
    import attrtools
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(ValueError, match="someone/model: no such folder here, and the hub gave no model"):
        attrtools.load_model("someone/model")


def test_finetune_string_labels_name_the_classes(tmp_path):
    import attrtools
    from attrtools.testing import build_tiny_model, planted_dataset

    base = build_tiny_model("bert", str(tmp_path / "base"))
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": ["neg", "pos"][l]}) + "\n"
                            for t, l in planted_dataset(8, seed=5)) + json.dumps({"text": "alpha beta", "label": -1})
                    + "\n")
    result = CliRunner().invoke(main, ["finetune", "--model", base, "--dataset", str(data), "--batch-size", "4",
                                       "--output-dir", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    model, _ = attrtools.load_model(str(tmp_path / "m"))
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert json.loads((tmp_path / "m" / "training.json").read_text())["train_examples"] == 8  # the -1 row left out


def test_attribute_target_gold_leaves_unlabeled_rows_out(planted_dir, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nalpha beta good,1\nbeta alpha film,-1\nalpha the beta,0\n")
    result = CliRunner().invoke(main, ["attribute", "--model", planted_dir, "--dataset", str(data), "--method", "raw",
                                       "--target", "gold", "--no-cache", "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert re.search(r"rows skipped +1 \(unlabeled row: 1\)", result.output)


def test_headerless_columns_by_name(tmp_path, planted_dir):
    path = _ag_news(tmp_path / "test.csv")
    examples = load_examples(path, column_names="label,title,description", text_column="description",
                             label_column="label", one_based_labels=True)
    assert [(e.text, e.label) for e in examples] == [(row[2], int(row[0]) - 1) for row in AG_ROWS]
    with pytest.raises(DataError, match="gives 2 names"):
        load_examples(path, column_names=["label", "title"])
    from attrtools.cli_kit import load_examples_or_fail

    tree = main.get_command(None, "tree")
    with tree.make_context("tree", ["--model", planted_dir, "--dataset", path, "--column-names", "label,title,body"]):
        rows = load_examples_or_fail(path, text_column="title", label_column="label")
    assert [e.text for e in rows] == [row[1] for row in AG_ROWS] and [e.label for e in rows] == [3, 1, 4, 2]


# ----------------------------------------------------------------- progress bars, rows as users count them
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


# --------------------------------------------------------------------- rows without content, string labels
def test_rows_without_content_are_skipped_with_reasons(tmp_path):
    """A row of digits, punctuation, an emoji, spaces or an empty field aborted a dataset run or was averaged
    in as zeros; now such rows are skipped with a recorded reason and the totals add up."""
    from attrtools.data import ExampleList, content_problem, keep_content, load_examples

    E = attrtools.Example
    assert content_problem(E("12345")).startswith("no letters in text")
    assert content_problem(E("...")).startswith("no letters")
    assert content_problem(E("\U0001F600 \U0001F44D")).startswith("no letters")
    assert content_problem(E("   ")) == "whitespace-only text"
    assert content_problem(E("")) == "empty text"
    assert content_problem(E("a premise", "")) == "empty text_pair"
    assert content_problem(E("ok", "fine")) is None and content_problem(E("très bien")) is None
    kept = keep_content([E("12345", id="a"), "the movie", E("  ", id="c")])
    assert isinstance(kept, ExampleList) and [e.text for e in kept] == ["the movie"]
    assert [(r["index"], r["id"]) for r in kept.skipped] == [(0, "a"), (2, "c")] and kept.total == 3
    csv = tmp_path / "rows.csv"
    csv.write_text('text,label\n12345,0\n"   ",1\n,0\nthe movie was good,1\n...,0\n', encoding="utf-8")
    rows = load_examples(str(csv))
    assert [e.text for e in rows] == ["the movie was good"] and rows[0].label == 1
    assert [r["index"] for r in rows.skipped] == [0, 1, 2, 4] and rows.total == 5
    assert rows.skipped_summary() == "4 (no letters in text: 2, whitespace-only text: 1, empty text: 1)"


def test_string_labels_map_through_the_models_label2id(nli_dir, tmp_path):
    """String labels were not mapped through the model's label2id, and --label-names was used silently against
    the model's own map; now labels map through a non-generic label2id and a conflict shows both maps."""
    from transformers import AutoConfig

    from attrtools.data import DataError, label_names_for, load_examples

    config = AutoConfig.from_pretrained(nli_dir)
    data = tmp_path / "nli.csv"
    data.write_text("premise,hypothesis,label\nthe movie,a film,entailment\nthe plot,the story,neutral\n"
                    "good,bad,contradiction\n", encoding="utf-8")
    rows = load_examples(str(data), model_config=config)
    assert [e.label for e in rows] == [1, 2, 0] and rows[0].text_pair == "a film"
    with pytest.raises(DataError) as err:
        load_examples(str(data), model_config=config, label_names="entailment,neutral,contradiction")
    message = str(err.value)
    assert "{0: 'entailment', 1: 'neutral', 2: 'contradiction'}" in message
    assert "{0: 'contradiction', 1: 'entailment', 2: 'neutral'}" in message
    assert [e.label for e in load_examples(str(data), model_config=config,
                                           label_names="contradiction,entailment,neutral")] == [1, 2, 0]
    # A generic map (LABEL_0...) defers to --label-names; without either, string labels are an error.
    generic = AutoConfig.for_model("bert", num_labels=3)
    assert label_names_for(None, generic) is None
    assert [e.label for e in load_examples(str(data), model_config=generic,
                                           label_names="entailment,neutral,contradiction")] == [0, 1, 2]
    with pytest.raises(DataError, match="known label name"):
        load_examples(str(data), model_config=generic)
    with pytest.raises(DataError, match="3-class model"):
        label_names_for("a,b", generic)


def test_rows_the_tokenizer_keeps_nothing_of_are_skipped_not_fatal(ascii_dir, tmp_path):
    """A row with letters of which the tokenizer keeps no token ('λόγος' here; a decoder's word-level
    vocabulary in the new-user trial) is skipped with its reason by every tool, like an empty row."""
    from attrtools.data import keep_content, token_problem
    from attrtools.evaluate.run import evaluate_methods

    model, tok = attrtools.load_model(ascii_dir)
    E = attrtools.Example
    assert token_problem(E("λόγος"), tok).startswith("no tokens in text")
    assert token_problem(E("alpha", "λόγος"), tok).startswith("no tokens in text_pair")
    assert token_problem(E("alpha zzz"), tok) is None  # an unknown word is [UNK]: content
    rows = [E("alpha the movie beta", label=1, id="a"), E("λόγος", label=0, id="greek"), E("beta alpha", label=0, id="b")]
    kept = keep_content(rows, tok)
    assert [e.id for e in kept] == ["a", "b"] and kept.skipped[0]["id"] == "greek" and kept.total == 3
    assert keep_content(rows) == rows  # without the tokenizer, letters are content
    evaluation = evaluate_methods(model, tok, rows, ["grad_input"], reference=None, preset="eraser")
    assert evaluation.n_examples == 2 and [r["id"] for r in evaluation.skipped_rows] == ["greek"]
    # Rows are named by their row in the file, also when an earlier rule left rows before them out.
    from attrtools.data import load_examples

    data = tmp_path / "order.csv"
    data.write_text("text,label\n12345,1\n,0\nalpha the movie beta,1\nλόγος,0\nbeta was alpha,0\n", encoding="utf-8")
    loaded = load_examples(str(data))
    assert loaded.rows == [2, 3, 4] and loaded[1:].rows == [3, 4]
    checked = keep_content(loaded, tok)
    assert [(r["index"], r["reason"].split(" (")[0]) for r in checked.skipped] == [
        (0, "no letters in text"), (1, "empty text"), (3, "no tokens in text")]
    assert checked.rows == [2, 4] and [r["index"] for r in keep_content(loaded[1:], tok).skipped] == [3]
    evaluation = evaluate_methods(model, tok, loaded, ["grad_input"], reference=None, preset="eraser")
    assert any("row 4 (no tokens in text" in note for note in evaluation.notes), evaluation.notes  # 1-based


def test_dataset_commands_skip_rows_without_tokens_end_to_end(ascii_dir, tmp_path):
    """evaluate, prune, attribute, tree and triggers on a dataset mixing good rows, a row the tokenizer
    keeps nothing of, a row without letters and an empty field: all run, each summary counts the
    three skipped rows with their reasons, and the results hold the four good rows only."""
    import csv
    import json

    data = tmp_path / "mixed.csv"
    data.write_text(MIXED, encoding="utf-8")
    runs = {
        "evaluate": ["evaluate", "--methods", "grad_input", "--reference", "none", "--preset", "eraser"],
        "prune": ["prune", "--strategies", "attention", "--fractions", "0,0.5", "--latency-repeats", "1",
                  "--no-save-model"],
        "attribute": ["attribute", "--method", "raw"],
        "tree": ["tree", "--steps", "1", "--formats", "json"],
        "triggers": ["triggers", "--steps", "1", "--num-train-examples", "4"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        result = _cli(args + ["--model", ascii_dir, "--dataset", data, "--output-dir", out, "--no-cache"])
        assert result.exit_code == 0, (name, result.output)
        skipped = _line(result.output, "rows skipped")
        assert skipped.startswith("3 without content") and "no tokens in text: 1" in skipped, (name, skipped)
        assert "no letters in text: 1" in skipped and "empty text: 1" in skipped, (name, skipped)
    with open(tmp_path / "evaluate" / "per_example.csv", encoding="utf-8") as f:
        assert {row["example"] for row in csv.DictReader(f)} == {"0", "2", "5", "6"}
    summary = json.loads((tmp_path / "prune" / "summary.json").read_text())
    assert summary["eval_examples"] == 4 and len(summary["skipped_rows"]) == 3
    page = (tmp_path / "prune" / "report.html").read_text(encoding="utf-8")
    assert "rows skipped" in page and "3 (" in page and "no tokens in text: 1" in page
    assert len(os.listdir(tmp_path / "attribute" / "attributions")) == 4
    assert len([f for f in os.listdir(tmp_path / "tree" / "trees") if f.endswith(".json")]) == 4
