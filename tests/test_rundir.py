"""Run directories that never mix runs (``attrtools.rundir``): the same run resumes (after a SIGKILL
too), another is refused or replaces it whole with ``--overwrite``, a second writer is refused, a
folder attrtools did not make is never emptied, an unwritable one fails before the model loads."""
import json
import os
import re

import pytest
from click.testing import CliRunner

from attrtools.cache import AttributionCache
from attrtools.cli import main as cli

from helpers import SIX_TEXTS as TEXTS
from helpers import attribute_run as _attribute
from helpers import cache_entries as _entries
from helpers import copy_model as _copy_model
from helpers import jsonl_dataset as _dataset
from helpers import one_line as _one_line


# ------------------------------------------------------------------------ a folder holding only its config
def test_a_run_dir_holding_only_its_config_is_taken_over_by_another_run(tmp_path):
    """A run that stopped before writing any output (an option refused once the model had loaded)
    leaves only run_config.json: another configuration takes the folder without --overwrite. A
    folder with outputs is still refused."""
    import json

    from attrtools import rundir

    path = str(tmp_path / "run")
    rundir.prepare(path, "evaluate", {"operator": "mask"}).close()
    run = rundir.prepare(path, "evaluate", {"operator": "pad"})
    assert not run.resumed and json.loads(open(os.path.join(path, "run_config.json")).read())["operator"] == "pad"
    with open(os.path.join(path, "faithfulness.csv"), "w") as f:
        f.write("method\n")
    run.close()
    with pytest.raises(rundir.RunDirMismatch, match="operator"):
        rundir.prepare(path, "evaluate", {"operator": "delete"})
    assert os.path.exists(os.path.join(path, "faithfulness.csv"))


