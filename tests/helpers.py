"""Plain helpers several test files share (fixtures live in conftest.py): running the CLI in-process,
reading its summary, writing small data files, the attack extra or a skip."""
import json
import os

import pytest


def run_cli(args):
    """``attrtools <args>`` in this process (click's CliRunner; each arg passed through ``str``),
    exceptions not caught: an unexpected one fails the test with its traceback."""
    from click.testing import CliRunner

    from attrtools.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def summary_line(output: str, key: str) -> str:
    """The value of summary line ``key`` (the summary pads keys to one width)."""
    for line in output.splitlines():
        if line.startswith(key + " ") or line == key:
            return line[len(key):].strip()
    raise AssertionError(f"no summary line {key!r} in:\n{output}")


def textattack_or_skip():
    """``textattack`` through attrtools' shims (``load_textattack``), or a skip of the calling test
    where the attack extra is not installed."""
    from attrtools.adversarial.textattack_compat import TextAttackUnavailable, load_textattack

    try:
        return load_textattack()
    except TextAttackUnavailable:
        pytest.skip("textattack (the attack extra) is not installed")


def write_tsv(path, rows, header=("sentence", "label")):
    """A tab-separated file at ``path`` (a ``pathlib.Path``): ``header``, then one line per row."""
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


# 84 words: longer than the 34-position tables of conftest's ``short_table`` models, shorter than 128
LONG = " ".join(["the movie was very good and the acting was fine but the plot was long"] * 6)

# Seven rows for the planted model: four good ones, one its ASCII-only tokenizer (conftest's ``ascii_dir``)
# keeps no token of, one without letters and one empty field.
MIXED = ('text,label\nalpha the movie beta,1\nλόγος,0\nbeta was alpha,0\n12345,1\n,0\n'
         'the alpha film was beta,1\nbeta good alpha,0\n')


def labelled_csv(tmp_path):
    """``tmp_path/labelled.csv``: three labelled rows for the planted model."""
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\nalpha the movie beta,1\nbeta was alpha,0\nthe film was good,1\n", encoding="utf-8")
    return path


# Six short texts for runs of `attribute` into a run directory (jsonl_dataset, attribute_run)
SIX_TEXTS = ["alpha the beta", "beta good alpha", "the movie was good", "a dull story", "fun music", "it is fine"]


def jsonl_dataset(path, texts):
    """A JSON Lines file at ``path`` (a ``pathlib.Path``), labels alternating 0, 1; its path as a str."""
    path.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts)))
    return str(path)


def attribute_run(model_dir, data, out, *extra):
    """``attrtools attribute --method raw`` on the dataset ``data`` into ``out`` (exceptions caught by
    CliRunner, as a user would see them: read ``exit_code`` and ``output``)."""
    from click.testing import CliRunner

    from attrtools.cli import main

    return CliRunner().invoke(main, ["attribute", "--model", model_dir, "--dataset", data, "--method", "raw",
                                     "--output-dir", str(out), *extra])


def cache_entries(directory):
    """The cache entries (``*.safetensors``, temporary files left out) under ``directory``, sorted."""
    out = []
    for dirpath, _, files in os.walk(directory):
        out += [os.path.join(dirpath, f) for f in files if f.endswith(".safetensors") and not f.startswith(".tmp-")]
    return sorted(out)


def one_line(output: str) -> bool:
    """Whether ``output`` holds exactly one non-blank line."""
    return len([line for line in output.strip().splitlines() if line.strip()]) == 1


def copy_model(src, dst):
    """A copy of the model folder ``src`` at ``dst`` (to damage); its path as a str."""
    import shutil

    shutil.copytree(src, dst)
    return str(dst)
