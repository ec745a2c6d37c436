"""Faults and hostile files (issue 18): cache entry integrity, validated method parameters.

Each reproducer of the issue is a test here; the counts in the closing note come from these."""
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
from attrtools.methods.base import ParameterError

from conftest import SENTENCES


def _entries(directory):
    out = []
    for dirpath, _, files in os.walk(directory):
        out += [os.path.join(dirpath, f) for f in files if f.endswith(".safetensors") and not f.startswith(".tmp-")]
    return sorted(out)


def _one_line(output: str) -> bool:
    return len([line for line in output.strip().splitlines() if line.strip()]) == 1


# ------------------------------------------------------------------------------ cache integrity
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


# ------------------------------------------------------------------------------ method parameters
def test_every_method_declares_a_schema_for_each_default():
    for name in methods.list_methods():
        impl = methods.get(name)
        assert set(impl.schema) == set(impl.defaults), name
        resolved = impl.params()  # every default is valid under its own schema
        # a None default is "the method's own choice", which params() may make concrete (the
        # integration rule: attattr/ig_embed's steps_method), valid under the same schema
        assert {k: v for k, v in resolved.items() if impl.defaults[k] is not None} == \
            {k: v for k, v in impl.defaults.items() if v is not None}, name
        assert all(impl.schema[k].valid(v) for k, v in resolved.items()), name


BAD_PARAMS = [
    ("attattr", "internal_batch_size", -1), ("attattr", "internal_batch_size", 0),
    ("decompx", "internal_batch_size", -1), ("ig_embed", "internal_batch_size", 0),
    ("attattr", "steps", "abc"), ("attattr", "steps", 1.5), ("attattr", "steps", 0), ("attattr", "steps", -3),
    ("attattr", "steps", True), ("attattr", "steps", None), ("ig_embed", "steps", 0),
    ("attattr", "steps_method", "simpson"), ("attattr", "target_kind", "log"), ("attattr", "autocast", "fp8"),
    ("gradsam", "rows", "some"), ("grad_input", "aggregate", "max"), ("ig_embed", "baseline", "mean"),
    ("flow", "scale", 0), ("flow", "scale", float("nan")), ("flow", "solver", "cplex"),
    ("globenc", "variant", "X"), ("decompx", "bias_decomp", 1), ("chefer_lrp", "start_layer", "last"),
    ("chefer_grad", "target_kind", None),
]


@pytest.mark.parametrize("method,name,value", BAD_PARAMS)
def test_bad_parameter_values_are_refused_naming_the_parameter(method, name, value):
    with pytest.raises(ParameterError) as info:
        methods.get(method).params(**{name: value})
    message = str(info.value)
    assert f"'{name}'" in message and method in message and "\n" not in message, message


def test_cross_parameter_check_and_unknown_parameter():
    with pytest.raises(ParameterError, match="riemann_trapezoid needs steps >= 2"):
        methods.get("attattr").params(steps=1, steps_method="riemann_trapezoid")
    with pytest.raises(ParameterError, match="unknown parameter.*stepz"):
        methods.get("attattr").params(stepz=3)
    assert methods.get("attattr").params(internal_batch_size=3, steps=5)["steps"] == 5


def test_bad_parameter_computes_and_caches_nothing(planted, planted_dir, tmp_path, monkeypatch):
    """`--param internal_batch_size=-1` used to return zeros and cache them under the normal key."""
    model, tok = planted
    impl = methods.get("attattr")
    monkeypatch.setattr(impl, "compute", lambda *a, **k: pytest.fail("computed with an impossible value"))
    cache_dir = tmp_path / "c"
    with pytest.raises(ParameterError, match="internal_batch_size"):
        Engine(model, tok, cache=AttributionCache(cache_dir)).attribute(SENTENCES[:1], internal_batch_size=-1)
    assert _entries(cache_dir) == []
    runner = CliRunner()
    for param in ("internal_batch_size=-1", "steps=abc", "steps=1.5", "steps=0"):
        result = runner.invoke(cli, ["attribute", "--model", planted_dir, "--text", "alpha beta", "--param", param,
                                     "--cache-dir", str(cache_dir), "--output-dir", str(tmp_path / "run")])
        assert result.exit_code == 2 and _one_line(result.output), (param, result.output)
        assert param.split("=")[0] in result.output, result.output
    assert _entries(cache_dir) == [] and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ model folders
