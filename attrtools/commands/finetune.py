"""``attrtools finetune``: fine-tune a classifier on a dataset and save a model folder that every
attrtools command takes (``--model``). The same data, column and label options as every tool
(``--dataset`` with ``--text-column``/``--label-column``/``--label-names``, ``--no-header``,
``--one-based-labels``, ``--dataset-config``/``--dataset-split``); labels go through the one label
rule (``attrtools.labels``); the training itself is ``attrtools.training.finetune_to_folder``.
Prints the estimated training time (measured on the first steps) and the dev accuracy."""
from __future__ import annotations

import os
import random

import click

from ..cli_kit import (AtLeast, UserError, batch_size_option, check_labels, command, dataset_options, device_option, echo_summary,
                       label_names_list, load_examples_or_fail, log_to_stderr, quiet_transformers,
                       seed_option)


@command()
@click.option("--model", "model_name", default=None,
              help="Pretrained checkpoint to start from: a local folder or a hub id (e.g. a MiniLM or BERT checkpoint).")
@dataset_options(limit_help="Train on a random subset of N training examples (seeded by --seed; default: all).")
@click.option("--eval-dataset", default=None,
              help="Labelled development data for the accuracy printed at the end (same columns as --dataset).")
@click.option("--num-labels", type=AtLeast(2), default=None,
              help="Classes of the new head (default: the number of --label-names, else the largest label + 1).")
@click.option("--epochs", type=float, default=1.0, help="Training epochs (fractions allowed).")
@batch_size_option(32, "Training examples per step.")
@click.option("--lr", "--learning-rate", "lr", type=float, default=5e-5, help="AdamW peak learning rate.")
@click.option("--max-length", type=AtLeast(2), default=128,
              help="Truncate training and evaluation inputs to this many tokens, special tokens included.")
@seed_option(42, "Seed of the subset, the initialisation and the data order.")
@click.option("--freeze-layers", type=AtLeast(0), default=0,
              help="Keep the lowest N transformer blocks (and their gradients) frozen: faster on CPU.")
@click.option("--output-dir", default=None, type=click.Path(file_okay=False),
              help="Model folder to write (config.json, weights, tokenizer, training.json).")
@click.option("--overwrite", is_flag=True, help="Replace an existing model folder at --output-dir.")
@device_option
@click.option("--base", "old_base", default=None, hidden=True, help="scripts/finetune.py's spelling of --model.")
@click.option("--train-dataset", "--train", "old_train", default=None, hidden=True,
              help="scripts/finetune.py's spelling of --dataset.")
@click.option("--dev", "old_dev", default=None, hidden=True, help="Old spelling of --eval-dataset.")
@click.option("--output", "old_output", default=None, hidden=True, help="Old spelling of --output-dir.")
def finetune(model_name, dataset, text_column, pair_column, label_column, label_names, limit, eval_dataset,
             num_labels, epochs, batch_size, lr, max_length, seed, freeze_layers, output_dir, overwrite, device,
             old_base, old_train, old_dev, old_output):
    """Fine-tune a sequence classifier on labelled data and save it as a model folder for every
    attrtools command (--model). Labels: integers from 0 (--one-based-labels for 1..K) or names
    (--label-names, in class-id order; without it, string labels define the classes in sorted
    order); unlabeled rows (-1) are left out."""
    model_name, dataset = model_name or old_base, dataset or old_train
    eval_dataset, output_dir = eval_dataset or old_dev, output_dir or old_output
    if not model_name or not dataset or not output_dir:
        raise UserError("give --model (the checkpoint to start from), --dataset (training data) and --output-dir")
    if not (epochs > 0 and epochs < 1e6):
        raise UserError(f"--epochs must be a positive number, got {epochs}")
    if not (lr > 0 and lr < 1):
        raise UserError(f"--lr must lie in (0, 1), got {lr}")
    names = label_names_list(label_names)
    if names and num_labels is not None and len(names) != num_labels:
        raise UserError(f"--label-names gives {len(names)} names but --num-labels is {num_labels}")
    quiet_transformers()
    from ..guard import check_device, check_model_folder

    check_device(device)
    check_model_folder(model_name)  # "no such folder" before any hub lookup
    from ..training import check_output_folder, finetune_to_folder

    check_output_folder(output_dir, overwrite)  # before the data loads
    train = load_examples_or_fail(dataset, text_column, pair_column, label_column, None, need_labels=True,
                                  label_names=names, infer_label_names=True)  # string labels name the classes
    names = names or train.label_names
    if limit is not None and limit < len(train):
        picked = sorted(random.Random(seed).sample(range(len(train)), limit))
        train = type(train)([train[i] for i in picked])
    dev = load_examples_or_fail(eval_dataset, text_column, pair_column, label_column, None, what="--eval-dataset",
                                need_labels=True, label_names=names) if eval_dataset else None
    from ..labels import infer_num_classes

    num_labels = num_labels or infer_num_classes(train, names, "--dataset")  # 1-based labels: one line, the fix
    check_labels(train, num_labels, "--dataset")
    if dev is not None:
        check_labels(dev, num_labels, "--eval-dataset")
    if not os.environ.get("OMP_NUM_THREADS"):  # a user's thread limit wins (shared machines)
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))

    report = finetune_to_folder(model_name, train, output_dir, overwrite=overwrite, dev=dev, num_labels=num_labels,
                                epochs=epochs, batch_size=batch_size, lr=lr, max_length=max_length, seed=seed,
                                label_names=names, freeze_layers=freeze_layers, device=device, log=log_to_stderr)
    summary = {"training examples": report["train_examples"], "classes": report["num_labels"],
               "steps": report["steps"],
               "time": f"{report['seconds']:.1f} s (estimated {report['estimated_seconds']:.1f} s)"
               if report.get("estimated_seconds") is not None else f"{report['seconds']:.1f} s"}
    if "dev_accuracy" in report:
        summary["dev accuracy"] = f"{report['dev_accuracy']:.4f} ({len(dev)} examples)"
    summary["model folder"] = os.path.abspath(output_dir)
    echo_summary(summary)