# ------------------------------------------------------------------------------ another run
def test_rerun_with_other_rows_is_refused_or_overwritten_never_mixed(planted_dir, tmp_path):
    """Rerunning attribute into the same --output-dir with 20 rows after 60 left 40 stale files beside the new
    20; now the same run resumes, another is refused in one line or replaces the folder whole with
    --overwrite, and the run's lock is released at the end."""
    out = tmp_path / "run"
    assert _attribute(planted_dir, _dataset(tmp_path / "six.jsonl", TEXTS), out).exit_code == 0
    assert len(os.listdir(out / "attributions")) == 6
    again = _attribute(planted_dir, _dataset(tmp_path / "six.jsonl", TEXTS), out)  # same run: resumes
    assert again.exit_code == 0 and len(os.listdir(out / "attributions")) == 6, again.output
    two = _dataset(tmp_path / "two.jsonl", TEXTS[:2])
    refused = _attribute(planted_dir, two, out)
    assert refused.exit_code == 2 and _one_line(refused.output), refused.output
    assert "--overwrite" in refused.output and "dataset" in refused.output
    assert len(os.listdir(out / "attributions")) == 6  # nothing touched
    replaced = _attribute(planted_dir, two, out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sorted(os.listdir(out / "attributions")) == ["000000.safetensors", "000001.safetensors"]
    stored = json.load(open(out / "run_config.json"))
    assert stored["n"] == 2 and stored["dataset"] == two
    from attrtools import locks

    assert locks.owner(str(out / ".attrtools-run.lock")) == {}  # released when the command ended
    locks.release(locks.acquire(str(out / ".attrtools-run.lock"), wait=False))  # ... so another run may take it


def test_rerun_with_another_model_is_refused(planted_dir, tiny_dirs, tmp_path):
    """The audit case: the same folder with another model must not report the first model's numbers."""
    out = tmp_path / "run"
    data = _dataset(tmp_path / "d.jsonl", TEXTS[:2])
    assert _attribute(planted_dir, data, out).exit_code == 0
    other = _attribute(tiny_dirs["bert"], data, out)
    assert other.exit_code == 2 and "model" in other.output and _one_line(other.output), other.output
    retrained = _copy_model(planted_dir, tmp_path / "model")
    out2 = tmp_path / "run2"
    assert _attribute(retrained, data, out2).exit_code == 0
    from safetensors.torch import load_file, save_file

    weights = os.path.join(retrained, "model.safetensors")
    state = load_file(weights)
    state["classifier.bias"] = state["classifier.bias"] + 1.0
    save_file(state, weights, metadata={"format": "pt"})  # same path, new weights
    changed = _attribute(retrained, data, out2)
    assert changed.exit_code == 2 and "model_identity" in changed.output, changed.output


def test_audit_rerun_with_another_model_is_refused(planted_dir, tiny_dirs, tmp_path):
    """An audit rerun into the same folder with another model attacked nothing and reported the first model's
    numbers; now the run directory refuses it, naming model and model_identity."""
    from attrtools.commands.common import BadUsage, make_run_dir

    out = str(tmp_path / "audit")
    config = {"model": planted_dir, "dataset": "dev.tsv", "recipes": ["triggers"], "num_examples": 10}
    import click

    with click.Context(click.Command("audit")):  # the lock is released when the command's context closes
        make_run_dir(out, "audit", config)
    with click.Context(click.Command("audit")):
        make_run_dir(out, "audit", config)  # same configuration: resumes
    with open(os.path.join(out, "results.csv"), "w") as f:  # the first model's results (a folder holding only
        f.write("recipe,example_index\n")                  # run_config.json has none to mix, and is taken over)
    with click.Context(click.Command("audit")), pytest.raises(BadUsage, match="differs in: model, model_identity"):
        make_run_dir(out, "audit", dict(config, model=tiny_dirs["bert"]))


# ------------------------------------------------------------------------------ writers and folders
LOCK_HOLDER = """
import sys, time
from attrtools import rundir
run = rundir.prepare(sys.argv[1], "attribute", {"n": 1})
print("locked", flush=True)
time.sleep(60)
"""


def test_second_concurrent_writer_is_refused(planted_dir, tmp_path):
    """Two concurrent runs into one folder interleaved their files; now the second is refused naming the
    holder's pid, and the lock of a holder that died is taken over."""
    import subprocess
    import sys

    out = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _attribute(planted_dir, _dataset(tmp_path / "d.jsonl", TEXTS[:1]), out)
        assert result.exit_code == 1 and _one_line(result.output), result.output
        assert f"pid {holder.pid}" in result.output and "in use" in result.output
        assert not (out / "attributions").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock is stale and taken over.
    assert (out / ".attrtools-run.lock").exists()
    result = _attribute(planted_dir, _dataset(tmp_path / "d.jsonl", TEXTS[:1]), out, "--overwrite")
    assert result.exit_code == 0, result.output


def test_foreign_folder_is_never_emptied(planted_dir, tmp_path):
    """--overwrite came with run directories and empties one first; a folder that is not an attrtools run
    directory (a home folder with a thesis in it) is refused and left as it was."""
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = _attribute(planted_dir, _dataset(tmp_path / "d.jsonl", TEXTS[:1]), out, "--overwrite")
    assert result.exit_code == 2 and "not an attrtools run directory" in result.output, result.output
    assert (out / "thesis.tex").read_text() == "precious"


def test_unwritable_output_fails_before_the_model_loads(planted_dir, tmp_path, monkeypatch):
    """A read-only output folder, or one where a file stands, ended in an OSError or NotADirectoryError
    traceback, sometimes after the first batch; now writability is checked before the model loads and
    reported in one line."""
    import attrtools.api

    monkeypatch.setattr(attrtools.api, "load_model", lambda *a, **k: pytest.fail("model loaded first"))
    data = _dataset(tmp_path / "d.jsonl", TEXTS[:1])
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        result = _attribute(planted_dir, data, out)
        assert result.exit_code == 1 and _one_line(result.output), result.output
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).endswith("ro") else real_access(p, mode))
    result = _attribute(planted_dir, data, tmp_path / "ro")
    assert result.exit_code == 1 and "permission denied" in result.output and _one_line(result.output)