def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_folder_without_tokenizer_files_is_refused_naming_it(planted_dir, tmp_path):
    from attrtools.guard import ModelFolderError

    folder = _copy_model(planted_dir, tmp_path / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if os.path.exists(os.path.join(folder, name)):
            os.unlink(os.path.join(folder, name))
    with pytest.raises(ModelFolderError, match="no tokenizer files") as info:
        attrtools.load_model(folder)
    assert folder in str(info.value)
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and _one_line(result.output) and folder in result.output, result.output


def test_tiny_tokenizer_against_a_large_vocabulary_is_refused(planted_dir, tmp_path):
    from transformers import BertTokenizer

    from attrtools.guard import ModelFolderError

    folder = _copy_model(planted_dir, tmp_path / "tiny-tokenizer")
    os.unlink(os.path.join(folder, "tokenizer.json"))
    BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}).save_pretrained(folder)
    with pytest.raises(ModelFolderError, match=r"tokenizer has \d+ tokens but the model's vocabulary has"):
        attrtools.load_model(folder)


def test_input_that_is_mostly_unknown_tokens_is_refused(planted):
    from attrtools.guard import VocabularyError

    model, tok = planted
    with pytest.raises(VocabularyError, match=r"100% of the 9 input tokens are '\[UNK\]'"):
        attrtools.attribute(model, tok, ["zork quux blarg fnord xyzzy plugh wibble wobble frob"], method="raw")
    assert len(attrtools.attribute(model, tok, ["alpha zork beta the"], method="raw")) == 1  # a few are fine


def test_folder_without_config_json(planted_dir, tmp_path):
    folder = _copy_model(planted_dir, tmp_path / "no-config")
    os.unlink(os.path.join(folder, "config.json"))
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "r1")])
    assert result.exit_code == 1 and _one_line(result.output) and "no config.json" in result.output, result.output
    file_model = tmp_path / "model.txt"
    file_model.write_text("x")
    result = CliRunner().invoke(cli, ["attribute", "--model", str(file_model), "--text", "alpha", "--no-cache",
                                      "--output-dir", str(tmp_path / "r2")])
    assert result.exit_code == 1 and _one_line(result.output) and "is a file" in result.output, result.output


EVIL_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("the folder's Python ran")
from transformers import BertConfig as _Base
class EvilConfig(_Base):
    model_type = "evil-bert"
"""


def test_remote_code_is_never_run(planted_dir, tmp_path):
    """A folder whose config points at its own Python (auto_map): refused for an unknown
    model_type; for a known one the built-in class loads. The folder's code never runs."""
    marker = tmp_path / "ran.txt"
    folder = _copy_model(planted_dir, tmp_path / "remote")
    with open(os.path.join(folder, "configuration_evil.py"), "w") as f:
        f.write(EVIL_MODULE.format(marker=str(marker)))
    config_path = os.path.join(folder, "config.json")
    config = json.load(open(config_path))
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForSequenceClassification": "configuration_evil.EvilConfig"}
    known = dict(config)
    config["model_type"] = "evil-bert"
    json.dump(config, open(config_path, "w"))
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "run")], input="y\ny\ny\n")
    assert result.exit_code == 1 and _one_line(result.output), result.output
    assert "custom code" in result.output and "trust_remote_code=False" in result.output
    json.dump(known, open(config_path, "w"))
    model, _ = attrtools.load_model(folder)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not marker.exists()


def test_every_from_pretrained_pins_trust_remote_code_false():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "attrtools")
    calls = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            text = open(os.path.join(dirpath, name), encoding="utf-8").read()
            for match in re.finditer(r"\.from_pretrained\(", text):
                line_end = text.index("\n", match.end())
                call = text[match.end(): text.index(")", match.end()) + 1] if ")" in text[match.end(): line_end + 200] else ""
                if text[match.start() - 1] == "`" or "``" in text[text.rindex("\n", 0, match.start()): match.start()]:
                    continue  # prose in a docstring
                calls += 1
                assert "trust_remote_code=False" in call or "**model_kwargs" in call, (name, call)
    assert calls >= 4


