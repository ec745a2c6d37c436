"""Measure the invariants of pre-LN ALTI and ALTI-Logit on a tiny classifier of every pre-LN family.

Per family (random weights, 2 layers, 4 heads, grouped KV heads where the family has them; a padded
batch of 4 texts): the largest absolute error of the pre-LN ALTI split (Σ_j T_i(x_j) + b_O against the
real residual after attention, every layer and receiver), the largest deviation of an ALTI row sum
from 1, and, for decoder classifiers, the largest absolute error of the direct logit decomposition
(attention by source + b_O + FFN + embedding + biases against the model's logit, every class), next
to the largest logit. Prints a Markdown table (the numbers ``tests/test_alti_logit.py`` bounds).

    python scripts/alti_invariants.py [--families llama,gpt2,...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import attrtools  # noqa: E402
from attrtools import adapters, architecture  # noqa: E402
from attrtools.engine import Engine  # noqa: E402
from attrtools.methods.decomposition import alti_matrix, pre_ln_alti_parts, trace_layers  # noqa: E402
from attrtools.methods.alti_logit import logit_decomposition, trace_for_logits  # noqa: E402
from attrtools.methods.base import Batch  # noqa: E402
from attrtools.testing import FAMILIES, build_tiny_model  # noqa: E402
from attrtools.types import Example  # noqa: E402

TEXTS = ["the movie was very good", "a dull story but the music was fun", "boring", "not bad at all"]


def measure(family: str, root: str) -> dict:
    model, tokenizer = attrtools.load_model(build_tiny_model(family, os.path.join(root, family)))
    engine = Engine(model, tokenizer, progress=False)
    encoded = [engine.encode(Example(t)) for t in TEXTS]
    inputs = engine.collate(encoded)
    lengths = [e.length for e in encoded]
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    batch = Batch(inputs, lengths, logits.argmax(-1), logits)
    decoder = adapters.adapter_for(model).pooling == "last_non_pad"
    trace = trace_for_logits(model, batch) if decoder else trace_layers(model, inputs)
    split = rows = 0.0
    for layer in range(len(trace.hidden_in)):
        for b, n in enumerate(lengths):
            parts, constant, y = pre_ln_alti_parts(model, trace, layer, b, n)
            split = max(split, float((parts.sum(1) + constant - y).abs().max()))
            rows = max(rows, float((alti_matrix(model, trace, layer, b, n).sum(-1) - 1).abs().max()))
    logit = None
    if decoder:
        positions = architecture.pool_positions(model, inputs["input_ids"])
        logit = max(abs(logit_decomposition(model, trace, b, n, t, int(positions[b])).total() - float(logits[b, t]))
                    for b, n in enumerate(lengths) for t in range(logits.shape[1]))
    return dict(family=family, split=split, rows=rows, logit=logit, scale=float(logits.abs().max()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(f for f in FAMILIES if adapters.ADAPTERS[f].pre_norm))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        rows = [measure(family, root) for family in args.families.split(",")]
    print("| family | ALTI split, max abs error | ALTI row sums, max abs(sum - 1) | logit decomposition, max abs error "
          "| max abs logit |")
    print("|---|---|---|---|---|")
    for r in rows:
        logit = "refused (no linear head)" if r["logit"] is None else format(r["logit"], ".1e")
        print(f"| {r['family']} | {r['split']:.1e} | {r['rows']:.1e} | {logit} | {r['scale']:.2f} |")


if __name__ == "__main__":
    main()
