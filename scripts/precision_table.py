"""Each registered method on bf16 and fp16 copies of tiny models vs fp32: the deviation table.

    python scripts/precision_table.py [--families bert,llama,...|all] [--out table.md]

For every family (default: the suite's ``ARCHITECTURES``; ``all``: every family in the adapter
table) a tiny random classifier is built offline (``attrtools.testing.build_tiny_model``), each
method that applies is run on the fp32 model and on bf16 / fp16 copies (``model.to(dtype)``), and
``attrtools.precision.deviation`` compares them, against the fp32 model and against fp32
arithmetic over the same rounded weights (the computation's own error). Prints a Markdown table of
the worst case per method and dtype over families and examples: lowest Spearman ρ / largest
relative L2 error (the table in docs/precision-and-state.md). CPU, a few minutes for the default families.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

TEXTS = ["the movie was good but alpha came before beta", "a dull plot and bad acting", "beta then alpha, fun"]
# the integrated-gradient methods with a fixed rule (the table measures precision, not convergence)
FIXED_RULE = {"attattr": {"steps": 20}, "ig_embed": {"steps": 20}}
DTYPES = ("bfloat16", "float16")


def measure(families, root: str) -> dict:
    """``{(method, dtype): [(family, spearman, relative_error), ...]}``."""
    import torch

    import attrtools
    from attrtools import methods
    from attrtools.engine import Engine
    from attrtools.errors import UnsupportedModelError
    from attrtools.precision import PrecisionError, deviation
    from attrtools.testing import build_tiny_model

    rows: dict = {}
    refused = rows.setdefault("refused", [])
    for family in families:
        model, tokenizer = attrtools.load_model(build_tiny_model(family, os.path.join(root, family)))
        copies = {name: copy.deepcopy(model).to(getattr(torch, name)) for name in DTYPES}
        for method in methods.list_methods():
            try:
                ref = Engine(model, tokenizer, cache=None).attribute(TEXTS, method, **FIXED_RULE.get(method, {}))
            except UnsupportedModelError:
                continue
            for name, reduced_model in copies.items():
                try:
                    got = Engine(reduced_model, tokenizer, cache=None).attribute(TEXTS, method, **FIXED_RULE.get(method, {}))
                except PrecisionError:  # non-finite (an fp16 overflow): refused by the engine
                    refused.append((method, name, family))
                    continue
                # the same rounded weights computed in fp32: the error of the computation alone
                rounded = Engine(copy.deepcopy(reduced_model).float(), tokenizer, cache=None).attribute(TEXTS, method, **FIXED_RULE.get(method, {}))
                for r, q, g in zip(ref, rounded, got):
                    d, c = deviation(g.scores, r.scores), deviation(g.scores, q.scores)
                    rows.setdefault((method, name), []).append(
                        (family, d["spearman"], d["relative_error"], c["spearman"], c["relative_error"]))
    return rows


def table(rows: dict) -> str:
    """Worst case per method over families and examples: against the fp32 model (weight rounding
    and computation together) and against fp32 arithmetic over the same rounded weights (the
    computation alone), as ``Spearman ρ / relative error``."""
    lines = ["| method | bf16 vs fp32 model | bf16 computation alone | fp16 vs fp32 model | fp16 computation alone |",
             "|---|---|---|---|---|"]
    for method in sorted({key[0] for key in rows if key != "refused"}):
        cells = []
        for name in DTYPES:
            values = rows.get((method, name), [])
            for rho, rel in ((1, 2), (3, 4)):
                if not values:
                    cells.append("–")
                    continue
                worst = min(values, key=lambda v: v[rho])
                cells.append(f"{worst[rho]:.3f} ({worst[0]}) / {max(v[rel] for v in values):.2g}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if rows.get("refused"):
        lines.append("")
        lines.append("Refused (non-finite values, PrecisionError): " +
                     ", ".join(f"{m} {d} on {f}" for m, d, f in rows["refused"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=None, help="comma-separated model types, or 'all'")
    parser.add_argument("--out", default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.manual_seed(0)
    from attrtools.testing import ARCHITECTURES, FAMILIES

    families = FAMILIES if args.families == "all" else (args.families.split(",") if args.families else ARCHITECTURES)
    with tempfile.TemporaryDirectory() as root:
        text = table(measure(families, root))
    print(text)
    if args.out:
        from attrtools.io import write_text

        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
