"""The object-store tier (``FsspecCache``): the cache's own test suite run again with every cache
going through fsspec (local folders as ``file://``, subprocesses and the CLI included), plus the
store-level cases (one whole-object put per entry, hits, misses, ranged header reads, corruption,
verify, eviction by creation time) through ``memory://`` and through ``s3://`` on a real S3 server
(SeaweedFS, ``tests/s3_server.py``), cross-process cases on S3 (concurrent writers, a writer killed
mid-put, other writers' entries seen), the CLI's ``--cache-dir memory://...`` and credentials kept
out of locations, logs and run directories."""
import json
import os
import re
import warnings

import pytest
import torch

from attrtools.cache import STORAGE_ENV, AttributionCache, CacheWarning, FsspecCache

import test_cache
from test_cache import *  # noqa: F401,F403 - the cache's own tests, collected again under fsspec


@pytest.fixture(autouse=True)
def _through_fsspec(monkeypatch):
    monkeypatch.setenv(STORAGE_ENV, "fsspec")  # inherited by the subprocesses the tests start


def test_the_suite_really_runs_through_fsspec(tmp_path):
    cache = AttributionCache(tmp_path / "c")
    assert isinstance(cache, FsspecCache) and cache.directory == str(tmp_path / "c")
    assert len([name for name in dir(test_cache) if name.startswith("test_")]) >= 10


def test_store_one_put_per_entry_and_corruption(store, monkeypatch):
    cache = AttributionCache(store, memory_bytes=0)
    assert isinstance(cache, FsspecCache) and cache.directory == store
    cache.clear()
    puts = []
    original = cache.fs.pipe_file
    monkeypatch.setattr(cache.fs, "pipe_file", lambda path, value, **kw: (puts.append(path), original(path, value, **kw)))
    tensors = {f"{i:064x}": torch.randn(3, 4) for i in range(3)}
    for key, value in tensors.items():
        cache.put(key, value, {"i": key[-1]})
    assert puts == [cache.path(k) for k in tensors]  # one whole-object put each, no temporary object
    for key, value in tensors.items():
        got, meta = cache.get(key)
        assert torch.equal(got, value) and meta == {"i": key[-1]}
    assert cache.info()["entries"] == 3 and cache.verify()["bad"] == []
    first = next(iter(tensors))
    blob = cache.fs.cat_file(cache.path(first))
    cache.fs.pipe_file(cache.path(first), blob[:-5] + bytes(5))  # bit rot in the tensor bytes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.get(first) is None
    assert any(issubclass(w.category, CacheWarning) for w in caught)
    assert first not in cache and cache.stats["corrupt"] == 1  # removed, to be recomputed
    assert cache.clear() == 2 and cache.info()["entries"] == 0


