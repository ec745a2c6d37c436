"""Bytes the attribution cache takes per example for the ``prune`` and ``tree`` tools, before and after
lean payloads, and the error of bf16/fp16 payloads (issue 28, "lean payloads").

    OMP_NUM_THREADS=1 python scripts/bench_cache_bytes.py 512 --steps 2
    OMP_NUM_THREADS=1 python scripts/bench_cache_bytes.py 64 --dtypes fp32 fp16 bf16

Builds a random BERT of the given size offline (default: BERT-base, 12 layers, d = 768, 12 heads) and
one input of ``n`` tokens. For each cache dtype, into a fresh cache folder per tool:

- ``before``: the engine calls the tools made before lean payloads, full per-head matrices
  (``prune``: AttAttr with the gold target and raw attention, its ``attattr`` and ``attention``
  strategies; ``tree``: AttAttr with the predicted target);
- ``after``: the tools' own calls (``head_importance`` with both strategies, ``build_trees``), which
  ask the engine for ``reduce="head_max"`` / ``"heads_sum"`` (attrtools.reduction);

runs each twice (the second run reads what the first stored) and prints the bytes each left on
disk, and whether the head-importance table and the tree edges of
``after`` equal those computed from ``before``'s full matrices. For a reduced-precision dtype it prints
the error of the stored matrices against fp32 (max absolute, max relative on entries above 1e-3 of the
matrix's max) and whether the head ranking and tree edges match fp32. The byte counts do not depend
on ``--steps`` (the IG step count: a small one keeps the CPU time short). CPU only.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _bytes(folder):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files
               if f.endswith(".safetensors"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tokens", type=int)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "fp16", "bf16"])
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from attrtools import capture
    from attrtools.cache import AttributionCache
    from attrtools.engine import Engine
    from attrtools.pruning.importance import head_importance
    from attrtools.testing import WORDS, write_tokenizer
    from attrtools.tree.build import build_trees, tree_from_attribution
    from attrtools.types import Example

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        tok = write_tokenizer(os.path.join(tmp, "tok"))
        tok.model_max_length = max(512, args.tokens)
        config = BertConfig(vocab_size=len(tok), hidden_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                            max_position_embeddings=max(512, args.tokens), num_labels=2)
        torch.manual_seed(0)
        model = BertForSequenceClassification(config).eval()
        capture.install(model)
        words = [WORDS[i % len(WORDS)] for i in range(args.tokens - 2)]
        example = Example(" ".join(words), label=1, id="0")
        edges = lambda tree: sorted((str(u), str(v)) for u, v in tree.edges())  # noqa: E731
        results = {}
        for dtype in args.dtypes:
            row = {}
            for mode in ("before", "after"):
                for tool in ("prune", "tree"):
                    folder = os.path.join(tmp, f"{tool}-{mode}-{dtype}")
                    cache = AttributionCache(folder, dtype=dtype, memory_bytes=0)
                    engine = Engine(model, tok, cache=cache, progress=False, max_length=args.tokens)
                    start = time.perf_counter()
                    def run(engine=engine, mode=mode, tool=tool):
                        if mode == "before" and tool == "prune":
                            return [engine.attribute([example], "attattr", target="gold", steps=args.steps)[0],
                                    engine.attribute([example], "raw")[0]]
                        if mode == "before":
                            return engine.attribute([example], "attattr", target="pred", steps=args.steps)[0]
                        if tool == "prune":
                            return [head_importance(model, tok, [example], s, engine=engine, steps=args.steps)
                                    for s in ("attattr", "attention")]
                        return build_trees(engine, [example], steps=args.steps)[0][0]

                    run()
                    out = run()  # from the cache: what a rerun (or another tool) reads back
                    row[mode, tool] = (_bytes(folder), out, time.perf_counter() - start)
                print(f"{dtype} {mode}: prune {row[mode, 'prune'][0] / 2 ** 20:.3f} MiB/example, "
                      f"tree {row[mode, 'tree'][0] / 2 ** 20:.3f} MiB/example "
                      f"(n={args.tokens}, L={args.layers}, H={args.heads}; "
                      f"{row[mode, 'prune'][2]:.0f} s + {row[mode, 'tree'][2]:.0f} s)", flush=True)
            full_importance = [row["before", "prune"][1][i].head_importance().double() for i in (0, 1)]
            same = [torch.equal(a, b) for a, b in zip(full_importance, row["after", "prune"][1])]
            full_tree = tree_from_attribution(row["before", "tree"][1])
            print(f"  {dtype} after == before: head importance (attattr, attention) {same}, "
                  f"tree edges {edges(full_tree) == edges(row['after', 'tree'][1])}", flush=True)
            results[dtype] = row
        ref = results.get("fp32")
        for dtype in [d for d in args.dtypes if d != "fp32" and ref]:
            got = results[dtype]
            for i, name in enumerate(("attattr matrix", "raw attention")):
                a, b = ref["before", "prune"][1][i].scores, got["before", "prune"][1][i].scores
                err = (a - b).abs()
                big = a.abs() > 1e-3 * a.abs().max()
                print(f"  {dtype} {name}: max abs error {err.max():.3g} (max |x| {a.abs().max():.3g}), "
                      f"max rel error {(err[big] / a[big].abs()).max():.3g} on entries > 1e-3 of the max")
            for i, strategy in enumerate(("attattr", "attention")):
                a, b = ref["after", "prune"][1][i], got["after", "prune"][1][i]
                same = torch.equal(a.flatten().argsort(), b.flatten().argsort())
                print(f"  {dtype} head importance ({strategy}): max rel diff "
                      f"{((a - b).abs() / a.abs().clamp_min(1e-30)).max():.3g}, same head ranking: {same}")
            print(f"  {dtype} tree: same edges as fp32: "
                  f"{edges(ref['after', 'tree'][1]) == edges(got['after', 'tree'][1])}")


if __name__ == "__main__":
    main()
