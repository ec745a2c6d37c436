"""The attribution cache: exactness, keys, resumable jobs, concurrency, corruption, no pickle;
the engine's cache wiring and OOM back-off; dataset loading errors."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

import attrtools
from attrtools import methods
from attrtools.cache import AttributionCache, CacheWarning, default_cache_dir
from attrtools.cli import main as cli
from attrtools.engine import Engine
from attrtools.testing import planted_dataset

from conftest import SENTENCES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _entries(directory):
    out = []
    for dirpath, _, files in os.walk(directory):
        out += [os.path.join(dirpath, f) for f in files if f.endswith(".safetensors") and not f.startswith(".tmp-")]
    return sorted(out)


def _env(cache_dir):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", ATTRTOOLS_CACHE=str(cache_dir),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _texts(count, seed=0):
    seen, out = set(), []
    for text, _ in planted_dataset(count * 2, seed=seed):
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out[:count]


# ------------------------------------------------------------------------------ the cache alone
def test_memory_tier_is_lru_in_bytes_and_disk_backs_it(tmp_path):
    from attrtools.cache import ENTRY_OVERHEAD

    cache = AttributionCache(tmp_path, memory_bytes=3 * (400 + ENTRY_OVERHEAD))
    tensors = {f"{i:064x}": torch.randn(100) for i in range(4)}  # 400 bytes each
    for key, value in tensors.items():
        cache.put(key, value, {"i": key[-1]})
    assert cache.memory_used == 3 * (400 + ENTRY_OVERHEAD) and len(cache._memory) == 3
    first = next(iter(tensors))
    assert first not in cache._memory  # least recently used went first
    got, meta = cache.get(first)  # served by disk, promoted to memory
    assert torch.equal(got, tensors[first]) and meta == {"i": first[-1]}
    assert cache.stats["disk_hits"] == 1 and first in cache._memory
    again, _ = cache.get(first)
    assert cache.stats["memory_hits"] == 1
    again.add_(1.0)  # what a caller gets is its own copy
    assert torch.equal(cache.get(first)[0], tensors[first])
    assert cache.get("f" * 64) is None and cache.stats["misses"] == 1


def test_one_pass_reads_and_writes_skip_the_memory_tier(tmp_path):
    from attrtools.cache import ENTRY_OVERHEAD

    cache = AttributionCache(tmp_path)
    value = torch.randn(3, 5)
    cache.put("a" * 64, value, {"i": 1}, remember=False)
    assert cache.memory_used == 0 and "a" * 64 in cache  # on disk only
    got, meta = cache.get("a" * 64, remember=False)
    assert torch.equal(got, value) and meta == {"i": 1}
    assert cache.memory_used == 0 and cache.stats["disk_hits"] == 1  # read, not promoted
    cache.get("a" * 64)
    assert cache.memory_used == 15 * 4 + ENTRY_OVERHEAD  # an ordinary read promotes it
    # without a disk tier the memory tier is the cache: remember=False cannot drop the entry
    memory_only = AttributionCache(tmp_path / "m", disk=False)
    memory_only.put("b" * 64, value, remember=False)
    assert torch.equal(memory_only.get("b" * 64)[0], value)
    # tiny tensors: the per-entry overhead keeps the tier within its budget in entries too
    small = AttributionCache(tmp_path / "s", memory_bytes=10 * (ENTRY_OVERHEAD + 4), disk=False)
    for i in range(50):
        small.put(f"{i:064x}", torch.ones(1))
    assert len(small._memory) == 10 and small.memory_used <= small.memory_bytes


def test_fp32_bitwise_fp16_halves_disk(tmp_path):
    value = torch.randn(2, 3, 17, 17, dtype=torch.float32) * 0.5  # within fp16's range (cache.narrow)
    exact = AttributionCache(tmp_path / "fp32")
    exact.put("a" * 64, value, {})
    fresh, _ = AttributionCache(tmp_path / "fp32", memory_bytes=0).get("a" * 64)
    assert fresh.dtype == torch.float32 and torch.equal(fresh, value)

    half = AttributionCache(tmp_path / "fp16", dtype="fp16")
    half.put("a" * 64, value, {})
    from_memory, _ = half.get("a" * 64)
    from_disk, _ = AttributionCache(tmp_path / "fp16", dtype="fp16", memory_bytes=0).get("a" * 64)
    assert from_disk.dtype == torch.float32 and torch.equal(from_memory, from_disk)
    assert torch.allclose(from_disk, value, rtol=1e-3, atol=1e-7) and not torch.equal(from_disk, value)
    size32, size16 = (os.path.getsize(_entries(tmp_path / d)[0]) for d in ("fp32", "fp16"))
    tensor_bytes = value.numel() * 4
    assert size32 - size16 == pytest.approx(tensor_bytes / 2, abs=64)


def test_default_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTRTOOLS_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == str(tmp_path / "env") and AttributionCache().directory == str(tmp_path / "env")
    monkeypatch.delenv("ATTRTOOLS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "attrtools")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "attrtools")


def test_disk_cap_evicts_least_recently_used(tmp_path):
    value = torch.randn(256)  # ~1 KiB file plus header
    probe = AttributionCache(tmp_path / "probe")
    probe.put("0" * 64, value, {})
    entry_size = os.path.getsize(_entries(tmp_path / "probe")[0])
    cache = AttributionCache(tmp_path / "c", memory_bytes=0, max_disk_bytes=int(entry_size * 7.5))
    keys = [f"{i:064x}" for i in range(8)]
    for k in keys[:4]:
        cache.put(k, value, {})
    now = time.time()
    for age, k in enumerate(keys[:4]):  # make the order of use unambiguous: 0 oldest ... 3 newest
        os.utime(cache.path(k), (now - 100 + age, now - 100 + age))
    assert cache.get(keys[0]) is not None  # a hit makes entry 0 the most recent of the four
    for k in keys[4:]:
        cache.put(k, value, {})
    left = {os.path.basename(p)[:64] for p in _entries(tmp_path / "c")}
    assert sum(os.path.getsize(p) for p in _entries(tmp_path / "c")) <= cache.max_disk_bytes
    # 8 entries pass the cap (7.5): down to 90 % (6.75) by removing the two least recently used.
    assert left == set(keys) - {keys[1], keys[2]}
    assert cache.stats["evicted"] == 2


# ------------------------------------------------------------------------------ engine + cache
def test_api_cache_argument_and_metadata(planted):
    model, tok = planted
    results = attrtools.attribute(model, tok, SENTENCES[:2], method="attattr", steps=2, cache=True)
    files = _entries(os.environ["ATTRTOOLS_CACHE"])  # conftest points the default cache at a tmp dir
    assert len(files) == 2 * 2  # 2 examples x 2 layers
    with safe_open(files[0], framework="pt") as f:
        record = json.loads(f.metadata()["attrtools_cache"])
    meta = record["meta"]
    assert meta["method"] == "attattr" and meta["unit"] in (0, 1) and len(meta["model"]) == 64
    assert {"target", "predicted", "probs"} <= set(meta) and record["checksum"] and record["format"] == 2
    again = attrtools.attribute(model, tok, SENTENCES[:2], method="attattr", steps=2, cache=True)
    assert all(torch.equal(a.scores, b.scores) and a.probs == b.probs for a, b in zip(results, again))
    attrtools.attribute(model, tok, SENTENCES[2:3], method="attattr", steps=2, cache=None)
    assert len(_entries(os.environ["ATTRTOOLS_CACHE"])) == 4


def test_keys(planted, planted_dir):
    model, tok = planted
    engine = Engine(model, tok)
    params = methods.get("attattr").params(steps=20)
    enc = engine.encode(attrtools.Example("alpha the beta"))
    base = engine.key(enc, "attattr", params, "pred", 0)
    assert base == engine.key(enc, "attattr", dict(params), "pred", 0)
    assert base == engine.key(enc, "attattr", dict(params, internal_batch_size=3), "pred", 0)  # volatile
    others = {
        "tokens": engine.key(engine.encode(attrtools.Example("beta the alpha")), "attattr", params, "pred", 0),
        "target": engine.key(enc, "attattr", params, 1, 0),
        "params": engine.key(enc, "attattr", dict(params, steps=21), "pred", 0),
        "unit": engine.key(enc, "attattr", params, "pred", 1),
        "method": engine.key(enc, "raw", params, "pred", 0),
    }
    changed, tok2 = attrtools.load_model(planted_dir)  # a private copy to modify
    assert Engine(changed, tok2).key(enc, "attattr", params, "pred", 0) == base
    with torch.no_grad():
        changed.classifier.weight[0, 0] += 1e-3
    others["weight"] = Engine(changed, tok2).key(enc, "attattr", params, "pred", 0)
    assert len(set(others.values()) | {base}) == len(others) + 1, others


def test_partial_example_recomputes_only_missing_units(planted, tmp_path, monkeypatch):
    model, tok = planted
    texts = _texts(3, seed=5)
    first = Engine(model, tok, cache=AttributionCache(tmp_path), batch_size=1).attribute(texts, steps=3)
    engine = Engine(model, tok, cache=AttributionCache(tmp_path, memory_bytes=0), batch_size=1)
    spec = first[1].target  # keys hold the resolved class, not the "pred" spec
    params = methods.get("attattr").params(steps=3)
    os.unlink(engine.cache.path(engine.key(engine.encode(attrtools.Example(texts[1])), "attattr", params, spec, 1)))
    impl = methods.get("attattr")
    calls = []
    original = impl.compute

    def spy(model, batch, units=None, **kw):
        calls.append((batch.size, units))
        return original(model, batch, units=units, **kw)

    monkeypatch.setattr(impl, "compute", spy)
    again = engine.attribute(texts, steps=3)
    assert calls == [(1, [1])]
    counts = {k: engine.stats[k] for k in ("hits", "computed", "partial", "units_computed", "truncated")}
    assert counts == {"hits": 2, "computed": 1, "partial": 1, "units_computed": 1, "truncated": 0}
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(first, again))


def test_oom_back_off(planted, monkeypatch):
    model, tok = planted
    texts = _texts(3, seed=7)
    reference = attrtools.attribute(model, tok, texts, steps=4, batch_size=4)
    impl = methods.get("attattr")
    original = impl.compute
    seen = []

    def flaky(model, batch, units=None, **kw):
        seen.append((batch.size, kw.get("internal_batch_size")))
        if batch.size > 1 or (kw.get("internal_batch_size") or 10 ** 6) > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(model, batch, units=units, **kw)

    monkeypatch.setattr(impl, "compute", flaky)
    engine = Engine(model, tok, batch_size=4)
    results = engine.attribute(texts, steps=4)
    first_ok = next(k for k, (size, internal) in enumerate(seen) if size == 1 and internal and internal <= 3)
    assert [size for size, _ in seen[:3]] == [3, 2, 1]  # the batch halves first ...
    internal = [i for _, i in seen[2: first_ok + 1]]  # ... then the internal batch, from the default
    assert internal[0] is None and all(b < a for a, b in zip(internal[1:], internal[2:]))
    assert seen[first_ok + 1:] == [seen[first_ok]] * (len(texts) - 1)  # the back-off sticks
    assert engine.stats["oom_backoffs"] == first_ok
    for r, ref in zip(results, reference):
        assert torch.allclose(r.scores, ref.scores, rtol=1e-4, atol=1e-7)

    monkeypatch.setattr(impl, "compute", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):  # at 1 and 1 it gives up instead of looping
        Engine(model, tok, batch_size=2).attribute(texts[:1], steps=4)
    monkeypatch.setattr(impl, "compute", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        Engine(model, tok, batch_size=2).attribute(texts[:1], steps=4)


# ------------------------------------------------------------------------------ processes
WORKER = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    import attrtools
    from attrtools.cache import AttributionCache
    from attrtools.engine import Engine
    from safetensors.torch import save_file
    model_dir, cache_dir, texts_json, out = sys.argv[1:5]
    texts = json.loads(open(texts_json).read())
    model, tok = attrtools.load_model(model_dir)
    engine = Engine(model, tok, cache=AttributionCache(cache_dir), batch_size=1)
    results = engine.attribute(texts, steps=6)
    save_file({str(i): r.scores.contiguous() for i, r in enumerate(results)}, out)
    params = attrtools.methods.get("attattr").params(steps=6)
    keys = [engine.key(engine.encode(attrtools.Example(t)), "attattr", params, "pred", 0) for t in texts]
    print(json.dumps({"stats": engine.stats, "keys": keys}))
""")


