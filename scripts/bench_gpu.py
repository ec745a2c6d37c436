#!/usr/bin/env python
"""The GPU table in one command: precisions, lengths, methods, batch sizes from free memory, cache tier.

    python scripts/bench_gpu.py                      # on a CUDA machine: the whole table
    python scripts/bench_gpu.py --output gpu.json    # also as JSON (one record per row)
    python scripts/bench_gpu.py --device cpu --size tiny --lengths 16 --examples 2   # logic check on CPU

For a BERT-base-size classifier (random weights; the cost depends on the shapes only) at each length
(128 and 512 tokens by default), and each method (AttAttr, GlobEnc, DecompX, Chefer LRP):

  precision  fp32 (TF32 off), tf32 (TF32 matmuls), bf16 and fp16 (torch.autocast around the call);
  batch      examples per engine batch, found from free memory: a probe at 1 and 2 examples measures
             the peak memory per example, and the batch fills ``--memory-fraction`` of what is free;
  s/ex       seconds per example (one warm-up call first, then ``--examples`` examples);
  max dev    max |x - x_fp32| / max |x_fp32| over the examples, against the fp32 row;

then the fp32 and bf16 matmul peaks of the device, and the cache tiers: AttAttr on ``--examples``
examples cold (empty cache), warm from the device memory tier, and from the disk tier (a fresh cache
object on the same folder), with the latency of one memory-tier and one disk-tier hit.
"""
from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import tempfile
import time

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
METHODS = ("attattr", "globenc", "decompx", "chefer_lrp")


def precision(mode: str, device):
    """Context for one precision mode: TF32 matmul flags for fp32/tf32, autocast for bf16/fp16."""
    import torch

    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {mode!r}")

    @contextlib.contextmanager
    def scope():
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
        try:
            if mode in ("bf16", "fp16"):
                dtype = torch.bfloat16 if mode == "bf16" else torch.float16
                with torch.autocast(torch.device(device).type, dtype=dtype):
                    yield
            else:
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    return scope()