def test_pickle_weights_refused_in_one_line(planted_dir, tmp_path):
    """A pytorch_model.bin holding more than tensors: transformers refuses it (weights_only);
    attrtools says so in one line, and the payload never runs."""
    from safetensors.torch import load_file

    marker = tmp_path / "unpickled.txt"
    folder = _copy_model(planted_dir, tmp_path / "pickled")
    weights = os.path.join(folder, "model.safetensors")
    state = load_file(weights)
    os.unlink(weights)

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state["payload"] = Payload()
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    result = CliRunner().invoke(cli, ["attribute", "--model", folder, "--text", "alpha beta", "--no-cache",
                                      "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and _one_line(result.output), result.output
    assert "pickle" in result.output and folder in result.output
    assert not marker.exists()


@pytest.mark.parametrize("device", ["banana", "cuda:7", "tpu"])
def test_bad_device_is_a_usage_error(planted_dir, device, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(cli, ["attribute", "--model", planted_dir, "--text", "alpha beta", "--no-cache",
                                      "--device", device, "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and _one_line(result.output) and device in result.output, result.output


# ------------------------------------------------------------------------------ run directories
def _dataset(path, texts):
    path.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts)))
    return str(path)


TEXTS = ["alpha the beta", "beta good alpha", "the movie was good", "a dull story", "fun music", "it is fine"]


def _attribute(model_dir, data, out, *extra):
    return CliRunner().invoke(cli, ["attribute", "--model", model_dir, "--dataset", data, "--method", "raw",
                                    "--output-dir", str(out), *extra])


def test_rerun_with_other_rows_is_refused_or_overwritten_never_mixed(planted_dir, tmp_path):
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


LOCK_HOLDER = """
import sys, time
from attrtools import rundir
run = rundir.prepare(sys.argv[1], "attribute", {"n": 1})
print("locked", flush=True)
time.sleep(60)
"""


def test_second_concurrent_writer_is_refused(planted_dir, tmp_path):
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
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = _attribute(planted_dir, _dataset(tmp_path / "d.jsonl", TEXTS[:1]), out, "--overwrite")
    assert result.exit_code == 2 and "not an attrtools run directory" in result.output, result.output
    assert (out / "thesis.tex").read_text() == "precious"


def test_unwritable_output_fails_before_the_model_loads(planted_dir, tmp_path, monkeypatch):
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


def test_save_pruned_is_atomic(planted, planted_dir, tmp_path, monkeypatch):
    from attrtools.pruning import prune as P

    model, tok = attrtools.load_model(planted_dir)
    final = str(tmp_path / "pruned")
    P.prune_heads(model, {0: [0]})
    P.save_pruned(model, tok, final)
    reference, _ = P.load_pruned(final)
    original = P._write_pruned

    def crash(model, tokenizer, directory, extra=None):
        original(model, tokenizer, directory, extra)
        os.unlink(os.path.join(directory, "model.safetensors"))  # half written ...
        raise OSError(28, "No space left on device")  # ... when the disk fills

    monkeypatch.setattr(P, "_write_pruned", crash)
    with pytest.raises(OSError):
        P.save_pruned(model, tok, final)
    reloaded, _ = P.load_pruned(final)  # the old folder is still there, whole
    assert P.pruned_heads_of(reloaded) == P.pruned_heads_of(reference)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")] == []
    with pytest.raises(OSError):
        P.save_pruned(model, tok, str(tmp_path / "fresh"))
    assert not os.path.exists(tmp_path / "fresh")  # never a folder that does not load


# ------------------------------------------------------------------------------ disks
def test_full_disk_in_the_cache_degrades_to_a_warning(planted, tmp_path, monkeypatch):
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


def test_full_disk_for_outputs_stops_in_one_line_and_keeps_the_work(planted_dir, tmp_path, monkeypatch):
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


# ------------------------------------------------------------------------------ bad inputs
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


# ------------------------------------------------------------------------------ evaluate resumes
def test_evaluate_rerun_after_a_kill_redoes_no_finished_forwards(planted, tmp_path):
    """A kill after the second method: the rerun takes the finished methods' perturbed forwards
    (and the clean ones) from the cache, and its table equals an uninterrupted run's."""
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.testing import planted_dataset
    from attrtools.types import Example

    model, tok = planted
    examples = [Example(t, label=y) for t, y in planted_dataset(12, seed=9)]
    methods_ = ["grad_input", "raw", "rollout"]
    plain = evaluate_methods(model, tok, examples, methods_, cache=None, reference=None)
    cache = AttributionCache(tmp_path / "c")

    class Killed(Exception):
        pass

    def kill_after_two(evaluation):
        if len(evaluation.results) == 3:  # random, grad_input, raw finished
            raise Killed

    with pytest.raises(Killed):
        evaluate_methods(model, tok, examples, methods_, cache=cache, reference=None, on_result=kill_after_two)
    rerun = evaluate_methods(model, tok, examples, methods_, cache=AttributionCache(tmp_path / "c"), reference=None)
    unfinished = evaluate_methods(model, tok, examples, ["rollout"], cache=None, reference=None)
    # Only what the killed run had not reached is computed again: rollout's perturbations that no
    # finished method shared (an uninterrupted rollout-only run computes those plus the clean pass).
    assert rerun.forwards < plain.forwards and rerun.forwards <= unfinished.forwards - len(examples)
    assert rerun.forwards_reused > 0
    for a, b in zip(rerun.results, plain.results):
        assert a.name == b.name and a.summary["aopc_comp"] == pytest.approx(b.summary["aopc_comp"], abs=1e-9)
    again = evaluate_methods(model, tok, examples, methods_, cache=AttributionCache(tmp_path / "c"), reference=None)
    assert again.forwards == 0  # everything, clean pass included, from the cache
    print(f"evaluate rerun after kill: {rerun.forwards} forwards (uninterrupted: {plain.forwards}); "
          f"complete rerun: {again.forwards}")


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
