"""Bytes the attribution cache takes per example for the ``prune`` and ``tree`` tools, and the error
of fp16/bf16 payloads (issue 28, "lean payloads").

    OMP_NUM_THREADS=1 python scripts/bench_cache_bytes.py 512 --steps 2

Builds a random BERT of the given size offline (default: BERT-base, 12 layers, d = 768, 12 heads),
runs the tools' own engine calls on one input of ``n`` tokens into an fp32 cache in a temporary
folder (``prune``: ``head_importance`` with its ``attattr`` and ``attention`` strategies, the
strategies that go through the cache; ``tree``: ``build_trees``), and prints the bytes each left
on disk. Then runs the same calls against an fp16 and a bf16 cache and prints their bytes and the
error of what they serve against fp32: the stored matrices (max absolute, max relative on entries
above 1e-3 of the matrix's max), the head-importance table and the tree edges. The byte counts do
not depend on ``--steps`` (the IG step count: a small one keeps the CPU time short). CPU only.
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
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from attrtools import capture
    from attrtools.cache import AttributionCache
    from attrtools.engine import Engine
    from attrtools.pruning.importance import head_importance
    from attrtools.testing import WORDS, write_tokenizer
    from attrtools.tree.build import build_trees
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
        results = {}
        for dtype in ("fp32", "fp16", "bf16"):
            row = {}
            for tool in ("prune", "tree"):
                folder = os.path.join(tmp, f"{tool}-{dtype}")
                cache = AttributionCache(folder, dtype=dtype, memory_bytes=0)
                engine = Engine(model, tok, cache=cache, progress=False, max_length=args.tokens)
                start = time.perf_counter()
                if tool == "prune":
                    out = [head_importance(model, tok, [example], s, engine=engine, steps=args.steps)
                           for s in ("attattr", "attention")]
                    out.append([engine.attribute([example], "attattr", target="gold", steps=args.steps)[0].scores,
                                engine.attribute([example], "raw")[0].scores])  # cache hits: what was stored
                else:
                    trees, attrs = build_trees(engine, [example], steps=args.steps)
                    out = [trees[0], attrs[0].scores]
                row[tool] = (_bytes(folder), out, time.perf_counter() - start)
            results[dtype] = row
            print(f"{dtype}: prune {row['prune'][0] / 2 ** 20:.1f} MiB/example, "
                  f"tree {row['tree'][0] / 2 ** 20:.1f} MiB/example "
                  f"(n={args.tokens}, L={args.layers}, H={args.heads}; "
                  f"{row['prune'][2]:.0f} s + {row['tree'][2]:.0f} s)", flush=True)
        ref = results["fp32"]
        for dtype in ("fp16", "bf16"):
            got = results[dtype]
            for name, a, b in (("attattr matrix", ref["prune"][1][2][0], got["prune"][1][2][0]),
                               ("raw attention", ref["prune"][1][2][1], got["prune"][1][2][1])):
                err = (a - b).abs()
                big = a.abs() > 1e-3 * a.abs().max()
                print(f"  {dtype} {name}: max abs error {err.max():.3g} (max |x| {a.abs().max():.3g}), "
                      f"max rel error {(err[big] / a[big].abs()).max():.3g} on entries > 1e-3 of the max")
            for i, strategy in enumerate(("attattr", "attention")):
                a, b = ref["prune"][1][i], got["prune"][1][i]
                same = torch.equal(a.flatten().argsort(), b.flatten().argsort())
                print(f"  {dtype} head importance ({strategy}): max rel diff "
                      f"{((a - b).abs() / a.abs().clamp_min(1e-30)).max():.3g}, same head ranking: {same}")
            edges = lambda tree: sorted((str(u), str(v)) for u, v in tree.edges())  # noqa: E731
            print(f"  {dtype} tree: same edges as fp32: {edges(ref['tree'][1][0]) == edges(got['tree'][1][0])}")


if __name__ == "__main__":
    main()
