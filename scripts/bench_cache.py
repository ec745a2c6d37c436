"""Benchmark the attribution cache: cold vs warm (memory tier) vs warm from disk only.

    nice -n 10 python scripts/bench_cache.py --model models/minilm-sst2 --data sst2/dev.tsv --limit 200

AttAttr (m = --steps, official Riemann protocol) on the first --limit sentences of an SST-2 style
file. Prints
  cold        : fresh cache folder, everything computed (and written to disk);
  warm memory : the same engine again (memory tier, tensors on the compute device);
  warm disk   : a fresh cache object + engine in this process (empty memory tier, disk only);
  warm disk, new process : the same from a fresh Python process (model load not timed);
their ratios to the cold time, and the per-entry hit latency of each tier (``cache.get`` alone,
one entry = one (example, layer)). Warm results are checked bit for bit against the cold ones.
Without --model a random MiniLM-size BERT (6 layers, 12 heads, hidden 384) is built from a config.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import bench_env

bench_env.prepare()  # the repository on sys.path, offline environment: before attrtools is imported


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Model folder or hub id (default: random MiniLM-size BERT).")
    p.add_argument("--data", default=None,
                   help="csv/tsv/jsonl with a text column, e.g. SST-2's dev.tsv (default: attrtools' own sentiment dev set).")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    p.add_argument("--device", default=None)
    p.add_argument("--cache-dir", default=None, help="Cache folder; must be fresh (default: a new temp folder).")
    p.add_argument("--workdir", default="runs/bench-cache", help="Where the temp cache and results go.")
    p.add_argument("--out", default=None, help="JSON results file (default: <workdir>/bench_cache.json).")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def random_minilm(directory: str) -> str:
    from attrtools.testing import build_tiny_model

    if not os.path.exists(os.path.join(directory, "config.json")):
        build_tiny_model("bert", directory, layers=6, heads=12, hidden=384, max_positions=512)
    return directory


def load(args):
    import torch

    import attrtools
    from attrtools.data import load_examples

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = attrtools.load_model(args.model, device=args.device)
    examples = load_examples(args.data, limit=args.limit)
    return model, tok, examples


def timed_attribute(engine, examples, args):
    start = time.perf_counter()
    results = engine.attribute(examples, method="attattr", steps=args.steps)
    return time.perf_counter() - start, results


def all_keys(engine, examples, results, args):
    from attrtools import methods
    from attrtools.architecture import num_layers_heads

    params = methods.get("attattr").params(steps=args.steps)
    layers = num_layers_heads(engine.model)[0]
    return [engine.key(engine.encode(e), "attattr", params, "pred", layer)
            for e in examples for layer in range(layers)]


def per_entry_latency(cache, keys, device):
    start = time.perf_counter()
    for key in keys:
        if cache.get(key, device=device) is None:
            raise RuntimeError("benchmark expected a hit")
    return (time.perf_counter() - start) / len(keys)


def worker(args):
    """A fresh process: disk-only warm run; prints JSON (time, hits, checksums of results)."""
    from attrtools.cache import AttributionCache
    from attrtools.engine import Engine

    model, tok, examples = load(args)
    engine = Engine(model, tok, cache=AttributionCache(args.cache_dir), batch_size=args.batch_size, progress=False)
    seconds, results = timed_attribute(engine, examples, args)
    digest = [float(r.scores.double().sum()) for r in results]
    print(json.dumps({"seconds": seconds, "stats": engine.stats, "sums": digest}))


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    if args.data is None:
        from attrtools.default_model import sentiment_data

        args.data = sentiment_data()["dev"]
    if args.model is None:
        args.model = random_minilm(os.path.join(args.workdir, "random-minilm"))
        print(f"no --model: using a random MiniLM-size BERT at {args.model}")
    if args._worker:
        return worker(args)
    if args.cache_dir is None:
        args.cache_dir = tempfile.mkdtemp(prefix="bench-cache-", dir=args.workdir)
    elif os.path.exists(args.cache_dir) and os.listdir(args.cache_dir):
        sys.exit(f"--cache-dir {args.cache_dir} is not empty: the cold run needs a fresh cache")

    import torch

    from attrtools.cache import AttributionCache
    from attrtools.engine import Engine
    from attrtools.architecture import num_layers_heads
    from attrtools.models import model_device

    model, tok, examples = load(args)
    device = model_device(model)
    layers, heads = num_layers_heads(model)
    print(f"model {args.model} ({layers} layers x {heads} heads) on {device}, {len(examples)} examples, "
          f"AttAttr m={args.steps}, batch {args.batch_size}, threads {torch.get_num_threads()}")
    print(f"cache {args.cache_dir}")

    cache = AttributionCache(args.cache_dir, memory_bytes=2 ** 31)
    engine = Engine(model, tok, cache=cache, batch_size=args.batch_size)
    cold, cold_results = timed_attribute(engine, examples, args)
    assert engine.stats["computed"] == len(examples), engine.stats
    warm_memory, memory_results = timed_attribute(engine, examples, args)
    assert engine.stats["hits"] == len(examples), engine.stats

    disk_engine = Engine(model, tok, cache=AttributionCache(args.cache_dir, memory_bytes=2 ** 31),
                         batch_size=args.batch_size)
    warm_disk, disk_results = timed_attribute(disk_engine, examples, args)
    assert disk_engine.stats["computed"] == 0, disk_engine.stats
    exact = all(torch.equal(a.scores, b.scores) and torch.equal(a.scores, c.scores)
                for a, b, c in zip(cold_results, memory_results, disk_results))

    command = [sys.executable, os.path.abspath(__file__), "--_worker", "--model", args.model, "--data", args.data,
               "--limit", str(args.limit), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--cache-dir", args.cache_dir] + (["--threads", str(args.threads)] if args.threads else []) + \
        (["--device", args.device] if args.device else [])
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["stats"]["computed"] == 0, child["stats"]
    child_exact = all(abs(s - float(r.scores.double().sum())) == 0 for s, r in zip(child["sums"], cold_results))

    keys = all_keys(engine, examples, cold_results, args)
    memory_latency = per_entry_latency(cache, keys, device)
    disk_latency = per_entry_latency(AttributionCache(args.cache_dir, memory_bytes=0), keys, device)
    disk_bytes = AttributionCache(args.cache_dir, memory_bytes=0).info()["bytes"]

    rows = {
        "cold_s": cold, "warm_memory_s": warm_memory, "warm_disk_fresh_engine_s": warm_disk,
        "warm_disk_fresh_process_s": child["seconds"],
        "ratio_memory": cold / warm_memory, "ratio_disk_fresh_engine": cold / warm_disk,
        "ratio_disk_fresh_process": cold / child["seconds"],
        "hit_latency_memory_us": memory_latency * 1e6, "hit_latency_disk_us": disk_latency * 1e6,
        "entries": len(keys), "disk_bytes": disk_bytes, "bitwise_equal_in_process": exact,
        "bitwise_equal_fresh_process_sums": child_exact,
    }
    print(f"\n{'run':<34}{'seconds':>10}{'x faster than cold':>20}")
    print(f"{'cold (compute + write)':<34}{cold:>10.2f}{'1':>20}")
    print(f"{'warm, memory tier (same engine)':<34}{warm_memory:>10.4f}{cold / warm_memory:>20.0f}")
    print(f"{'warm, disk only (fresh engine)':<34}{warm_disk:>10.4f}{cold / warm_disk:>20.0f}")
    print(f"{'warm, disk only (fresh process)':<34}{child['seconds']:>10.4f}{cold / child['seconds']:>20.0f}")
    print(f"\nper-entry hit latency ({len(keys)} entries = examples x layers, {disk_bytes / 2 ** 20:.1f} MiB on disk):")
    print(f"  memory tier {memory_latency * 1e6:9.1f} us    disk tier {disk_latency * 1e6:9.1f} us")
    print(f"warm == cold bit for bit: {exact} (in process), {child_exact} (fresh process, per-example sums)")
    out = args.out or os.path.join(args.workdir, "bench_cache.json")
    from attrtools.io import write_json

    write_json(out, {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                     "device": str(device), "threads": torch.get_num_threads(), **rows})
    print(f"results: {out}")


if __name__ == "__main__":
    main()
