#!/usr/bin/env python
"""Benchmark: AttAttr as the official code computes it vs attrtools' fast path, in one process.

For each model size and sequence length, times per example:
  official-style: batch-1 input padded to 128, a clean forward and the whole model re-run for every
                  layer and chunk of steps, eager attention everywhere (attrtools.testing.official_style_attattr);
  attrtools:      attrtools.attribute(method="attattr"): prefix replay, batched steps and examples,
                  dynamic padding, fused attention in non-target layers, no parameter gradients;
and prints their ratio and the largest deviation (max |ours - official| / max |official|).
Optional rows: Gauss-Legendre steps and bf16 autocast (GPU) against the fp32 Riemann result.

    python scripts/bench_attattr.py                       # MiniLM-size and BERT-base-size, 32/64/128 tokens
    python scripts/bench_attattr.py --sizes minilm --lengths 32 --examples 2
"""
import os
import statistics
import sys
import tempfile
import time

import click

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SIZES = {"minilm": dict(layers=6, heads=12, hidden=384), "bert-base": dict(layers=12, heads=12, hidden=768)}


def build(size: str, directory: str, device):
    import torch
    from transformers import AutoModelForSequenceClassification

    import attrtools
    from attrtools.testing import tiny_config, write_tokenizer

    spec = SIZES[size]
    tokenizer = write_tokenizer(directory)
    config = tiny_config("bert", len(tokenizer), layers=spec["layers"], heads=spec["heads"], hidden=spec["hidden"],
                         pad_token_id=tokenizer.pad_token_id, max_positions=512)
    config.intermediate_size = 4 * spec["hidden"]
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    return attrtools.load_model(directory, device=device)


def sentence(rng, length: int) -> str:
    from attrtools.testing import FILLER

    return " ".join(rng.choice(FILLER) for _ in range(length - 2))  # + [CLS] and [SEP]


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


@click.command()
@click.option("--sizes", default="minilm,bert-base", show_default=True)
@click.option("--lengths", default="32,64,128", show_default=True)
@click.option("--steps", default=20, show_default=True)
@click.option("--examples", default=2, show_default=True, help="Examples per cell (ours runs them as one batch).")
@click.option("--device", default=None)
@click.option("--extras/--no-extras", default=True, help="Also time Gauss-Legendre (and bf16 on GPU).")
def main(sizes, lengths, steps, examples, device, extras):
    import random

    import torch
    import transformers

    import attrtools
    from attrtools.models import resolve_device
    from attrtools.testing import official_style_attattr

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = resolve_device(device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, steps m={steps}")
    header = f"{'model':<10} {'tokens':>6} {'official s/ex':>13} {'attrtools s/ex':>14} {'speedup':>8} {'max rel dev':>11}"
    print(header)
    print("-" * len(header))
    rows = []
    for size in sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            model, tokenizer = build(size, tmp, device)
            rng = random.Random(0)
            for length in [int(x) for x in lengths.split(",")]:
                texts = [sentence(rng, length) for _ in range(examples)]
                # warm-up (allocator, kernels) outside the timings
                attrtools.attribute(model, tokenizer, texts[:1], method="attattr", steps=2)
                sync(device)
                start = time.perf_counter()
                ours = attrtools.attribute(model, tokenizer, texts, method="attattr", steps=steps, batch_size=examples)
                sync(device)
                ours_time = (time.perf_counter() - start) / examples
                official_times, deviations = [], []
                for text, attribution in zip(texts, ours):
                    start = time.perf_counter()
                    reference = official_style_attattr(model, tokenizer, text, steps=steps, chunk=steps, pad_to=128)
                    sync(device)
                    official_times.append(time.perf_counter() - start)
                    scores = attribution.scores.to(reference.device)
                    deviations.append(((scores - reference).abs().max() / reference.abs().max()).item())
                official_time = statistics.mean(official_times)
                row = (size, length, official_time, ours_time, official_time / ours_time, max(deviations))
                rows.append(row)
                print(f"{row[0]:<10} {row[1]:>6} {row[2]:>13.3f} {row[3]:>14.3f} {row[4]:>7.2f}x {row[5]:>11.2e}", flush=True)
                if extras:
                    variants = [("gausslegendre", dict(steps_method="gausslegendre", steps=max(2, steps // 2)))]
                    if device.type == "cuda":
                        variants.append(("bf16", dict(autocast="bf16", steps=steps)))
                    for label, params in variants:
                        start = time.perf_counter()
                        other = attrtools.attribute(model, tokenizer, texts, method="attattr", batch_size=examples,
                                                    **params)
                        sync(device)
                        t = (time.perf_counter() - start) / examples
                        dev = max(((o.scores - a.scores).abs().max() / a.scores.abs().max()).item()
                                  for o, a in zip(other, ours))
                        print(f"{'  ' + label:<10} {length:>6} {'':>13} {t:>14.3f} {ours_time / t:>7.2f}x "
                              f"{dev:>11.2e}  (vs fp32 Riemann m={steps}; {params})", flush=True)
            del model


if __name__ == "__main__":
    main()
