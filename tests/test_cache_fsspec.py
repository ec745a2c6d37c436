"""The object-store tier (``FsspecCache``): the cache's own test suite run again with every cache
going through fsspec (local folders as ``file://``, subprocesses and the CLI included), plus
``memory://`` specifics: one whole-object put per entry, corruption caught, the CLI's
``--cache-dir memory://...``, and the distributed sentinel through the cache's own storage."""
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


def test_memory_store_one_put_per_entry_and_corruption(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV)
    cache = AttributionCache("memory://attrtools-test-store", memory_bytes=0)
    assert isinstance(cache, FsspecCache) and cache.directory == "memory://attrtools-test-store"
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