def batch_size_from_memory(free_bytes: int, peak_one: int, peak_two: int, fraction: float = 0.8,
                           cap: int = 256) -> int:
    """Examples per batch that fit ``fraction`` of ``free_bytes``, from the peak memory of a probe
    at 1 and 2 examples (per example = the difference; fixed part = the rest)."""
    per_example = max(1, peak_two - peak_one)
    fixed = max(0, peak_one - per_example)
    usable = fraction * free_bytes - fixed
    return int(max(1, min(cap, usable // per_example)))


def probe_batch_size(run, device, fraction: float, cap: int, default: int) -> int:
    """Batch size for ``run(batch_examples)`` on ``device``: measured on CUDA, ``default`` elsewhere."""
    import torch

    if torch.device(device).type != "cuda":
        return default
    peaks = []
    for count in (1, 2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run(count)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
    free, _ = torch.cuda.mem_get_info(device)
    return batch_size_from_memory(free, peaks[0], peaks[1], fraction, cap)


def deviation(ours, reference) -> float:
    return max(((a.scores.float() - b.scores.float()).abs().max() / b.scores.float().abs().max().clamp_min(1e-30))
               .item() for a, b in zip(ours, reference))


def time_call(fn, device) -> tuple[float, object]:
    from bench_attattr import sync

    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def build_model(size: str, directory: str, device):
    import bench_attattr

    if size == "tiny":
        bench_attattr.SIZES.setdefault("tiny", dict(layers=2, heads=2, hidden=32))
    return bench_attattr.build(size, directory, device)


def method_rows(model, tokenizer, texts, device, methods, precisions, steps, fraction, cap, default_batch, log):
    import attrtools

    rows = []
    for method in methods:
        params = {"steps": steps} if method == "attattr" else {}
        reference = None
        for mode in precisions:
            def run(count, batch_size=None, mode=mode):
                with precision(mode, device):
                    return attrtools.attribute(model, tokenizer, texts[:count], method=method,
                                               batch_size=batch_size or count, **params)

            batch = probe_batch_size(run, device, fraction, cap, default_batch)
            run(1)  # warm-up
            seconds, out = time_call(lambda: run(len(texts), batch), device)
            if mode == "fp32":
                reference = out
            row = {"method": method, "precision": mode, "tokens": len(out[0].tokens), "batch": batch,
                   "s_per_example": seconds / len(texts),
                   "max_dev_vs_fp32": deviation(out, reference) if reference is not None else None}
            rows.append(row)
            log(row)
    return rows


def cache_rows(model, tokenizer, texts, device, steps, log):
    from attrtools.cache import AttributionCache
    from attrtools.engine import Engine

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cache = AttributionCache(folder, device=device)
        engine = Engine(model, tokenizer, cache=cache, batch_size=len(texts))
        cold, first = time_call(lambda: engine.attribute(texts, method="attattr", steps=steps), device)
        warm, second = time_call(lambda: engine.attribute(texts, method="attattr", steps=steps), device)
        disk_cache = AttributionCache(folder, device=device)
        disk_engine = Engine(model, tokenizer, cache=disk_cache, batch_size=len(texts))
        disk, third = time_call(lambda: disk_engine.attribute(texts, method="attattr", steps=steps), device)
        assert deviation(second, first) == 0 and deviation(third, first) == 0, "cached != computed"
        key = next(row["key"] for row in cache.ls() if row.get("method") == "attattr")
        memory_hit = _hit_latency(lambda: cache.get(key, device=device), device)
        disk_hit = _hit_latency(lambda: AttributionCache(folder, memory_bytes=0, device=device).get(key, device=device),
                                device)
        row = {"examples": len(texts), "cold_s": cold, "warm_memory_s": warm, "warm_disk_s": disk,
               "speedup_memory": cold / warm, "speedup_disk": cold / disk,
               "memory_hit_ms": 1e3 * memory_hit, "disk_hit_ms": 1e3 * disk_hit,
               "memory_tier_device": str(cache.device)}
        rows.append(row)
        log(row)
    return rows


def _hit_latency(get, device, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        seconds, hit = time_call(get, device)
        if hit is None:
            raise RuntimeError("expected a cache hit")
        times.append(seconds)
    return statistics.median(times)


@click.command()
@click.option("--device", default="cuda", show_default=True)
@click.option("--size", default="bert-base", show_default=True, help="bert-base, minilm, or tiny (logic check).")
@click.option("--lengths", default="128,512", show_default=True)
@click.option("--methods", default=",".join(METHODS), show_default=True)
@click.option("--precisions", default=",".join(PRECISIONS), show_default=True)
@click.option("--examples", default=8, show_default=True, help="Examples timed per row.")
@click.option("--steps", default=20, show_default=True, help="AttAttr steps m.")
@click.option("--memory-fraction", default=0.8, show_default=True)
@click.option("--max-batch", default=64, show_default=True)
@click.option("--cpu-batch", default=4, show_default=True, help="Batch size where no CUDA memory can be probed.")
@click.option("--output", default=None, help="Also write the rows as JSON here.")
def main(device, size, lengths, methods, precisions, examples, steps, memory_fraction, max_batch, cpu_batch, output):
    import torch
    import transformers

    from bench_attattr import matmul_peak, sentence

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("no CUDA device here; pass --device cpu for a logic check")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": name, "torch": torch.__version__, "size": size, "steps": steps, "rows": [], "cache": []}
    peak_size = 8192 if device.type == "cuda" else 512
    report["peak_fp32_tflops"] = matmul_peak(device, torch.float32, peak_size) / 1e12
    report["peak_bf16_tflops"] = matmul_peak(device, torch.bfloat16, peak_size) / 1e12
    click.echo(f"{name}, torch {torch.__version__}; torch.mm peak fp32 {report['peak_fp32_tflops']:.4g} TFLOP/s, "
               f"bf16 {report['peak_bf16_tflops']:.4g} TFLOP/s")
    header = f"{'method':<11} {'prec':<5} {'tokens':>6} {'batch':>5} {'s/ex':>9} {'max dev vs fp32':>15}"

    def log(row):
        if "method" in row:
            dev = "" if row["max_dev_vs_fp32"] is None else f"{row['max_dev_vs_fp32']:.2e}"
            click.echo(f"{row['method']:<11} {row['precision']:<5} {row['tokens']:>6} {row['batch']:>5} "
                       f"{row['s_per_example']:>9.4f} {dev:>15}")
        else:
            click.echo(f"cache: {row['examples']} examples, cold {row['cold_s']:.3f}s, warm (memory tier on "
                       f"{row['memory_tier_device']}) {row['warm_memory_s']:.4f}s = {row['speedup_memory']:.0f}x, "
                       f"disk tier {row['warm_disk_s']:.4f}s = {row['speedup_disk']:.0f}x; one hit: memory "
                       f"{row['memory_hit_ms']:.3f} ms, disk {row['disk_hit_ms']:.3f} ms")

    with tempfile.TemporaryDirectory() as folder:
        model, tokenizer = build_model(size, folder, device)
        rng = random.Random(0)
        for length in [int(x) for x in lengths.split(",")]:
            texts = [sentence(rng, length) for _ in range(examples)]
            click.echo(f"\n{size}, {length} tokens, {examples} examples\n{header}\n{'-' * len(header)}")
            report["rows"] += method_rows(model, tokenizer, texts, device, methods.split(","), precisions.split(","),
                                          steps, memory_fraction, max_batch, cpu_batch, log)
            report["cache"] += [dict(row, tokens=length) for row in cache_rows(model, tokenizer, texts, device,
                                                                               steps, log)]
    if output:
        from attrtools.io import write_json

        write_json(output, report)


if __name__ == "__main__":
    main()
