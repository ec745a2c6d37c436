"""Reduced-precision cache payloads (issue 28, lean payloads): fp16/bf16 round trip within the
stated error, keys that separate precisions, the fp16 range rule, the environment option."""
import glob
import os

import pytest
import torch

from attrtools.cache import DTYPE_ENV, AttributionCache, narrow, storage_key

KEY = "c" * 64
# Round to nearest: relative error <= 2^-(mantissa bits + 1) for normal numbers; fp16 subnormals
# (below 2^-14) have an absolute step of 2^-24, so an absolute error <= 2^-25.
BOUNDS = {"fp16": (2.0 ** -11, 2.0 ** -25), "bf16": (2.0 ** -8, 0.0)}
STORED = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _payload():
    """An attention-like matrix (rows on the simplex, many tiny values) and signed scores."""
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 40, 40) * 4, dim=-1)
    return torch.cat([probs, torch.randn(2, 3, 40, 40) * 3])


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_reduced_payload_round_trip_within_stated_error(tmp_path, dtype):
    value = _payload()
    cache = AttributionCache(tmp_path, dtype=dtype)
    cache.put(KEY, value, {"kind": "matrix"})
    from_memory, meta = cache.get(KEY)
    from_disk, _ = AttributionCache(tmp_path, dtype=dtype, memory_bytes=0).get(KEY)
    assert meta == {"kind": "matrix"}
    assert from_disk.dtype == torch.float32 and torch.equal(from_memory, from_disk)
    assert torch.equal(from_disk, value.to(STORED[dtype]).float())  # exactly the rounded value
    rel, absolute = BOUNDS[dtype]
    err = (from_disk - value).abs()
    assert (err <= rel * value.abs() + absolute).all()
    assert err.max() > 0  # really rounded
    (entry,) = glob.glob(os.path.join(tmp_path, "*", "*.safetensors"))
    assert next(iter(AttributionCache(tmp_path, dtype=dtype).ls()))["dtype"] == str(STORED[dtype]).replace("torch.", "")
    assert os.path.getsize(entry) < value.numel() * 4 * 0.55  # half the fp32 bytes, plus the header


def test_cache_key_separates_dtypes(tmp_path):
    """One folder, three precisions: each reads back only what it stored itself."""
    value = _payload()
    caches = {d: AttributionCache(tmp_path, dtype=d, memory_bytes=0) for d in ("fp32", "fp16", "bf16")}
    caches["fp16"].put(KEY, value, {})
    assert caches["fp32"].get(KEY) is None and caches["bf16"].get(KEY) is None
    assert KEY in caches["fp16"] and KEY not in caches["fp32"]
    caches["fp32"].put(KEY, value, {})
    assert torch.equal(caches["fp32"].get(KEY)[0], value)  # the fp16 entry never answers fp32
    assert torch.equal(caches["fp16"].get(KEY)[0], value.half().float())
    assert len(glob.glob(os.path.join(tmp_path, "*", "*.safetensors"))) == 2
    keys = {storage_key(KEY, d) for d in ("fp32", "fp16", "bf16")}
    assert len(keys) == 3 and storage_key(KEY, "fp32") == KEY  # existing fp32 caches stay valid
    with pytest.warns(UserWarning, match="removed"):
        caches["fp16"].invalidate(KEY, "test")
    assert caches["fp16"].get(KEY) is None and torch.equal(caches["fp32"].get(KEY)[0], value)


def test_fp16_never_turns_a_large_value_into_inf(tmp_path):
    value = torch.tensor([[1.0, 7.0e4], [-3.0, 0.5]])
    assert narrow(value, "fp16").dtype == torch.float32  # beyond 65504: stored exactly instead
    assert narrow(torch.tensor([1.0, float("inf")]), "fp16").dtype == torch.float16  # inf is no overflow
    assert narrow(value, "bf16").dtype == torch.bfloat16  # bf16 has fp32's range
    small = torch.tensor([6e-6, 3e-9, 0.0])  # fp16 would flush or coarsen these: stored exactly
    assert narrow(small, "fp16").dtype == torch.float32 and narrow(small * 1e5, "fp16").dtype == torch.float16
    assert narrow(torch.zeros(3), "fp16").dtype == torch.float16
    cache = AttributionCache(tmp_path, dtype="fp16", memory_bytes=0)
    cache.put(KEY, value, {})
    got, _ = cache.get(KEY)
    assert torch.equal(got, value) and torch.isfinite(got).all()


def test_dtype_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DTYPE_ENV, "bf16")
    assert AttributionCache(tmp_path).dtype == "bf16"
    assert AttributionCache(tmp_path, dtype="fp32").dtype == "fp32"  # the argument wins
    monkeypatch.setenv(DTYPE_ENV, "int8")
    with pytest.raises(ValueError, match="ATTRTOOLS_CACHE_DTYPE.*int8"):
        AttributionCache(tmp_path)
    monkeypatch.delenv(DTYPE_ENV)
    assert AttributionCache(tmp_path).dtype == "fp32"


def test_cli_cache_dtype_option_stores_bf16_and_wins_over_environment(planted_dir, tmp_path, monkeypatch):
    """``--cache-dtype`` (every command that takes ``--cache-dir``) stores payloads at that precision;
    it wins over ``$ATTRTOOLS_CACHE_DTYPE``, which stays the default."""
    from click.testing import CliRunner
    from safetensors import safe_open

    from attrtools.cli import main as cli

    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\nthe alpha movie was good\t1\n")
    monkeypatch.setenv(DTYPE_ENV, "fp16")
    stored = {}
    for flag in ("bf16", None):
        cache_dir = tmp_path / f"cache-{flag}"
        args = ["attribute", "--model", planted_dir, "--dataset", str(data), "--method", "raw", "--cache-dir",
                str(cache_dir), "--output-dir", str(tmp_path / f"run-{flag}")]
        result = CliRunner().invoke(cli, args + (["--cache-dtype", flag] if flag else []))
        assert result.exit_code == 0, result.output
        files = glob.glob(os.path.join(cache_dir, "*", "*.safetensors"))
        assert files
        with safe_open(files[0], "pt") as f:
            stored[flag] = {f.get_tensor(k).dtype for k in f.keys()}
    assert stored["bf16"] == {torch.bfloat16}
    assert stored[None] <= {torch.float16, torch.float32}  # the environment's fp16 (or fp32 out of its range)
    bad = CliRunner().invoke(cli, ["attribute", "--cache-dtype", "int8"])
    assert bad.exit_code != 0 and "int8" in bad.output


def test_bad_cache_dtype_from_the_environment_is_one_line(monkeypatch):
    """``ATTRTOOLS_CACHE_DTYPE=fp8 attrtools cache info`` printed a 13-frame traceback ending in a raw
    ValueError; the dtype is now a ParameterError (still a ValueError): one line, exit 2."""
    from click.testing import CliRunner

    from attrtools.cli import main
    from attrtools.errors import ParameterError

    monkeypatch.setenv("ATTRTOOLS_CACHE_DTYPE", "fp8")
    result = CliRunner().invoke(main, ["cache", "info"])
    assert result.exit_code == 2 and "cache dtype must be 'fp32', 'fp16' or 'bf16'" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    with pytest.raises(ParameterError):
        AttributionCache(dtype="fp8")