def test_cli_cache_dir_memory_url(planted_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from attrtools.cli import main as cli

    monkeypatch.delenv(STORAGE_ENV)
    store = "memory://attrtools-cli-store"
    AttributionCache(store).clear()
    args = ["attribute", "--model", planted_dir, "--text", "the alpha film was beta fun", "--text", "a dull plot",
            "--param", "steps=3", "--cache-dir", store]
    first = CliRunner().invoke(cli, [*args, "--output-dir", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert re.search(r"^computed +2$", first.output, re.M) and re.search(rf"^cache +{store}$", first.output, re.M)
    again = CliRunner().invoke(cli, [*args, "--output-dir", str(tmp_path / "b")])  # same process, same store
    assert again.exit_code == 0 and re.search(r"^from cache +2$", again.output, re.M), again.output
    assert AttributionCache(store).info()["entries"] == 4  # 2 examples x 2 layers
    assert not os.path.exists("attrtools-cli-store")


# ------------------------------------------------------------------------------ a real object store
# The cache suite's cases (hits, misses, corruption, concurrent writers, a writer killed mid-put,
# verify, eviction) through ``memory://`` and through ``s3://`` on a real S3 server (SeaweedFS,
# tests/s3_server.py; skipped with the reason where it cannot start). Cross-process cases run on
# S3 only (memory:// is private to a process; file:// is the suite above).
import signal
import subprocess
import sys
import time
import uuid

from s3_server import SECRET  # the fixtures s3_server and s3_url come from conftest.py

from attrtools.cache import decode_entry, encode_entry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["memory", "s3"])
def store(request, monkeypatch):
    monkeypatch.delenv(STORAGE_ENV)
    if request.param == "memory":
        return f"memory://attrtools-{uuid.uuid4().hex[:12]}"
    return request.getfixturevalue("s3_url")


def _value(i, shape=(12, 16, 16)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(i))


def _count_reads(monkeypatch, fs):
    """Bytes returned by every ``cat_file`` on ``fs`` (ranged or whole), per path."""
    read = {}
    original = fs.cat_file

    def counting(path, start=None, end=None, **kw):
        data = original(path, start=start, end=end, **kw)
        read[path] = read.get(path, 0) + len(data)
        return data

    monkeypatch.setattr(fs, "cat_file", counting)
    return read


def test_store_hits_misses_listing_by_ranged_reads(store, monkeypatch):
    writer = AttributionCache(store, memory_bytes=0)
    keys = [f"{i:064x}" for i in range(3)]
    for i, key in enumerate(keys):
        writer.put(key, _value(i), {"method": "attattr", "unit": i, "model": "m" * 64})
    reader = AttributionCache(store, memory_bytes=0)  # another cache object: nothing in memory
    for i, key in enumerate(keys):
        got, meta = reader.get(key)
        assert torch.equal(got, _value(i)) and meta["unit"] == i
    assert reader.get("f" * 64) is None
    assert reader.stats["disk_hits"] == 3 and reader.stats["misses"] == 1
    read = _count_reads(monkeypatch, reader.fs)
    rows = sorted(reader.ls(), key=lambda r: r["key"])
    assert [r["key"] for r in rows] == keys and [r["unit"] for r in rows] == [0, 1, 2]
    assert all(r["shape"] == [12, 16, 16] and r["method"] == "attattr" for r in rows)
    sizes = {r["path"]: r["bytes"] for r in rows}
    assert all(size > 12 * 16 * 16 * 4 for size in sizes.values())
    # ls read each entry's header only: one ranged read of 4 KiB per entry, not the 12 KiB object
    from attrtools.stores import HEAD_READ

    assert read == {path: HEAD_READ for path in sizes}, (read, sizes)
    info = reader.info()
    assert info["entries"] == 3 and info["bytes"] == sum(sizes.values()) and info["by_method"]["attattr"]["entries"] == 3
    assert info["eviction_order"] == "creation time"  # objects cannot be touched (see attrtools.stores)
    report = reader.verify()
    assert report["checked"] == 3 and report["bad"] == []


def test_store_long_header_read_in_two_ranges(store, monkeypatch):
    from attrtools.stores import HEAD_READ

    cache = AttributionCache(store, memory_bytes=0)
    meta = {"method": "x", "note": "n" * (3 * HEAD_READ)}  # a header longer than the first read
    cache.put("b" * 64, _value(0, (4,)), meta)
    read = _count_reads(monkeypatch, cache.fs)
    [row] = list(cache.ls())
    blob_size = row["bytes"]
    assert row["key"] == "b" * 64 and row["method"] == "x"
    assert read[cache.path("b" * 64)] == blob_size - 16  # the header, not the 16 tensor bytes


def test_store_corruption_found_reported_removed(store):
    cache = AttributionCache(store, memory_bytes=0)
    keys = [f"{i:064x}" for i in range(3)]
    for i, key in enumerate(keys):
        cache.put(key, _value(i), {"i": i})
    flipped, cut = keys[0], keys[1]
    blob = cache.fs.cat_file(cache.path(flipped))
    cache.fs.pipe_file(cache.path(flipped), blob[:-7] + bytes([blob[-7] ^ 1]) + blob[-6:])  # one bit of data
    cache.fs.pipe_file(cache.path(cut), cache.fs.cat_file(cache.path(cut))[:100])  # a truncated object
    report = cache.verify()
    assert report["checked"] == 3
    assert {os.path.basename(p)[:64]: reason.split(" ")[0] for p, reason in report["bad"]} == \
        {flipped: "checksum", cut: "header"}
    rows = {r.get("key"): r for r in cache.ls()}
    assert any("error" in r for r in rows.values())  # the truncated header is listed as unreadable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.get(flipped) is None
    assert [w.category for w in caught] == [CacheWarning] and cache.stats["corrupt"] == 1
    assert flipped not in cache
    assert cache.verify(fix=True)["removed"] == 1 and cut not in cache
    assert [r["key"] for r in cache.ls()] == [keys[2]] and torch.equal(cache.get(keys[2])[0], _value(2))


def test_store_eviction_by_creation_time(store):
    probe = AttributionCache(f"{store}-probe", memory_bytes=0)
    probe.put("0" * 64, _value(0), {})
    entry = next(probe.ls())["bytes"]
    cache = AttributionCache(store, memory_bytes=0, max_disk_bytes=int(entry * 4.5))
    keys = [f"{i:064x}" for i in range(5)]
    for key in keys[:2]:
        cache.put(key, _value(0), {})
    time.sleep(1.1)  # S3's Last-Modified counts whole seconds
    cache.put(keys[2], _value(0), {})
    assert cache.get(keys[0]) is not None  # a hit: recent use, but the object cannot be touched
    cache.put(keys[3], _value(0), {})
    assert cache.stats["evicted"] == 0  # 4 entries: under the cap
    cache.put(keys[4], _value(0), {})  # 5 > 4.5: down to 90 % (4.05), the oldest created goes
    assert sorted(r["key"] for r in cache.ls()) == keys[1:] and cache.stats["evicted"] == 1
    assert cache.info()["eviction_order"] == "creation time"


WRITER = """
import sys, torch
from attrtools.cache import AttributionCache
cache = AttributionCache(sys.argv[1], memory_bytes=0)
count, size = int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    value = torch.randn(size, generator=torch.Generator().manual_seed(i))
    cache.put(f"{i:064x}", value, {"i": i})
    print(i, flush=True)
"""


def _writer(url, count, size):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", WRITER, url, str(count), str(size)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_s3_concurrent_writers_and_a_writer_killed_mid_put(s3_url):
    count, size, big = 12, 4096, 2 ** 21
    killed = _writer(f"{s3_url}-killed", 50, big)  # 8 MiB objects
    writers = [_writer(s3_url, count, size) for _ in range(2)]  # the same keys, at the same time
    assert killed.stdout.readline().strip() == "0", killed.stderr.read()[-2000:]  # one stored, the next on its way
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    for proc in writers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    cache = AttributionCache(s3_url, memory_bytes=0)
    assert cache.verify() == {"checked": count, "bad": [], "stale_tmp": [], "removed": 0}
    for i in range(count):
        got, meta = cache.get(f"{i:064x}")
        assert meta == {"i": i} and torch.equal(got, torch.randn(size, generator=torch.Generator().manual_seed(i)))
    # an object put is whole or absent: the killed writer left no partial entry
    survivor = AttributionCache(f"{s3_url}-killed", memory_bytes=0)
    report = survivor.verify()
    assert report["bad"] == [] and report["checked"] >= 1
    assert all(torch.equal(survivor.get(r["key"])[0], torch.randn(big, generator=torch.Generator().manual_seed(
        int(r["key"], 16)))) for r in survivor.ls())


def test_s3_another_writers_entries_are_seen(s3_url):
    """s3fs caches listings for the process's life; a rank must still see another rank's writes."""
    import s3fs

    cache = AttributionCache(s3_url, memory_bytes=0)
    cache.put("a" * 64, _value(0), {})
    assert [r["key"] for r in cache.ls()] == ["a" * 64] and "b" * 64 not in cache  # listings now cached
    other = s3fs.S3FileSystem(skip_instance_cache=True)  # another process's view of the store
    other.pipe_file(cache.path("b" * 64), encode_entry("b" * 64, _value(1), {}))
    assert "b" * 64 in cache and sorted(r["key"] for r in cache.ls()) == ["a" * 64, "b" * 64]
    assert cache.info()["entries"] == 2


def test_credentials_never_in_the_location_logs_or_run_directory(s3_url, planted_dir, tmp_path, caplog):
    from click.testing import CliRunner

    from attrtools.cli import main as cli
    from attrtools.errors import CacheError

    with pytest.raises(CacheError) as refused:
        AttributionCache("s3://AKIAEXAMPLE:wJalrXUtnFEMIbPxRfiCYEXAMPLEKEY@bucket/c")
    assert "wJalr" not in str(refused.value) and "AWS_ACCESS_KEY_ID" in str(refused.value)
    for location in ("s3://AKIA:wJalrXUtnFEMI@bucket/c", "s3://wJalrXUtnFEMI@bucket/c",
                     "az://container/c?sv=2024&sig=wJalrXUtnFEMI", "gs://bucket/c?token=wJalrXUtnFEMI"):
        result = CliRunner().invoke(cli, ["cache", "info", "--cache-dir", location])
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert "wJalr" not in result.output and "may carry credentials" in result.output, result.output
    caplog.set_level("DEBUG")
    args = ["attribute", "--model", planted_dir, "--text", "the alpha film was beta fun", "--param", "steps=2",
            "--cache-dir", s3_url, "--output-dir", str(tmp_path / "run")]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert re.search(r"^computed +1$", first.output, re.M) and re.search(rf"^cache +{s3_url}$", first.output, re.M)
    again = CliRunner().invoke(cli, [*args[:-1], str(tmp_path / "again")])
    assert again.exit_code == 0 and re.search(r"^from cache +1$", again.output, re.M), again.output
    assert (tmp_path / "run" / "run_config.json").exists()
    for folder in ("run", "again"):
        for dirpath, _, files in os.walk(tmp_path / folder):
            for name in files:
                assert SECRET.encode() not in open(os.path.join(dirpath, name), "rb").read(), name
    assert SECRET not in first.output + again.output and SECRET not in caplog.text


def test_missing_backend_or_unknown_protocol_is_one_line(monkeypatch):
    import importlib.util

    from attrtools.errors import CacheError

    monkeypatch.delenv(STORAGE_ENV)
    if importlib.util.find_spec("gcsfs") is None:  # gs:// without its backend
        with pytest.raises(CacheError, match=r"^the cache location gs://\.\.\. needs a package that is not "
                                             r"installed: pip install gcsfs \("):
            AttributionCache("gs://bucket/prefix")
    with pytest.raises(CacheError, match="unknown storage protocol"):
        AttributionCache("nosuchproto://bucket/prefix")


def test_a_folder_that_cannot_refresh_entry_times_says_so(tmp_path, monkeypatch, caplog):
    """A hit refreshes its entry's time (the LRU order of eviction); where that fails (a read-only
    shared folder) the cache says so once, stops trying, and evicts by creation time."""
    monkeypatch.delenv(STORAGE_ENV)
    cache = AttributionCache(tmp_path / "shared", memory_bytes=0)
    cache.put("a" * 64, torch.ones(3))
    tried = []

    def refuse(path, *args, **kwargs):
        tried.append(path)
        raise PermissionError(13, "Permission denied", path)

    assert cache.info()["eviction_order"] == "last use"
    monkeypatch.setattr(os, "utime", refuse)
    with caplog.at_level("INFO", logger="attrtools.cache"):
        assert cache.get("a" * 64) is not None and cache.get("a" * 64) is not None
    assert tried == [cache.path("a" * 64)]  # tried once, not on every hit
    notes = [r.getMessage() for r in caplog.records if "cannot refresh entry times" in r.getMessage()]
    assert len(notes) == 1 and str(tmp_path / "shared") in notes[0] and "creation time" in notes[0]
    assert cache.info()["eviction_order"] == "creation time"
