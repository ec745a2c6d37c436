"""Scale-out: the plan's assignment to ranks, the no-launcher path, the shared-cache check, and
whole commands under ``torchrun --standalone --nproc_per_node 2`` (gloo, one thread per rank)
equal to the single-process run."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from click.testing import CliRunner

import attrtools
from attrtools import distributed
from attrtools.cache import AttributionCache
from attrtools.cli import main as cli
from attrtools.engine import Engine
from attrtools.testing import planted_dataset
from attrtools.types import Attribution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "GROUP_RANK")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", GLOO_SOCKET_IFNAME="lo")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _torchrun(args, nproc=2, extra=(), timeout=600, **env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           *extra, "-m", "attrtools", *args]
    return _run_group(cmd, _env(**env), timeout)


def _run_group(cmd, env, timeout):
    """``subprocess.run`` in its own session: on a timeout the launcher *and its ranks* are killed
    (killing torchrun alone would leave the ranks running)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _dataset(path, count, seed):
    rows = planted_dataset(count, seed=seed)
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    return str(path)


def _load_all(folder):
    names = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    return names, [Attribution.load(os.path.join(folder, n)) for n in names]


def _assert_same_attributions(a, b, atol=1e-6):
    names_a, attrs_a = _load_all(a)
    names_b, attrs_b = _load_all(b)
    assert names_a == names_b and names_a
    for x, y in zip(attrs_a, attrs_b):
        assert x.tokens == y.tokens and x.predicted == y.predicted and x.target == y.target and x.text == y.text
        assert torch.allclose(x.scores, y.scores, rtol=0, atol=atol)


# ------------------------------------------------------------------------------ the assignment
def _check_partition(costs, world_size):
    ranks = distributed.assign(costs, world_size)
    assert len(ranks) == len(costs) and all(0 <= r < world_size for r in ranks)
    shards = [distributed.shard(costs, r, world_size) for r in range(world_size)]
    flat = sorted(b for s in shards for b in s)
    assert flat == list(range(len(costs)))  # complete and disjoint
    assert all(s == sorted(s) for s in shards)  # each shard in plan order
    loads = [sum(costs[b] for b in s) for s in shards]
    if costs:
        assert max(loads) - min(loads) <= max(costs) + 1e-9  # the LPT balance bound
    return ranks


def test_assignment_is_a_disjoint_complete_balanced_partition():
    rng = random.Random(0)
    for trial in range(300):
        n = rng.randint(0, 60)
        kind = trial % 3
        if kind == 0:
            costs = [rng.randint(1, 50) ** 2 * 8 for _ in range(n)]  # many ties
        elif kind == 1:
            costs = [rng.random() * 1e6 for _ in range(n)]
        else:
            costs = sorted(rng.randint(1, 30) ** 2 for _ in range(n))  # a length-sorted plan
        world_size = rng.randint(1, 9)
        ranks = _check_partition(costs, world_size)
        assert ranks == distributed.assign(list(costs), world_size)  # deterministic
    # longest first, ties by batch index, least-loaded rank (ties: lowest rank)
    assert distributed.assign([5, 5, 5, 5], 2) == [0, 1, 0, 1]
    assert distributed.assign([1, 9, 4, 4], 2) == [1, 0, 1, 1]
    # contiguous slicing would hand rank 1 every long batch; LPT mixes them
    sorted_costs = [i * i for i in range(1, 21)]
    ranks = distributed.assign(sorted_costs, 2)
    assert 0 in ranks[10:] and 1 in ranks[10:]
    with pytest.raises(ValueError):
        distributed.assign([1.0], 0)


PLAN_SCRIPT = textwrap.dedent("""
    import json, sys
    import attrtools
    from attrtools import distributed, methods
    from attrtools.engine import Engine
    from attrtools.testing import planted_dataset
    model, tok = attrtools.load_model(sys.argv[1])
    engine = Engine(model, tok, batch_size=3)
    texts = [t for t, _ in planted_dataset(40, seed=2)]
    encoded = [engine.encode(attrtools.Example(t)) for t in texts]
    params = methods.get("attattr").params(steps=5)
    pending = {i: [0, 1] if i % 7 else [1] for i in range(len(texts))}
    plan = engine.plan_pending(encoded, pending, 3, params)
    rows = [{"indices": list(b.members), "units": pending[b.members[0]], "cost": b.cost} for b in plan]
    assert all(pending[i] == pending[b.members[0]] for b in plan for i in b.members)
    print(json.dumps({"plan": rows, "ranks": distributed.assign([b.cost for b in plan], 3)}))
""")


