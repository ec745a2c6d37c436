"""Benchmark the model fingerprint (``attrtools.models.fingerprint``) against the old one.

    nice -n 10 python scripts/bench_fingerprint.py [--layers 12 --hidden 768 --heads 12]

Builds a random BERT from a config (default BERT-base size, 110 M parameters, about 440 MB of
float32) and prints, in the same process:
  read        : one pass over every parameter's bytes (``torch.Tensor.sum``), the floor of any
                exact check;
  fingerprint : the current fingerprint (sha256 over config + xxh3-128 of each tensor, read in
                place), median of ``--repeats`` warm calls;
  sha256 copy : the previous rule's full rehash (sha256 over ``tensor.numpy().tobytes()``), which
                it skipped on warm calls by trusting version counters that ``.data`` edits do not
                bump (issue 19, item 6);
and the ratio of each to the fingerprint. It also checks that a ``.data`` edit of one bias element
changes the fingerprint.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from attrtools.models import fingerprint

    config = AutoConfig.for_model("bert", num_hidden_layers=args.layers, hidden_size=args.hidden,
                                  num_attention_heads=args.heads, intermediate_size=4 * args.hidden, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    tensors = list(model.state_dict(keep_vars=True).values())
    size = sum(t.numel() * t.element_size() for t in tensors)

    def read():
        for t in tensors:
            t.detach().sum()

    def old_rule():
        digest = hashlib.sha256()
        for t in tensors:
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    fingerprint(model)  # warm-up
    t_read, t_fp, t_old = timed(read, args.repeats), timed(lambda: fingerprint(model), args.repeats), \
        timed(old_rule, args.repeats)
    before = fingerprint(model)
    model.classifier.bias.data[0] += 1e-7
    changed = fingerprint(model) != before
    print(f"model: {sum(t.numel() for t in tensors) / 1e6:.1f} M values, {size / 2 ** 20:.0f} MiB, "
          f"torch threads {torch.get_num_threads()}")
    for name, t in (("read", t_read), ("fingerprint", t_fp), ("sha256 copy", t_old)):
        print(f"{name:<12} {1000 * t:8.1f} ms   {size / t / 2 ** 30:6.2f} GiB/s   x{t / t_fp:.2f} of fingerprint")
    print(f".data edit of one bias element detected: {changed}")
    return 0 if changed else 1


if __name__ == "__main__":
    sys.exit(main())