def test_cross_process_reads_and_concurrent_writers(planted, planted_dir, tmp_path):
    """The parent fills part of the cache; two processes then attribute overlapping sets into it at
    once. Every entry verifies, none is lost, and results equal the parent's bit for bit."""
    model, tok = planted
    cache_dir = tmp_path / "shared-cache"
    texts = _texts(16, seed=11)
    parent_engine = Engine(model, tok, cache=AttributionCache(cache_dir), batch_size=1)
    parent = parent_engine.attribute(texts[:4], steps=6)
    params = methods.get("attattr").params(steps=6)
    parent_keys = [parent_engine.key(parent_engine.encode(attrtools.Example(t)), "attattr", params, "pred", 0)
                   for t in texts[:4]]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    sets = {"a": texts[:12], "b": texts[:4] + texts[8:16]}  # overlap: 0-3 (parent's) and 8-11 (both new)
    procs = {}
    for name, subset in sets.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(subset))
        procs[name] = subprocess.Popen(
            [sys.executable, str(script), planted_dir, str(cache_dir), str(tmp_path / f"{name}.json"),
             str(tmp_path / f"{name}.safetensors")], env=_env(cache_dir), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    reports = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        reports[name] = json.loads(out.strip().splitlines()[-1])
    for name in sets:
        assert reports[name]["keys"][:4] == parent_keys  # same key across processes
        assert reports[name]["stats"]["hits"] >= 4  # the parent's entries were read from disk
    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as f:
        child = [f.get_tensor(str(i)) for i in range(12)]
    assert all(torch.equal(c, p.scores) for c, p in zip(child[:4], parent))

    store = AttributionCache(cache_dir, memory_bytes=0)
    report = store.verify()
    assert report["bad"] == [] and report["checked"] == 16 * 2  # 16 distinct examples x 2 layers: none lost
    everything = Engine(model, tok, cache=store, batch_size=1)
    final = everything.attribute(texts, steps=6)
    assert everything.stats["computed"] == 0 and everything.stats["hits"] == 16
    with safe_open(str(tmp_path / "b.safetensors"), framework="pt") as f:
        b_results = [f.get_tensor(str(i)) for i in range(12)]
    for text, tensor in zip(sets["b"], b_results):
        assert torch.equal(final[texts.index(text)].scores, tensor)
    assert all(torch.equal(c, final[i].scores) for i, c in enumerate(child))


def test_killed_job_resumes_without_recomputing(planted_dir, tmp_path):
    cache_dir, data = tmp_path / "cache", tmp_path / "data.jsonl"
    texts = _texts(24, seed=3)
    data.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in texts))
    args = ["attribute", "--model", planted_dir, "--dataset", str(data), "--method", "attattr",
            "--param", "steps=200", "--batch-size", "1", "--cache-dir", str(cache_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "attrtools", *args, "--output-dir", str(tmp_path / "run1")],
                            env=_env(cache_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(_entries(cache_dir)) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    written = len(_entries(cache_dir))
    assert 6 <= written < 2 * len(texts), written
    assert AttributionCache(cache_dir, memory_bytes=0).verify()["bad"] == []  # nothing half-written
    finished = written // 2  # batch size 1, 2 layers per example, written in order

    result = CliRunner().invoke(cli, [*args, "--output-dir", str(tmp_path / "run2")])
    assert result.exit_code == 0, result.output
    summary = dict(re.findall(r"^(computed|from cache)\s+(\d+)$", result.output, re.M))
    assert int(summary["from cache"]) == finished
    assert int(summary["computed"]) == len(texts) - finished
    assert len(_entries(cache_dir)) == 2 * len(texts)
    written = [f for f in os.listdir(tmp_path / "run2" / "attributions") if f.endswith(".safetensors")]
    assert len(written) == len(texts)


# ------------------------------------------------------------------------------ corruption
def test_corrupt_entries_detected_removed_recomputed(planted, tmp_path):
    model, tok = planted
    cache_dir = tmp_path / "c"
    texts = _texts(3, seed=13)
    original = Engine(model, tok, cache=AttributionCache(cache_dir), batch_size=1).attribute(texts, steps=3)
    files = _entries(cache_dir)
    assert len(files) == 6
    with open(files[0], "r+b") as f:  # truncated (a writer that died without the atomic rename)
        f.truncate(os.path.getsize(files[0]) // 2)
    with open(files[1], "r+b") as f:  # one flipped bit in the tensor data
        f.seek(-3, os.SEEK_END)
        byte = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([byte[0] ^ 1]))
    with open(files[2], "r+b") as f:  # garbage header
        f.seek(9)
        f.write(b"\x00\xff\x00")
    runner = CliRunner()
    result = runner.invoke(cli, ["cache", "verify", "--cache-dir", str(cache_dir)])
    assert result.exit_code == 1 and result.output.count("BAD") == 3, result.output
    assert "checksum" in result.output

    engine = Engine(model, tok, cache=AttributionCache(cache_dir, memory_bytes=0), batch_size=1)
    with pytest.warns(CacheWarning, match="corrupt entry"):
        again = engine.attribute(texts, steps=3)
    assert engine.stats["hits"] + engine.stats["computed"] == 3 and engine.stats["computed"] >= 2
    assert engine.cache.stats["corrupt"] == 3
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(original, again))
    assert runner.invoke(cli, ["cache", "verify", "--cache-dir", str(cache_dir)]).exit_code == 0

    with open(files[3], "r+b") as f:
        f.truncate(20)
    result = runner.invoke(cli, ["cache", "verify", "--fix"], env={"ATTRTOOLS_CACHE": str(cache_dir)})
    assert result.exit_code == 0 and "removed 1" in result.output, result.output
    assert not os.path.exists(files[3]) and len(_entries(cache_dir)) == 5


def test_cli_ls_info_clear(planted, tmp_path):
    model, tok = planted
    cache_dir = tmp_path / "c"
    Engine(model, tok, cache=AttributionCache(cache_dir)).attribute(SENTENCES[:2], steps=2)
    runner = CliRunner()
    env = {"ATTRTOOLS_CACHE": str(cache_dir)}
    listed = runner.invoke(cli, ["cache", "ls", "--json"], env=env)
    rows = json.loads(listed.output)
    assert listed.exit_code == 0 and len(rows) == 4 and {r["method"] for r in rows} == {"attattr"}
    info = json.loads(runner.invoke(cli, ["cache", "info", "--json"], env=env).output)
    assert info["entries"] == 4 and info["by_method"]["attattr"]["entries"] == 4
    assert info["bytes"] == sum(os.path.getsize(p) for p in _entries(cache_dir))
    cleared = runner.invoke(cli, ["cache", "clear", "--yes", "--cache-dir", str(cache_dir)])
    assert cleared.exit_code == 0 and "removed 4" in cleared.output and _entries(cache_dir) == []


def test_no_pickle_and_files_are_safetensors(planted, tmp_path):
    forbidden = re.compile(r"import\s+pickle|\bpickle\.|torch\.save|torch\.load|np\.save|np\.load|"
                           r"allow_pickle|import\s+marshal|import\s+shelve|joblib")
    for module in ("cache.py", os.path.join("commands", "cache.py")):
        with open(os.path.join(ROOT, "attrtools", module)) as f:
            assert not forbidden.search(f.read()), module
    model, tok = planted
    Engine(model, tok, cache=AttributionCache(tmp_path)).attribute(SENTENCES[:1], steps=2)
    for path in _entries(tmp_path):
        with safe_open(path, framework="pt") as f:
            assert list(f.keys()) == ["scores"]
            json.loads(f.metadata()["attrtools_cache"])


# ------------------------------------------------------------------------------ datasets
def test_dataset_errors_and_label_names(tmp_path):
    from attrtools.data import DataError, load_examples

    with pytest.raises(DataError, match="not found"):
        load_examples(str(tmp_path / "missing.tsv"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_examples(str(tmp_path / "empty.jsonl"))
    data = tmp_path / "d.jsonl"
    data.write_text('{"body": "a good film", "sentiment": "positive"}\n{"body": "dull", "sentiment": "negative"}\n')
    with pytest.raises(DataError, match="cannot guess the text column"):
        load_examples(str(data))
    with pytest.raises(DataError, match="column 'review' not found"):
        load_examples(str(data), text_column="review")
    with pytest.raises(DataError, match="known label name"):
        load_examples(str(data), text_column="body", label_column="sentiment")
    examples = load_examples(str(data), text_column="body", label_column="sentiment",
                             label_names="negative,positive")
    assert [(e.text, e.label) for e in examples] == [("a good film", 1), ("dull", 0)]
    tsv = tmp_path / "q.tsv"
    tsv.write_text('sentence\tlabel\n"quoted" start\t1\n')
    assert load_examples(str(tsv))[0].text == '"quoted" start'  # TSV has no quoting


def test_cli_missing_dataset_is_a_clean_error(planted_dir, tmp_path):
    result = CliRunner().invoke(cli, ["attribute", "--model", planted_dir, "--dataset", str(tmp_path / "no.csv")])
    assert result.exit_code == 1 and "not found" in result.output and "Traceback" not in result.output
