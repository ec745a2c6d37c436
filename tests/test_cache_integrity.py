"""Cache entries that cannot be trusted (``attrtools.cache``, and the engine's check of what it reads):
a flipped bit, a forged header, a hostile file is detected, reported and recomputed, never served; a
cache that cannot be written degrades to a warning. Apart from test_cache.py, whose cases
test_cache_fsspec.py collects again through fsspec: these read and write a local folder's entry files."""
import json
import os
import re
import struct

import pytest
import torch
from click.testing import CliRunner

import attrtools
from attrtools import methods
from attrtools.cache import AttributionCache, CacheWarning, CorruptEntry, decode_entry, encode_entry
from attrtools.cli import main as cli
from attrtools.engine import Engine

from conftest import SENTENCES
from helpers import cache_entries as _entries


# --------------------------------------------------------------------------- entries that do not read back
SMALL_META = {"target": 1, "predicted": 1, "probs": [0.25, 0.75], "method": "grad_input", "kind": "tokens",
              "model": "ab" * 8, "unit": None, "n_tokens": 3}


def _flip(blob: bytes, bit: int) -> bytes:
    data = bytearray(blob)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


def test_every_single_bit_flip_of_an_entry_is_detected_or_harmless():
    """Flip each bit of a small entry in turn: decoding either raises ``CorruptEntry`` or returns
    exactly the stored tensor (dtype, shape, bits) and metadata. Header bits included."""
    key = "c0" * 32
    tensor = torch.tensor([0.25, -1.5, 3.0])
    blob = encode_entry(key, tensor, SMALL_META)
    reference, meta, _ = decode_entry(blob, key)
    assert torch.equal(reference, tensor) and meta == SMALL_META
    header_bytes = 8 + struct.unpack("<Q", blob[:8])[0]
    detected = {"header": 0, "data": 0}
    harmless = 0
    for bit in range(len(blob) * 8):
        try:
            got, got_meta, record = decode_entry(_flip(blob, bit), key)
        except CorruptEntry:
            detected["header" if bit // 8 < header_bytes else "data"] += 1
            continue
        assert got.dtype == reference.dtype and got.shape == reference.shape, bit
        assert torch.equal(got, reference) and got_meta == SMALL_META and record["key"] == key, bit
        harmless += 1
    total = len(blob) * 8
    assert detected["data"] == (len(blob) - header_bytes) * 8  # every bit of the tensor bytes matters
    assert detected["header"] + harmless == header_bytes * 8
    # Harmless flips exist only where the parser ignores a byte (the padding after the header JSON).
    assert harmless <= 8 * 8, harmless
    print(f"bit flips: {detected['header'] + detected['data']} detected, {harmless} harmless, of {total}")


def _write_raw(cache: AttributionCache, key: str, blob: bytes) -> str:
    path = cache.path(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def _tamper(blob: bytes, old: bytes, new: bytes) -> bytes:
    assert blob.count(old) == 1, (old, blob[:400])
    assert len(old) == len(new)  # same header length: only the content changes
    return blob.replace(old, new)


def _hostile_entries(key: str, tensor: torch.Tensor):
    """The corruptions of the issue, by name: (bytes of the entry file)."""
    blob = encode_entry(key, tensor, SMALL_META)
    deep = 200_000
    nested = b'{"__metadata__":{"x":"y"},"scores":' + b"[" * deep + b"]" * deep + b"}"
    return {
        "target 1 -> 0 (one bit)": _tamper(blob, b'\\"target\\": 1', b'\\"target\\": 0'),
        "predicted class": _tamper(blob, b'\\"predicted\\": 1', b'\\"predicted\\": 0'),
        "probabilities": _tamper(blob, b"0.25, 0.75", b"0.75, 0.25"),
        "dtype F32 -> I32": _tamper(blob, b'"F32"', b'"I32"'),
        "shape, same element count": _tamper(blob, b'"shape":[2,3]', b'"shape":[3,2]'),
        "meta key renamed": _tamper(blob, b'\\"predicted\\"', b'\\"predictes\\"'),
        "record dtype": _tamper(blob, b'\\"dtype\\": \\"float32\\"', b'\\"dtype\\": \\"float64\\"'),
        "header nested 200,000 deep": struct.pack("<Q", len(nested)) + nested,
        "metadata nested 200,000 deep": _nested_metadata(deep),
        "truncated": blob[: len(blob) // 2],
        "tensor bit": _flip(blob, len(blob) * 8 - 3),
        "empty file": b"",
        "length prefix only": blob[:8],
        "format 1 (old)": _tamper(blob, b'\\"format\\": 2', b'\\"format\\": 1'),
        "another key inside": _tamper(blob, key.encode(), ("d0" * 32).encode()),
        "not an object": struct.pack("<Q", 4) + b"[1] ",
    }


def _nested_metadata(deep: int) -> bytes:
    inner = json.dumps("[" * deep + "]" * deep)
    header = ('{"__metadata__":{"attrtools_cache":' + inner + '},"scores":{"dtype":"F32","shape":[0],'
              '"data_offsets":[0,0]}}').encode()
    return struct.pack("<Q", len(header)) + header


def test_issue_corruptions_are_detected_by_verify_ls_info_and_get(tmp_path):
    """Each corruption the issue names (and a few more) is reported by `cache verify`, listed as
    unreadable by `ls`/`info` (no RecursionError), and never served by `get`: reported, removed."""
    key = "e1" * 32
    tensor = torch.arange(6, dtype=torch.float32).view(2, 3) / 7
    hostile = _hostile_entries(key, tensor)
    runner = CliRunner()
    caught = 0
    for name, blob in hostile.items():
        directory = tmp_path / re.sub(r"\W+", "_", name)
        cache = AttributionCache(directory, memory_bytes=0)
        path = _write_raw(cache, key, blob)
        verify = runner.invoke(cli, ["cache", "verify", "--cache-dir", str(directory)])
        assert verify.exit_code == 1 and "BAD" in verify.output and "1 bad" in verify.output, (name, verify.output)
        for command in (["cache", "ls"], ["cache", "info"], ["cache", "ls", "--json"]):
            listed = runner.invoke(cli, [*command, "--cache-dir", str(directory)])
            assert listed.exit_code == 0, (name, command, listed.output)
        with pytest.warns(CacheWarning, match="corrupt entry"):
            assert cache.get(key) is None, name
        assert not os.path.exists(path) and cache.stats["corrupt"] == 1, name
        caught += 1
    assert caught == len(hostile) == 16
    print(f"corruptions detected: {caught}/{len(hostile)}")


# --------------------------------------------------------------------- entries that do not fit the request
def test_forged_entry_with_a_valid_checksum_is_not_served(planted, tmp_path):
    """An entry whose checksum is right but whose metadata does not fit the request (a forged or
    buggy writer) is dropped by the engine and recomputed, never served."""
    model, tok = planted
    cache_dir = tmp_path / "c"
    engine = Engine(model, tok, cache=AttributionCache(cache_dir), batch_size=1)
    original = engine.attribute(SENTENCES[:2], method="grad_input")
    params = methods.get("grad_input").params()
    enc = engine.encode(attrtools.Example(SENTENCES[0]))
    key = engine.key(enc, "grad_input", params, original[0].target)  # keys hold the resolved class
    store = AttributionCache(cache_dir, memory_bytes=0)
    tensor, meta = store.get(key)
    classes = model.config.num_labels
    forged = {
        "target flipped": dict(meta, target=1 - meta["target"]),
        "predicted out of range": dict(meta, predicted=classes + 3, target=classes + 3),
        "probs not a distribution": dict(meta, probs=[0.9] * classes),
        "probs missing": {k: v for k, v in meta.items() if k != "probs"},
        "wrong method": dict(meta, method="raw"),
        "predicted a string": dict(meta, predicted="1", target="1"),
    }
    for name, bad in forged.items():
        store.put(key, tensor, bad)
        again = Engine(model, tok, cache=AttributionCache(cache_dir, memory_bytes=0), batch_size=1)
        with pytest.warns(CacheWarning, match="corrupt entry"):
            result = again.attribute(SENTENCES[:1], method="grad_input")
        assert again.stats["computed"] == 1 and again.stats["hits"] == 0, name
        assert torch.equal(result[0].scores, original[0].scores) and result[0].target == original[0].target, name
    wrong_shape = tensor[:-1].clone()
    store.put(key, wrong_shape, meta)
    again = Engine(model, tok, cache=AttributionCache(cache_dir, memory_bytes=0))
    with pytest.warns(CacheWarning, match="payload shape"):
        result = again.attribute(SENTENCES[:1], method="grad_input")
    assert torch.equal(result[0].scores, original[0].scores)


def test_flipped_target_bit_is_recomputed_not_served(planted, tmp_path):
    """The issue's first reproducer end to end: one bit of `"target": 1` in a stored AttAttr unit
    makes the engine recompute (with a warning) instead of serving the other class."""
    model, tok = planted
    cache_dir = tmp_path / "c"
    first = Engine(model, tok, cache=AttributionCache(cache_dir), batch_size=1).attribute(SENTENCES[:1], steps=2)
    target = first[0].target
    flipped = 0
    for path in _entries(cache_dir):
        blob = open(path, "rb").read()
        old = f'\\"target\\": {target}'.encode()
        new = f'\\"target\\": {target ^ 1}'.encode()
        with open(path, "wb") as f:
            f.write(blob.replace(old, new))
        flipped += old in blob
    assert flipped == 2
    runner = CliRunner()
    verify = runner.invoke(cli, ["cache", "verify", "--cache-dir", str(cache_dir)])
    assert verify.exit_code == 1 and "2 bad" in verify.output and "checksum" in verify.output, verify.output
    engine = Engine(model, tok, cache=AttributionCache(cache_dir, memory_bytes=0), batch_size=1)
    with pytest.warns(CacheWarning):
        again = engine.attribute(SENTENCES[:1], steps=2)
    assert engine.stats["computed"] == 1 and again[0].target == target
    assert torch.equal(again[0].scores, first[0].scores)
    assert runner.invoke(cli, ["cache", "verify", "--cache-dir", str(cache_dir)]).exit_code == 0


# -------------------------------------------------------------------------- a cache that cannot be written
def test_full_disk_in_the_cache_degrades_to_a_warning(planted, tmp_path, monkeypatch):
    """ENOSPC in the cache, or a cache path that is a file, ended the command in a traceback; now one warning,
    the run goes on without caching and its results are unchanged."""
    import errno
    import tempfile

    model, tok = planted
    reference = Engine(model, tok, batch_size=1).attribute(SENTENCES[:3], method="grad_input")
    calls = []

    def full(*a, **k):
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    engine = Engine(model, tok, cache=AttributionCache(tmp_path / "c"), batch_size=1)
    with pytest.warns(CacheWarning, match="No space left on device.*continuing without caching"):
        results = engine.attribute(SENTENCES[:3], method="grad_input")
    assert len(calls) == 1  # warned once, then stopped trying
    assert all(torch.equal(a.scores, b.scores) for a, b in zip(results, reference))
    assert _entries(tmp_path / "c") == []
    a_file = tmp_path / "cache-is-a-file"
    a_file.write_text("x")
    monkeypatch.undo()
    engine = Engine(model, tok, cache=AttributionCache(a_file), batch_size=1)
    with pytest.warns(CacheWarning, match="cannot write"):
        results = engine.attribute(SENTENCES[:1], method="grad_input")
    assert torch.equal(results[0].scores, reference[0].scores)
