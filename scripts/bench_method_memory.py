"""Peak memory and time of one method on one long input (issue 28, "memory that fits the result").

    OMP_NUM_THREADS=1 python scripts/bench_method_memory.py alti 512
    python scripts/bench_method_memory.py decompx 256 --hidden 384 --layers 6 --heads 12

Builds a random BERT of the given size offline (default: MiniLM-size, 6 layers, d = 384, 12 heads,
512 positions), runs the method's ``compute`` on one input of ``n`` random tokens and prints the
result's size, the process's peak resident set size, the part added by the computation (peak minus
the resident size just before it) and the wall time. Run each measurement in a fresh process (the
peak is the process's). CPU only.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method")
    p.add_argument("tokens", type=int)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=12)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from attrtools import capture
    from attrtools.methods import get
    from attrtools.methods.base import Batch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    config = BertConfig(vocab_size=1000, hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                        max_position_embeddings=max(512, args.tokens), num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    capture.install(model)
    ids = torch.randint(5, 1000, (1, args.tokens))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        logits = model(**inputs).logits
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    out = get(args.method).compute(model, Batch(inputs=inputs, lengths=[args.tokens], targets=logits.argmax(-1),
                                                logits=logits))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.method} n={args.tokens}: result {out[0].numel() * 4 / 2 ** 20:.1f} MB, peak RSS {peak:.0f} MB "
          f"(+{peak - before:.0f} MB during compute), {seconds:.1f} s")


if __name__ == "__main__":
    main()
