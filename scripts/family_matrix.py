"""Measure what works on every family in the adapter table, on tiny random classifiers.

For each family: capture vs eager attention and logits (max abs difference), AttAttr vs the slow
whole-model reference (max relative difference), which registered methods run and which refuse,
masked vs physically pruned logits (max relative difference, one KV group of layer 0 and all of
layer 1 pruned; families whose layers share one block, ALBERT, lose heads 0 and 2 in every layer,
since a head of a shared block goes from all its layers), and whether the pruned model saves and
reloads to the same logits. Prints two Markdown tables (the family table of docs/architectures.md and the methods
table by family group: post-LN encoders, pre-LN encoders, decoder classifiers, are this output).
``albert-2groups`` is ALBERT with 4 layers in 2 shared groups.

    python scripts/family_matrix.py [--families bert,gpt2,...] [--write-docs docs/architectures.md]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import attrtools  # noqa: E402
from attrtools import adapters, architecture  # noqa: E402
from attrtools.capture import capture  # noqa: E402
from attrtools.engine import Engine  # noqa: E402
from attrtools.methods import get, list_methods  # noqa: E402
from attrtools.methods.base import UnsupportedArchitecture  # noqa: E402
from attrtools.pruning.plan import plan_to_mask  # noqa: E402
from attrtools.pruning.prune import prune_heads, save_pruned  # noqa: E402
from attrtools.testing import FAMILIES, build_tiny_model, official_style_attattr  # noqa: E402
from attrtools.types import Example  # noqa: E402

TEXTS = ["the movie was very good", "a dull story but the music was fun", "boring"]
VARIANTS = {"albert-2groups": ("albert", {"layers": 4, "num_hidden_groups": 2})}


def measure(family: str, root: str) -> dict:
    from transformers import AutoModelForSequenceClassification

    model_type, config = VARIANTS.get(family, (family, {}))
    directory = build_tiny_model(model_type, os.path.join(root, family), **config)
    model, tokenizer = attrtools.load_model(directory)
    engine = Engine(model, tokenizer)
    inputs = engine.collate([engine.encode(Example(t)) for t in TEXTS])
    eager = AutoModelForSequenceClassification.from_pretrained(directory, attn_implementation="eager").eval()
    L, H = architecture.num_layers_heads(model)
    with torch.no_grad():
        ref = eager(**inputs, output_attentions=True)
        with capture(model, record="all") as cap:
            logits = model(**inputs).logits
    probs_diff = max(float((cap.attentions[l] - ref.attentions[l]).abs().max()) for l in range(L))
    logits_diff = float((logits - ref.logits).abs().max())
    ours = attrtools.attribute(model, tokenizer, TEXTS[1], method="attattr", steps=4)[0].scores
    slow = official_style_attattr(model, tokenizer, Example(TEXTS[1]), steps=4, chunk=4, pad_to=16)
    attattr_rel = float((ours - slow).abs().max() / slow.abs().max())
    ran, refused = [], []
    for name in list_methods():
        try:
            get(name).check_model(model)
        except UnsupportedArchitecture:
            refused.append(name)
            continue
        attrtools.attribute(model, tokenizer, TEXTS[:1], method=name,
                            **({"steps": 2} if name in ("attattr", "ig_embed") else {}))
        ran.append(name)
    group = architecture.kv_group_size(model)
    plan = {0: list(range(group)), 1: list(range(H))}
    shared = [g for g in architecture.tied_layers(model) if len(g) > 1]
    if shared:  # a head of a shared block can only go from every layer that runs it
        plan = {l: [0, 2] for l in range(L)}
    with torch.no_grad(), capture(model, head_mask=plan_to_mask(plan, L, H)):
        masked = model(**inputs).logits
    adapter = adapters.adapter_for(model)
    pruned_rel, reload_ok = None, None
    if not adapter.refusal("prune_heads"):
        pruned = copy.deepcopy(model)
        prune_heads(pruned, plan)
        with torch.no_grad():
            physical = pruned(**inputs).logits
        pruned_rel = float((physical - masked).abs().max() / masked.abs().max())
        reloaded, _ = attrtools.load_model(save_pruned(pruned, tokenizer, os.path.join(root, family + "-pruned")))
        with torch.no_grad():
            reload_ok = bool(torch.allclose(reloaded(**inputs).logits, physical, atol=1e-6))
    family_group = ("decoder classifiers" if adapter.pooling == "last_non_pad" else
                    "pre-LN encoders" if adapter.pre_norm else "post-LN encoders")
    return dict(family=family, group=family_group, kind=("decoder" if adapter.pooling == "last_non_pad" else "encoder")
                + (", pre-LN" if adapter.pre_norm else ", post-LN")
                + (f", layers {shared} share blocks" if shared else ""),
                heads=f"{H}" + (f" (KV {H // group})" if group > 1 else ""), probs=probs_diff, logits=logits_diff,
                attattr=attattr_rel, ran=ran, refused=refused, pruned=pruned_rel, reload=reload_ok)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(list(FAMILIES) + list(VARIANTS)))
    parser.add_argument("--write-docs", metavar="PAGE", default=None,
                        help="Also write the family table into PAGE between its markers (docs/architectures.md).")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for family in args.families.split(","):
            rows.append(measure(family, root))
    every = sorted(list_methods())
    table = family_table(rows, every)
    print(table)
    print()
    print(method_table(rows, every))
    if args.write_docs:
        write_between_markers(args.write_docs, table)
        print(f"\nwrote the family table into {args.write_docs}")


# How the docs name a measured family, and a note after its masked-vs-pruned number.
LABELS = {"deberta-v2": "deberta-v2 (v2 and v3)", "albert": "albert (both layers run one shared block)",
          "albert-2groups": "albert, 4 layers in 2 groups"}
PRUNE_NOTES = {"albert": " (heads pruned in every layer of the group)", "albert-2groups": " (same)"}
START, END = "<!-- family_matrix.py: start -->", "<!-- family_matrix.py: end -->"


def _number(x: float) -> str:
    return "0" if x == 0 else f"{x:.1e}"


def family_table(rows: list, every: list) -> str:
    """The family table of docs/architectures.md (Markdown)."""
    lines = ["| family (`model_type`) | block | heads | capture = eager (probs / logits, max abs) "
             "| AttAttr vs slow reference (rel) | methods refused (all others run) | masked vs pruned (rel) "
             "| pruned save + reload |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        assert sorted(r["ran"] + r["refused"]) == every
        pruned = ("refused (masking only)" if r["pruned"] is None
                  else _number(r["pruned"]) + PRUNE_NOTES.get(r["family"], ""))
        lines.append(f"| {LABELS.get(r['family'], r['family'])} | {r['kind']} | {r['heads']} | "
                     f"{_number(r['probs'])} / {_number(r['logits'])} | {_number(r['attattr'])} | "
                     f"{', '.join(r['refused']) or 'none'} | {pruned} | "
                     f"{'-' if r['reload'] is None else ('yes' if r['reload'] else 'NO')} |")
    return "\n".join(lines)


def write_between_markers(path: str, text: str) -> None:
    """Replace what lies between the START and END markers of ``path`` with ``text`` (atomically)."""
    from attrtools.io import write_text

    page = open(path, encoding="utf-8").read()
    if START not in page or END not in page:
        raise SystemExit(f"{path} has no {START} ... {END} markers")
    head, rest = page.split(START, 1)
    write_text(path, head + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])


def method_table(rows: list, methods: list) -> str:
    """Per method and family group: "runs" (on every family of the group measured), "refused", or
    which families of the group refuse it."""
    groups = ("post-LN encoders", "pre-LN encoders", "decoder classifiers")
    lines = ["| method | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for name in methods:
        cells = []
        for group in groups:
            members = [r for r in rows if r["group"] == group]
            refused = [r["family"] for r in members if name in r["refused"]]
            cells.append("-" if not members else "runs" if not refused else "refused" if len(refused) == len(members)
                         else "runs; refused on " + ", ".join(refused))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
