"""The benchmark scripts' logic, on CPU: GPU-only paths (precision modes, batch size from free memory,
cache tiers) run here with a tiny model so one command on a GPU machine is known to work."""
import json
import os
import sys

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))

import bench_gpu  # noqa: E402


def test_batch_size_from_memory():
    gib = 1 << 30
    # 1 GiB fixed + 0.5 GiB per example; 80 % of 10 GiB free -> (8 - 1) / 0.5 = 14
    assert bench_gpu.batch_size_from_memory(10 * gib, int(1.5 * gib), 2 * gib) == 14
    assert bench_gpu.batch_size_from_memory(10 * gib, int(1.5 * gib), 2 * gib, cap=8) == 8
    assert bench_gpu.batch_size_from_memory(gib, 4 * gib, 6 * gib) == 1  # never below one
    assert bench_gpu.batch_size_from_memory(10 * gib, 100, 100) == 256  # no growth measured: the cap


def test_precision_modes():
    before = torch.backends.cuda.matmul.allow_tf32
    with bench_gpu.precision("tf32", "cpu"):
        assert torch.backends.cuda.matmul.allow_tf32
    with bench_gpu.precision("fp32", "cpu"):
        assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before
    for mode, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with bench_gpu.precision(mode, "cpu"):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == dtype
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="precision"):
        bench_gpu.precision("fp8", "cpu")


def test_probe_uses_the_default_without_cuda():
    assert bench_gpu.probe_batch_size(lambda count: None, "cpu", 0.8, 64, default=3) == 3


def test_whole_table_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    result = CliRunner().invoke(bench_gpu.main, ["--device", "cpu", "--size", "tiny", "--lengths", "12",
                                                 "--methods", "attattr,globenc", "--precisions", "fp32,bf16",
                                                 "--examples", "2", "--steps", "2", "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = {(r["method"], r["precision"]): r for r in report["rows"]}
    assert set(rows) == {(m, p) for m in ("attattr", "globenc") for p in ("fp32", "bf16")}
    assert rows["attattr", "fp32"]["max_dev_vs_fp32"] == 0
    assert 0 < rows["attattr", "bf16"]["max_dev_vs_fp32"] < 0.2  # bf16 differs, but not wildly
    (cache,) = report["cache"]
    assert cache["examples"] == 2 and cache["memory_hit_ms"] > 0 and cache["disk_hit_ms"] > 0
    assert "cache:" in result.output


def test_cuda_is_required_unless_asked_for_cpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = CliRunner().invoke(bench_gpu.main, ["--size", "tiny"])
    assert result.exit_code != 0 and "no CUDA device" in result.output


# ---------------------------------------------------------------------------- the scripts' shared preamble
def test_bench_scripts_import_bench_env_for_a_call_pyflakes_sees():
    """``import bench_env`` (imported for its effect) was flagged unused by pyflakes."""
    import importlib
    import io
    import pathlib
    import sys

    from pyflakes import api as pyflakes_api  # the dev extra
    from pyflakes.reporter import Reporter

    scripts = pathlib.Path(__file__).resolve().parent.parent / "scripts"
    out = io.StringIO()
    for name in ("bench_cache.py", "bench_distributed.py", "bench_env.py"):
        pyflakes_api.checkPath(str(scripts / name), Reporter(out, out))
    assert "bench_env" not in out.getvalue(), out.getvalue()
    sys.path.insert(0, str(scripts))
    try:
        bench_env = importlib.import_module("bench_env")
        assert bench_env.prepare() == str(scripts.parent) and sys.path.index(str(scripts.parent)) >= 0
        assert os.environ["HF_HUB_OFFLINE"]
    finally:
        sys.path.remove(str(scripts))