# ------------------------------------------------------------------------------ resumes after SIGKILL
def test_evaluate_killed_by_sigkill_resumes_in_the_same_run_directory(planted_dir, tmp_path):
    """A real SIGKILL of `attrtools evaluate` mid-run: the rerun into the same --output-dir is
    accepted (same configuration, stale lock of the dead process taken over), takes the finished
    forwards from the cache, and writes the same table as an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    from attrtools.testing import planted_dataset

    texts = [t for t, _ in planted_dataset(40, seed=21)][:8]
    data = _dataset(tmp_path / "d.jsonl", texts)
    cache_dir = tmp_path / "c"
    args = ["evaluate", "--model", planted_dir, "--dataset", data, "--methods", "grad_input,raw,attattr",
            "--param", "attattr:steps=8", "--reference", "none", "--cache-dir", str(cache_dir),
            "--output-dir", str(tmp_path / "run")]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "attrtools", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    store = AttributionCache(cache_dir, memory_bytes=0)
    deadline = time.time() + 240
    forwards = 0
    while proc.poll() is None and time.time() < deadline:
        forwards = sum(1 for row in store.ls() if row.get("method") is None and "error" not in row)
        if forwards >= 1 + 8 + 8:  # clean pass, random and grad_input finished
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert (tmp_path / "run" / ".attrtools-run.lock").exists()  # the dead process could not release it
    assert store.verify()["bad"] == []
    rerun = CliRunner().invoke(cli, args)
    assert rerun.exit_code == 0, rerun.output
    reused = int(re.search(r"perturbed forwards from cache\s+(\d+)", rerun.output).group(1))
    assert reused >= 8 * 2 * 2, rerun.output  # at least random's and grad_input's perturbations
    fresh = [*args[:-4], "--cache-dir", str(tmp_path / "c2"), "--output-dir", str(tmp_path / "fresh")]
    assert CliRunner().invoke(cli, fresh).exit_code == 0
    for name in ("curves.csv", "per_example.csv"):  # (faithfulness.csv also holds timings)
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "fresh" / name).read_text(), name


@pytest.mark.parametrize("command", ["tree"])  # attribute: test_cache.py::test_killed_job_resumes_without_recomputing
def test_sigkill_then_rerun_into_the_same_run_directory(command, planted_dir, tmp_path):
    """SIGKILL mid-run, rerun the same command line: the run directory resumes (the dead process's
    lock is taken over), the cache spares the finished work, the outputs equal a fresh run's."""
    import hashlib
    import signal
    import subprocess
    import sys
    import time

    from attrtools.testing import planted_dataset

    texts = list(dict.fromkeys(t for t, _ in planted_dataset(30, seed=31)))[:8]
    data = _dataset(tmp_path / "d.jsonl", texts)
    specific = {"attribute": ["--method", "attattr", "--param", "steps=32", "--batch-size", "1"],
                "tree": ["--steps", "32", "--batch-size", "1", "--formats", "json"]}[command]
    base = [command, "--model", planted_dir, "--dataset", data, *specific]
    args = [*base, "--cache-dir", str(tmp_path / "c"), "--output-dir", str(tmp_path / "run")]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "attrtools", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(_entries(tmp_path / "c")) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 4 <= len(_entries(tmp_path / "c")) < 2 * len(texts)
    rerun = CliRunner().invoke(cli, args)
    assert rerun.exit_code == 0, rerun.output
    fresh = CliRunner().invoke(cli, [*base, "--cache-dir", str(tmp_path / "c2"), "--output-dir", str(tmp_path / "fresh")])
    assert fresh.exit_code == 0, fresh.output

    def digest(folder):
        out = {}
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.endswith((".safetensors", ".json")) and name not in ("run_config.json", "tree_stats.json"):
                    rel = os.path.relpath(os.path.join(dirpath, name), folder)
                    out[rel] = hashlib.sha256(open(os.path.join(dirpath, name), "rb").read()).hexdigest()
        return out

    resumed, reference = digest(tmp_path / "run"), digest(tmp_path / "fresh")
    assert resumed == reference and len(reference) >= len(texts)
