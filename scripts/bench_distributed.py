"""Benchmark scale-out: ``attrtools attribute --dataset`` with 1 process and with K ranks.

    nice -n 10 python scripts/bench_distributed.py --limit 64 --steps 10
    python scripts/bench_distributed.py --model /path/to/model --data dev.tsv --nproc 1,2,4

Every configuration runs the same command on the same examples into its own fresh cache folder:
  1 process      : ``python -m attrtools attribute --dataset ...`` (no launcher), the baseline;
  K ranks        : ``torchrun --standalone --nproc_per_node K -m attrtools attribute ...`` for
                   each K of ``--nproc`` (CPU: gloo, one intra-op thread per rank by default);
  on a GPU machine also 1 rank per GPU and 2 ranks sharing GPU 0.
Throughput is examples per second of wall time, start-up included (torch import, model load and
the gloo/NCCL handshake are part of what a user waits for); ``compute ex/s`` leaves out the
start-up by subtracting the wall time of the same command on a single example. Each line gives the
ratio to the 1-process run of this same invocation, and the outputs of every run are checked
against the 1-process outputs (max absolute difference).

Without --model a random BERT (4 layers, 4 heads, hidden 128) is built from a config; without
--data sentences of attrtools' planted task are written.
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

ROOT = bench_env.prepare()  # the repository on sys.path, offline environment


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Model folder or hub id (default: a random small BERT).")
    p.add_argument("--data", default=None, help="csv/tsv/jsonl with a text column (default: planted sentences).")
    p.add_argument("--limit", type=int, default=64, help="Examples attributed.")
    p.add_argument("--method", default="attattr")
    p.add_argument("--steps", type=int, default=10, help="AttAttr Riemann steps.")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--nproc", default="2", help="Comma-separated rank counts to run besides the baseline.")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process (CPU).")
    p.add_argument("--no-startup", action="store_true", help="Skip the 1-example runs that measure start-up.")
    return p.parse_args(argv)


def _env(threads, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), GLOO_SOCKET_IFNAME="lo")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run(label, launcher, args, workdir, threads, limit, env_extra=None):
    """One timed invocation into a fresh cache and output folder; returns its record."""
    tag = label.replace(" ", "_").replace(",", "")
    cache, out = os.path.join(workdir, f"cache-{tag}-{limit}"), os.path.join(workdir, f"out-{tag}-{limit}")
    cmd = [*launcher, "-m", "attrtools", *args, "--limit", str(limit), "--cache-dir", cache, "--output-dir", out]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(threads, **(env_extra or {})), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
    return {"label": label, "wall_s": wall, "out": os.path.join(out, "attributions"), "examples": limit}


def max_difference(a, b) -> float:
    from attrtools.types import Attribution

    names = sorted(os.listdir(a))
    if names != sorted(os.listdir(b)):
        return float("inf")
    worst = 0.0
    for name in names:
        x, y = Attribution.load(os.path.join(a, name)), Attribution.load(os.path.join(b, name))
        worst = max(worst, float((x.scores - y.scores).abs().max()))
    return worst


def main(argv=None):
    args = parse_args(argv)
    import torch

    workdir = tempfile.mkdtemp(prefix="attrtools-bench-dist-")
    model = args.model
    if model is None:
        from attrtools.testing import build_tiny_model

        model = build_tiny_model("bert", os.path.join(workdir, "model"), layers=4, heads=4, hidden=128)
    data = args.data
    if data is None:
        from attrtools.testing import planted_dataset

        data = os.path.join(workdir, "data.jsonl")
        with open(data, "w") as f:
            for text, label in planted_dataset(max(args.limit, 1), seed=0):
                f.write(json.dumps({"text": text, "label": label}) + "\n")
    common = ["attribute", "--model", model, "--dataset", data, "--method", args.method,
              "--param", f"steps={args.steps}", "--batch-size", str(args.batch_size)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    configs = [("1 process", [sys.executable], {})]
    for k in [int(x) for x in args.nproc.split(",") if x.strip()]:
        configs.append((f"{k} ranks", [*torchrun, "--nproc_per_node", str(k)], {}))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        configs.append((f"{gpus} ranks, 1 per GPU", [*torchrun, "--nproc_per_node", str(gpus)], {}))
        configs.append(("2 ranks, 1 GPU", [*torchrun, "--nproc_per_node", "2"], {"CUDA_VISIBLE_DEVICES": "0"}))
    print(f"model {model}  examples {args.limit}  method {args.method} steps {args.steps}  batch {args.batch_size}  "
          f"threads/process {args.threads}  cpus {os.cpu_count()}  gpus {gpus}")
    records = []
    for label, launcher, extra in configs:
        record = run(label, launcher, common, workdir, args.threads, args.limit, extra)
        if not args.no_startup:
            record["startup_s"] = run(label, launcher, common, workdir, args.threads, 1, extra)["wall_s"]
        records.append(record)
    base = records[0]
    base_rate = base["examples"] / base["wall_s"]
    print(f"{'configuration':<22} {'wall s':>8} {'ex/s':>8} {'ratio':>6} {'compute ex/s':>13} {'ratio':>6} {'max |diff|':>11}")
    base_compute = None
    for record in records:
        rate = record["examples"] / record["wall_s"]
        compute = ""
        compute_ratio = ""
        if "startup_s" in record and record["wall_s"] > record["startup_s"]:
            crate = (record["examples"] - 1) / (record["wall_s"] - record["startup_s"])
            base_compute = base_compute or crate
            compute, compute_ratio = f"{crate:13.2f}", f"{crate / base_compute:6.2f}"
        diff = 0.0 if record is base else max_difference(base["out"], record["out"])
        print(f"{record['label']:<22} {record['wall_s']:8.1f} {rate:8.2f} {rate / base_rate:6.2f} "
              f"{compute:>13} {compute_ratio:>6} {diff:11.2e}")
    print(f"(work folder {workdir})")


if __name__ == "__main__":
    main()
