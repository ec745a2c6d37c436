"""Peak memory of ``attrtools attribute --dataset`` against the dataset's size (issue 13).

    nice -n 10 python scripts/bench_memory.py                     # 50 vs 5,000 sentences
    python scripts/bench_memory.py --sizes 50,5000,20000 --steps 8 --model /path/to/model

For each size the same command runs in a fresh process on the same kind of short sentences
(attrtools' planted task, 7-14 tokens), AttAttr, into a fresh cache and output folder, under
``/usr/bin/time -v``; the script prints every run's maximum resident set size and its ratio to the
smallest size's. Streaming keeps memory independent of the dataset: the ratio should stay near 1
(issue 13 asks for at most 1.5 between 50 and 5,000 sentences). Without --model a random tiny BERT
(``attrtools.testing.build_tiny_model``) is built in the work folder.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # attrtools.testing builds the model and the sentences


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Model folder (default: a random tiny BERT built here).")
    p.add_argument("--sizes", default="50,5000", help="Comma-separated dataset sizes; the first is the baseline.")
    p.add_argument("--steps", type=int, default=8, help="AttAttr Riemann steps.")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the measured process.")
    p.add_argument("--workdir", default=None, help="Where model, data, caches and outputs go (default: a temp dir).")
    return p.parse_args(argv)


def peak_rss_mb(stderr: str) -> float:
    """``Maximum resident set size (kbytes)`` of GNU time's ``-v`` report, in MB."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if not match:
        raise RuntimeError("no 'Maximum resident set size' in /usr/bin/time -v output:\n" + stderr[-2000:])
    return int(match.group(1)) / 1024


def main(argv=None) -> int:
    args = parse_args(argv)
    if not os.path.exists("/usr/bin/time"):
        print("needs GNU time at /usr/bin/time (apt-get install time)", file=sys.stderr)
        return 2
    from attrtools.testing import build_tiny_model, planted_dataset

    work = args.workdir or tempfile.mkdtemp(prefix="attrtools-bench-memory-")
    os.makedirs(work, exist_ok=True)
    model = args.model or build_tiny_model("bert", os.path.join(work, "model"))
    sizes = [int(s) for s in args.sizes.split(",")]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    rows = []
    for size in sizes:
        data = os.path.join(work, f"short{size}.jsonl")
        with open(data, "w") as f:
            for text, label in planted_dataset(size, seed=9):
                f.write(json.dumps({"text": text, "label": label}) + "\n")
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "attrtools", "attribute", "--model", model,
               "--dataset", data, "--param", f"steps={args.steps}", "--batch-size", str(args.batch_size),
               "--cache-dir", os.path.join(work, f"cache{size}"), "--output-dir", os.path.join(work, f"out{size}"),
               "--no-progress", "--overwrite"]
        start = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.time() - start
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        rows.append((size, peak_rss_mb(proc.stderr), wall))
        print("  " + " ".join(c if " " not in c else repr(c) for c in cmd[2:]), flush=True)
    base = rows[0][1]
    print(f"{'examples':>9} {'peak RSS MB':>12} {'ratio':>6} {'wall s':>7}")
    for size, peak, wall in rows:
        print(f"{size:>9} {peak:>12.1f} {peak / base:>6.2f} {wall:>7.1f}")
    print(f"ratio {sizes[-1]} / {sizes[0]} examples: {rows[-1][1] / base:.2f} (issue 13 asks for at most 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