def test_plan_and_assignment_stable_across_hash_seeds(planted_dir, tmp_path):
    script = tmp_path / "plan.py"
    script.write_text(PLAN_SCRIPT)
    outputs = []
    for seed in ("0", "12345"):
        proc = subprocess.run([sys.executable, str(script), planted_dir], env=_env(PYTHONHASHSEED=seed),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    plan = outputs[0]["plan"]
    covered = sorted(i for b in plan for i in b["indices"])
    assert covered == list(range(40))  # every pending example in exactly one batch
    assert all(len(b["indices"]) <= 3 and b["cost"] > 0 for b in plan)
    assert {b["units"] == [1] for b in plan} == {True, False}  # examples missing other units apart


# ------------------------------------------------------------------------------ no launcher
def test_no_launcher_is_the_single_process_path(planted, monkeypatch, tmp_path):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    here = distributed.world()
    assert (here.rank, here.size, here.local_rank, here.distributed, here.is_main) == (0, 1, 0, False, True)
    assert distributed.init() == here and not distributed.initialized()
    assert distributed.all_gather({"a": 1}) == [{"a": 1}] and distributed.broadcast(7) == 7
    distributed.barrier()
    distributed.check_shared_cache(AttributionCache(tmp_path / "c"))  # nothing to check
    assert not os.path.exists(tmp_path / "c")
    model, tok = planted
    texts = [t for t, _ in planted_dataset(6, seed=4)]
    listed = Engine(model, tok, cache=AttributionCache(tmp_path / "c"), batch_size=4).attribute(texts, steps=4)
    fresh = Engine(model, tok, cache=AttributionCache(tmp_path / "d"), batch_size=4)
    streamed = list(fresh.stream(texts, steps=4))
    assert fresh.stats["computed"] == 6 and fresh.stats["hits"] == 0
    assert [a.text for a in streamed] == texts
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(listed, streamed))
    nocache = list(Engine(model, tok, cache=None, batch_size=4).stream(texts, steps=4))
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(listed, nocache))

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(distributed.DistributedError, match="inconsistent"):
        distributed.world()


def test_stream_goes_in_windows_and_equals_attribute(planted, tmp_path):
    """A streamed job holds one window of examples at a time and keeps nothing in the memory
    tier; its results (per-example targets included) are ``attribute``'s, in input order."""
    model, tok = planted
    texts = [t for t, _ in planted_dataset(10, seed=6)]
    targets = [i % 2 for i in range(10)]
    listed = Engine(model, tok, cache=AttributionCache(tmp_path / "a"), batch_size=3).attribute(
        texts, target=targets, steps=4)
    cache = AttributionCache(tmp_path / "s")
    engine = Engine(model, tok, cache=cache, batch_size=3)
    engine.stream_window = 4
    stream = engine.stream(iter(texts), target=targets, steps=4)
    streamed = list(stream)  # any iterable, read once
    assert [a.text for a in streamed] == texts and [a.target for a in streamed] == targets
    assert all(torch.allclose(a.scores, b.scores, rtol=0, atol=1e-6) for a, b in zip(listed, streamed))
    assert engine.stats["computed"] == 10 and cache.memory_used == 0 and cache.stats["puts"] == 20
    assert (stream.stats.computed, stream.stats.hits) == (10, 0)  # the call's own counts
    batches = stream.stats.plan["batches"]
    assert sorted(i for b in batches for i in b["indices"]) == list(range(10))
    assert all(len({i // 4 for i in b["indices"]}) == 1 for b in batches)  # no batch spans two windows
    assert engine.stats["worst_completeness_gap"] >= 0  # the IG report comes at the end of the stream
    again = Engine(model, tok, cache=AttributionCache(tmp_path / "s"), batch_size=3)
    again.stream_window = 3
    reread = list(again.stream(texts, target=targets, steps=4))
    assert (again.stats["computed"], again.stats["hits"]) == (0, 10)
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(streamed, reread))  # cached == computed
    assert list(Engine(model, tok, cache=AttributionCache(tmp_path / "e")).stream([], steps=4)) == []


# ------------------------------------------------------------------------------ under torchrun
SENTINEL_SCRIPT = textwrap.dedent("""
    import os, sys
    from attrtools import distributed
    from attrtools.cache import AttributionCache
    distributed.init()
    rank = distributed.world().rank
    where = sys.argv[1] if sys.argv[2] == "shared" else os.path.join(sys.argv[1], f"rank{rank}")
    try:
        distributed.check_shared_cache(AttributionCache(where))
        print(f"rank {rank} ok\\n", end="", flush=True)  # one write: the ranks share the pipe
    except distributed.DistributedError as err:
        print(f"rank {rank} error: {err}\\n", end="", flush=True)  # one write, so lines never interleave
    distributed.shutdown()
""")


def test_shared_cache_sentinel_fails_fast_when_ranks_see_different_folders(tmp_path):
    script = tmp_path / "sentinel.py"
    script.write_text(SENTINEL_SCRIPT)
    for mode in ("shared", "private"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(tmp_path / mode), mode]
        proc = _run_group(cmd, _env(), 300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        if mode == "shared":
            assert sorted(re.findall(r"rank \d ok", proc.stdout)) == ["rank 0 ok", "rank 1 ok"], proc.stdout
            assert [n for n in os.listdir(tmp_path / mode) if n.startswith(distributed.SENTINEL_PREFIX)] == []
        else:
            errors = re.findall(r"rank (\d) error: (.*)", proc.stdout)
            assert sorted(r for r, _ in errors) == ["0", "1"], proc.stdout  # every rank stops
            assert all("rank 1" in msg and "not shared" in msg for _, msg in errors)


def test_attribute_dataset_two_ranks_equals_one_process(planted_dir, tmp_path):
    data = _dataset(tmp_path / "data.jsonl", 30, seed=21)
    common = ["attribute", "--model", planted_dir, "--dataset", data, "--param", "steps=6", "--batch-size", "4"]
    one, two = tmp_path / "one", tmp_path / "two"
    single = CliRunner().invoke(cli, [*common, "--cache-dir", str(tmp_path / "c1"), "--output-dir", str(one)])
    assert single.exit_code == 0, single.output
    shutil.copytree(one / "attributions", tmp_path / "reference")
    # One launch, two commands: a fresh 2-rank job, whose ranks stream in windows of 8 examples (4
    # windows; the single process used one), then 2 ranks resuming the single process's folder.
    spec = tmp_path / "commands.json"
    spec.write_text(json.dumps([[*common, "--cache-dir", str(tmp_path / "c2"), "--output-dir", str(two)],
                                [*common, "--cache-dir", str(tmp_path / "c1"), "--output-dir", str(one)]]))
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = _run_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       str(script), str(spec)], _env(ATTRTOOLS_STREAM_WINDOW="8"), 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_attributions(tmp_path / "reference", two / "attributions")
    lines = re.findall(r"^(computed|from cache|examples|ranks)\s+(\d+)$", proc.stdout, re.M)
    assert len(lines) == 8, proc.stdout  # one summary per command, from rank 0 only
    summaries = [dict(lines[:4]), dict(lines[4:])]
    assert summaries == [{"examples": "30", "computed": "30", "from cache": "0", "ranks": "2"},
                         {"examples": "30", "computed": "0", "from cache": "30", "ranks": "2"}], proc.stdout
    plan = json.loads((two / "plan.json").read_text())
    assert plan["world_size"] == 2 and plan["window"] == 8 and {b["rank"] for b in plan["batches"]} == {0, 1}
    assert sorted(i for b in plan["batches"] for i in b["indices"]) == list(range(30))
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 2
    # The second command: the cache entries are the single process's, bit for bit (everything read
    # back), and the single process's folder took another world size.
    _assert_same_attributions(tmp_path / "reference", one / "attributions", atol=0)
    assert json.loads((one / "run_config.json").read_text())["world_size"] == 2
    # Resumed with another world size: the 2-rank job cut short (a third of its cache entries and
    # half its outputs lost) is rerun as one process into the same folder: accepted, only what is
    # missing is computed, the outputs are the same, the new world size and plan are recorded.
    lost = sorted(_entries(tmp_path / "c2"))[::3]
    for path in lost:
        os.unlink(path)
    for name in sorted(os.listdir(two / "attributions"))[15:]:
        os.unlink(two / "attributions" / name)
    resumed = CliRunner().invoke(cli, [*common, "--cache-dir", str(tmp_path / "c2"), "--output-dir", str(two)])
    assert resumed.exit_code == 0, resumed.output
    counts = {k: int(v) for k, v in re.findall(r"^(computed|from cache)\s+(\d+)$", resumed.output, re.M)}
    assert 0 < counts["computed"] <= len(lost) and counts["computed"] + counts["from cache"] == 30, counts
    _assert_same_attributions(tmp_path / "reference", two / "attributions")
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 1
    plan = json.loads((two / "plan.json").read_text())
    assert plan["world_size"] == 1 and sum(len(b["indices"]) for b in plan["batches"]) == counts["computed"]


# ------------------------------------------------------------------------------ every dataset command
DRIVER = textwrap.dedent("""
    # Runs several attrtools commands in one process (one process group for all of them under
    # torchrun), so the test pays for starting torch once per launch.
    import json, sys
    from attrtools import distributed
    from attrtools.cli import main
    distributed.init()
    for args in json.loads(open(sys.argv[1]).read()):
        try:
            main(args, standalone_mode=False)
        except SystemExit as err:
            if err.code:
                raise
    distributed.shutdown()
""")


def _commands(planted_dir, data, out):
    model = ["--model", planted_dir]
    return [
        ["prune", *model, "--dataset", data, "--num-examples", "10", "--steps", "4", "--strategies",
         "attattr,attention,ablation,random", "--fractions", "0,0.5,1", "--latency-repeats", "1", "--no-save-model",
         "--output-dir", f"{out}/prune"],
        ["tree", *model, "--dataset", data, "--limit", "8", "--steps", "4", "--formats", "json",
         "--output-dir", f"{out}/tree"],
        ["triggers", *model, "--dataset", data, "--num-train-examples", "10", "--steps", "4",
         "--eval-dataset", data, "--output-dir", f"{out}/triggers"],
        # every row, so that the perturbed forwards fill more than one batch (256 sequences) per method
        ["evaluate", *model, "--dataset", data, "--methods", "attattr,grad_input", "--param", "attattr:steps=4",
         "--method-limit", "attattr=6", "--output-dir", f"{out}/evaluate"],
    ]


# Outputs that hold no timings, paths or cache counters: equal byte for byte across the runs.
COMPARED = {
    "prune": ["head_importance.csv", "pruning_curve.csv", "pruned_heads.json"],
    "tree": ["layer_stats.csv", "patterns.csv", "trees.csv", "edges.csv", "trees/000000.json", "trees/000007.json"],
    "triggers": ["triggers.json", "per_class.csv"],
    "evaluate": ["curves.csv", "per_example.csv"],
}


def _csv_without(path, columns):
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


def _said(stderr: str) -> list:
    """attrtools' lines on stderr, sorted (the launcher's own log lines left out)."""
    return sorted(line for line in stderr.splitlines()
                  if line.strip() and not re.match(r"^(\[?[WIE]\d{4} |\[W\d|\[I\d|\*{5})", line)
                  and "torch.distributed" not in line)


def test_dataset_commands_two_ranks_equal_one_process(planted_dir, tmp_path):
    data = _dataset(tmp_path / "data.jsonl", 24, seed=31)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    stdout, stderr = {}, {}
    for mode in ("one", "two"):
        spec = tmp_path / f"{mode}.json"
        spec.write_text(json.dumps(_commands(planted_dir, data, str(tmp_path / mode))))
        launcher = [sys.executable] if mode == "one" else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        proc = _run_group([*launcher, str(script), str(spec)], _env(ATTRTOOLS_CACHE=str(tmp_path / f"cache-{mode}")),
                          1200)
        assert proc.returncode == 0, proc.stderr[-4000:]
        stdout[mode], stderr[mode] = proc.stdout, proc.stderr
    # One rule for what ranks print (distributed.quiet_rank): every progress line and warning of the
    # four commands once, as in one process.
    assert _said(stderr["two"]) == _said(stderr["one"]) and _said(stderr["one"]), (stderr["one"], stderr["two"])
    # evaluate's perturbed forwards were split: each rank ran a part, together the single process's
    forwards = {mode: int(re.search(r"^perturbed forwards +(\d+)$", out, re.M).group(1)) for mode, out in stdout.items()}
    assert forwards["one"] == forwards["two"] > 0
    by_rank = re.search(r"^perturbed forwards by rank +(\d+), (\d+)$", stdout["two"], re.M)
    assert by_rank, stdout["two"][-3000:]
    assert "by rank" not in stdout["one"]
    shares = [int(n) for n in by_rank.groups()]
    assert sum(shares) == forwards["one"] and min(shares) > 0
    for command, names in COMPARED.items():
        for name in names:
            one, two = tmp_path / "one" / command / name, tmp_path / "two" / command / name
            assert one.exists(), (command, name)
            assert one.read_bytes() == two.read_bytes(), (command, name)
        assert json.loads((tmp_path / "two" / command / "run_config.json").read_text())["world_size"] == 2
    timing = {"attribution_seconds"}  # wall time, the only column that may differ
    assert _csv_without(tmp_path / "one" / "evaluate" / "faithfulness.csv", timing) == \
        _csv_without(tmp_path / "two" / "evaluate" / "faithfulness.csv", timing)
    # only rank 0 wrote: no stray outputs from rank 1 anywhere in the run folders
    assert sorted(os.listdir(tmp_path / "two")) == sorted(COMPARED)


# ------------------------------------------------------------------------------ the audit
def test_audit_shares_partition_examples_by_cost():
    from attrtools.adversarial.audit import audit_shares

    todo = [0, 2, 3, 5, 8, 9, 11]
    lengths = [30, 8, 9, 31, 7, 10, 29]
    shares = audit_shares(todo, lengths, 2)
    assert sorted(i for share in shares for i in share) == todo and all(s == sorted(s) for s in shares)
    long_ones = {0, 5, 11}
    assert long_ones & set(shares[0]) and long_ones & set(shares[1])  # not one rank with every long input
    assert audit_shares(todo, lengths, 2) == shares and audit_shares(todo, lengths, 1) == [todo]


def _summary_numbers(path, session=True):
    """summary.json without wall times and rates (and without this session's record if not ``session``)."""
    summary = json.loads(path.read_text())
    for recipe in summary["recipes"].values():
        if not session:
            recipe.pop("this_session", None)
        for key in ("seconds", "model_inputs_per_second", "queries_per_second"):
            recipe.get("this_session", {}).pop(key, None)
    return summary


def test_audit_two_ranks_equals_one_process_and_resumes(planted_dir, tmp_path):
    data = _dataset(tmp_path / "data.jsonl", 16, seed=51)
    common = ["audit", "--model", planted_dir, "--dataset", data, "--train-dataset", data, "--num-train-examples",
              "8", "--steps", "4", "--num-examples", "6", "--recipes", "deepwordbug", "--chunk-size", "2",
              "--no-progress"]
    one, two, three = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    single = CliRunner().invoke(cli, [*common, "--cache-dir", str(tmp_path / "c1"), "--output-dir", str(one)])
    assert single.exit_code == 0, single.output
    assert len((one / "results.csv").read_text().splitlines()) == 1 + 2 * 6  # triggers and deepwordbug rows

    def cut_short(folder, rows):  # a job killed after it wrote its first rows
        lines = (folder / "results.csv").read_text().splitlines(keepends=True)
        (folder / "results.csv").write_text("".join(lines[:1 + rows]))
        (folder / "summary.json").unlink()

    def check_resumed(folder, done):  # only the rest was attacked, and the outputs are the same
        assert (one / "results.csv").read_bytes() == (folder / "results.csv").read_bytes()
        resumed = json.loads((folder / "summary.json").read_text())
        assert resumed["recipes"]["triggers"]["this_session"]["examples"] == 6 - done
        assert _summary_numbers(one / "summary.json", session=False) == \
            _summary_numbers(folder / "summary.json", session=False)

    # One launch (the ranks' start-up, TextAttack's import above all, is most of the time): a whole
    # 2-rank audit, then the single process's run cut short resumed by 2 ranks. Rank 0 alone sees
    # the rows and triggers already written, so every rank must take its view (or they would wait
    # on each other in collectives the others never call).
    shutil.copytree(one, three)
    cut_short(three, 3)
    # A comparison of two models resumed the same way: its triggers.json, in rank 0's folder only.
    shutil.copytree(planted_dir, tmp_path / "twin")
    compare = ["audit", "--model", planted_dir, "--compare-model", str(tmp_path / "twin"), "--dataset", data,
               "--train-dataset", data, "--num-train-examples", "8", "--steps", "4", "--num-examples", "2",
               "--recipes", "deepwordbug", "--no-progress", "--cache-dir", str(tmp_path / "c1")]
    first = CliRunner().invoke(cli, [*compare, "--output-dir", str(tmp_path / "cmp")])
    assert first.exit_code == 0, first.output
    shutil.copytree(tmp_path / "cmp", tmp_path / "cmp-one")
    spec = tmp_path / "audits.json"
    spec.write_text(json.dumps([[*common, "--cache-dir", str(tmp_path / "c2"), "--output-dir", str(two)],
                                [*common, "--cache-dir", str(tmp_path / "c1"), "--output-dir", str(three)],
                                [*compare, "--output-dir", str(tmp_path / "cmp")]]))
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = _run_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       str(script), str(spec)], _env(), 600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("deepwordbug") >= 2  # the summaries, from rank 0 only
    for name in ("results.csv", "per_class.csv", "triggers.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert _summary_numbers(one / "summary.json") == _summary_numbers(two / "summary.json")
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 2
    check_resumed(three, 3)
    assert json.loads((three / "run_config.json").read_text())["world_size"] == 2
    timing = {"queries_per_second"}
    assert _csv_without(tmp_path / "cmp-one" / "comparison.csv", timing) == \
        _csv_without(tmp_path / "cmp" / "comparison.csv", timing)
    assert (tmp_path / "cmp-one" / "triggers.json").read_bytes() == (tmp_path / "cmp" / "triggers.json").read_bytes()
    # The 2-rank run cut short, resumed by one process (another world size is the same run).
    cut_short(two, 2)
    resumed = CliRunner().invoke(cli, [*common, "--cache-dir", str(tmp_path / "c2"), "--output-dir", str(two)])
    assert resumed.exit_code == 0, resumed.output
    check_resumed(two, 2)
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 1


# ------------------------------------------------------------------------------ a rank dies
def _children_with_rank(parent: int, rank: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if env.get(b"RANK") == str(rank).encode():
            found.append(int(name))
    return found


def _entries(directory):
    return [os.path.join(d, f) for d, _, files in os.walk(directory) for f in files
            if f.endswith(".safetensors") and not f.startswith(".tmp-")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process through /proc")
def test_killed_rank_restarts_and_recomputes_only_unfinished(planted_dir, tmp_path):
    data = _dataset(tmp_path / "data.jsonl", 12, seed=41)
    common = ["attribute", "--model", planted_dir, "--dataset", data, "--param", "steps=60", "--batch-size", "1"]
    single = CliRunner().invoke(cli, [*common, "--cache-dir", str(tmp_path / "c1"), "--output-dir", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    cache = tmp_path / "c2"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts", "1",
           "-m", "attrtools", *common, "--cache-dir", str(cache), "--output-dir", str(tmp_path / "two")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # so that a failure below can end the ranks too
    deadline = time.time() + 400
    victims = []
    while time.time() < deadline and proc.poll() is None:
        victims = _children_with_rank(proc.pid, 1)
        if victims and len(_entries(cache)) >= 2:  # the first entries are written (batch size 1, 2 layers each)
            break
        time.sleep(0.02)
    if not victims or proc.poll() is not None:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the job ended before a rank could be killed")
    os.kill(victims[0], signal.SIGKILL)
    at_kill = len(_entries(cache))
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    (tmp_path / "torchrun.log").write_text(err)
    assert proc.returncode == 0, err[-4000:]
    assert "exitcode: -9" in err  # torchrun's agent saw the killed rank (and, rc 0, restarted the group)
    summary = dict(re.findall(r"^(computed|from cache|examples)\s+(\d+)$", out, re.M))
    assert int(summary["examples"]) == 12
    assert int(summary["from cache"]) >= at_kill // 2 >= 1  # what the first attempt finished was kept ...
    assert int(summary["computed"]) + int(summary["from cache"]) == 12  # ... and only the rest computed
    _assert_same_attributions(tmp_path / "one" / "attributions", tmp_path / "two" / "attributions")


# ------------------------------------------------------------------------------ the demo
DEMO_DRIVER = textwrap.dedent("""
    # The demo's steps (run_demo: attributions, pruning, trees, audit) with a small DemoConfig;
    # rank 0 writes the real run folder, the others a private one, as the demo command does.
    import json, sys
    from attrtools import distributed
    from attrtools.commands.demo import DemoConfig, run_demo
    spec = json.loads(open(sys.argv[1]).read())
    distributed.init()
    out = spec["out"] if distributed.is_main() else distributed.private_run_dir()
    run_demo(spec["model"], spec["train"], spec["dev"], out, config=DemoConfig(**spec["config"]),
             cache=spec["cache"], log=lambda *a: None)
    distributed.finish()
""")

DEMO_SMALL = dict(attribution_examples=2, steps=3, prune_importance_examples=6, prune_eval_examples=12,
                  prune_strategies=["attattr", "attention", "random"], tree_examples=2, tree_stats_examples=5,
                  trigger_train_examples=10, audit_examples=3, latency_repeats=1)

# the demo's data files: no timings, paths or cache counters (report.html and summary.json hold those)
DEMO_COMPARED = ["attributions/token_scores.csv", "pruning/head_importance.csv", "pruning/pruning_curve.csv",
                 "pruning/pruned_heads.json", "trees/stats/layer_stats.csv", "trees/tree-00.json",
                 "trees/tree-01.json", "trees/tree-00.graphml"]
DEMO_AUDIT = ["audit/results.csv", "audit/per_class.csv", "audit/triggers.json"]


def test_demo_steps_two_ranks_equal_one_process(planted_dir, tmp_path):
    from attrtools.commands.demo import DemoConfig, run_demo

    def tsv(path, rows):
        path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows))
        return str(path)

    train, dev = tsv(tmp_path / "train.tsv", planted_dataset(20, seed=3)), tsv(tmp_path / "dev.tsv",
                                                                              planted_dataset(14, seed=4))
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_demo(planted_dir, train, dev, str(one), config=DemoConfig(**DEMO_SMALL),
                      cache=str(tmp_path / "c1"), log=lambda *a: None)
    spec = tmp_path / "demo.json"
    spec.write_text(json.dumps({"model": planted_dir, "train": train, "dev": dev, "out": str(two),
                                "cache": str(tmp_path / "c2"), "config": DEMO_SMALL}))
    script = tmp_path / "demo_driver.py"
    script.write_text(DEMO_DRIVER)
    proc = _run_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       str(script), str(spec)], _env(), 600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    compared = DEMO_COMPARED + (DEMO_AUDIT if (one / "audit" / "results.csv").exists() else [])
    for name in compared:
        assert (one / name).exists(), name
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    _assert_same_attributions(one / "attributions", two / "attributions")  # every method's saved attributions
    double = json.loads((two / "summary.json").read_text())

    def numbers(summary):  # summary.json without wall times and paths
        pruning = {k: v for k, v in summary["pruning"].items() if k not in ("latency", "importance_seconds",
                                                                           "pruned_model")}
        audit = summary["audit"]
        for recipe in audit.get("recipes", {}).values():
            for key in ("seconds", "model_inputs_per_second", "queries_per_second"):
                recipe.get("this_session", {}).pop(key, None)
        return {"pruning": pruning, "trees": summary["trees"], "audit": audit, "fingerprint": summary["fingerprint"]}

    assert numbers(json.loads(json.dumps(single, default=str))) == numbers(double)
    assert double["engine"]["computed"] == single["engine"]["computed"] > 0  # the job's total, not a rank's
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # rank 1 wrote nothing here


# ------------------------------------------------------------------------------ an s3:// cache, both launchers


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_s3_cache_torchrun_and_accelerate_equal_one_process(planted_dir, tmp_path, s3_url):
    """2 ranks sharing an ``s3://`` cache on a real S3 server, launched by torchrun and then by
    ``accelerate launch``: each entry computed once, outputs equal the single process's, and each
    launcher's summary printed once (rank 0)."""
    pytest.importorskip("accelerate")
    data = _dataset(tmp_path / "data.jsonl", 12, seed=23)
    common = ["attribute", "--model", planted_dir, "--dataset", data, "--param", "steps=3", "--batch-size", "2"]
    single = CliRunner().invoke(cli, [*common, "--cache-dir", str(tmp_path / "local"), "--output-dir",
                                      str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    runs = {
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
        # on a CPU-only machine --multi_gpu means "several processes through torchrun" (README, Scale out)
        "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", str(_free_port())],
    }
    for name, launcher in runs.items():
        store = f"{s3_url}-{name}"
        proc = _run_group([*launcher, "-m", "attrtools", *common, "--cache-dir", store, "--output-dir",
                           str(tmp_path / name)], _env(CUDA_VISIBLE_DEVICES=""), 600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # the IG completeness warning (3 steps) once, from rank 0, naming the command it came from
        # (notices.warn inside a CLI command), not <frozen runpy>
        warned = re.findall(r"^(.+?):\d+: CompletenessWarning", proc.stderr, re.M)
        assert warned == ["attrtools attribute"], proc.stderr[-3000:]
        lines = re.findall(r"^(computed|from cache|examples|ranks|cache)\s+(\S+)$", proc.stdout, re.M)
        assert dict(lines) == {"examples": "12", "computed": "12", "from cache": "0", "ranks": "2", "cache": store} \
            and len(lines) == 5, proc.stdout  # every entry computed once, the summary printed once
        entries = AttributionCache(store, memory_bytes=0)
        assert entries.info()["entries"] == 12 * 2 and entries.verify()["bad"] == []  # 12 examples x 2 layers
        _assert_same_attributions(tmp_path / "one" / "attributions", tmp_path / name / "attributions")
    _assert_same_attributions(tmp_path / "torchrun" / "attributions", tmp_path / "accelerate" / "attributions",
                              atol=0)


def test_quiet_rank_keeps_errors_only(monkeypatch):
    """What a rank other than 0 prints (distributed.quiet_rank): no output, no progress or warnings,
    but its errors: the CLI's one line (written while the exception is handled) and tracebacks."""
    import io
    import warnings

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: sys.stderr.write(f"Traceback: {value}\n"))
    distributed.quiet_rank()
    quiet_stdout = sys.stdout
    try:
        print("examples  30")
        sys.stderr.write("[attattr] head importance on 10 examples\n")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = warnings._showwarning_orig  # write to sys.stderr (pytest records otherwise)
            warnings.warn("IG completeness")
        try:
            raise ValueError("boom")
        except ValueError:
            sys.stderr.write("Error: boom\n")
        sys.excepthook(RuntimeError, RuntimeError("crash"), None)
        assert out.getvalue() == "" and err.getvalue() == "Error: boom\nTraceback: crash\n"
    finally:
        quiet_stdout.close()


@pytest.mark.parametrize("rank", [0, 1])
def test_every_command_goes_through_the_rank_rule(rank, monkeypatch):
    """The rule sits in the command group, so it holds for every command: under a launcher, rank 1
    prints neither a command's output (here its help) nor anything but its errors; rank 0 prints."""
    import click

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setattr(distributed, "init", lambda: distributed.World(rank, 2, rank))  # no process group
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # quiet_rank wraps it: restored after the test
    names = cli.list_commands(click.Context(cli))
    assert {"attribute", "prune", "tree", "triggers", "evaluate", "audit", "demo", "cache"} <= set(names)
    for name in names:
        helped = CliRunner().invoke(cli, [name, "--help"])
        assert helped.exit_code == 0 and (("Usage:" in helped.output) == (rank == 0)), (name, helped.output)
        refused = CliRunner().invoke(cli, [name, "--no-such-option"])
        assert refused.exit_code == 2 and "No such option '--no-such-option'" in refused.output, (name, refused.output)
