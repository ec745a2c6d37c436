"""Fine-tuning a sequence classifier from a local or hub checkpoint: ``attrtools finetune``
(``attrtools/commands/finetune.py``; ``scripts/finetune.py`` is a thin wrapper of it) and the offline
demo's default model. Plain AdamW with linear warm-up and decay (the schedule of Devlin et al. 2019,
as in transformers' ``get_linear_schedule_with_warmup``); labels go through the one label rule
(``attrtools.labels``); the model folder is written beside its destination and renamed into place
(``finetune_to_folder``), so every command can take it, and a killed run leaves no half-written one."""
from __future__ import annotations

import math
import os
import random
import time

import torch

from .errors import ParameterError
from .io import write_json
from .types import Example


def finetune(base: str, train: list[Example], output_dir: str, dev: list[Example] | None = None,
             num_labels: int | None = 2, epochs: float = 1.0, batch_size: int = 32, lr: float = 5e-5,
             max_length: int = 64, seed: int = 42, warmup: float = 0.06, label_names=None,
             freeze_embeddings: bool = False, freeze_layers: int = 0, log=print, device=None,
             on_estimate=None) -> dict:
    """Fine-tune ``base`` on ``train``; save model + tokenizer + ``training.json`` to ``output_dir``.

    Args: ``base`` a checkpoint folder or hub id (a classification head of ``num_labels`` outputs is
    added or replaced); ``train`` / ``dev`` labelled ``Example`` lists (class ids 0-based; rows
    without a label are left out by ``labels.check_gold_labels``); ``num_labels`` the class count
    (None: ``len(label_names)``, else counted from the labels by ``labels.infer_num_classes``, which
    refuses 1-based labels); ``label_names`` class names in id order, saved as the model's
    ``id2label``; ``epochs`` (fractions allowed), ``batch_size`` examples per step, ``lr`` AdamW's
    peak learning rate, ``warmup`` the warm-up fraction of the steps, ``max_length`` tokens per input;
    ``device`` where to train (None: cpu). ``on_estimate(seconds, steps)`` is called once after the
    first three steps with the estimated training time in seconds: the first step's time plus the
    pace of steps 2-3 for the rest (the first step also warms up), also ``log``ged and recorded.

    ``freeze_embeddings`` / ``freeze_layers=k``: the embeddings and the lowest ``k`` blocks keep their
    pretrained weights (no gradient is computed below block ``k``, and AdamW skips them), which makes
    a step several times cheaper on CPU; ``training.json`` records both and the dev accuracy.

    Returns the report written to ``training.json`` (``dev_accuracy`` in [0, 1] when ``dev`` is given,
    ``seconds``, ``estimated_seconds``). Raises ``LabelError`` for labels outside the classes.
    """
    from .labels import check_gold_labels, infer_num_classes

    if label_names and num_labels is not None and len(label_names) != num_labels:
        raise ParameterError(f"{len(label_names)} label names for {num_labels} classes")
    train = check_gold_labels(train, None, need=True, what="training data")
    if num_labels is None:
        num_labels = infer_num_classes(train, label_names, what="training data")
    train = check_gold_labels(train, num_labels, need=True, what="training data")
    if dev:
        dev = check_gold_labels(dev, num_labels, need=True, what="evaluation data")
    random.seed(seed)
    torch.manual_seed(seed)
    model, tokenizer = _load_classifier(base, num_labels, label_names)
    from .models import max_input_length

    limit = max_input_length(model, tokenizer)
    if limit is not None and max_length > limit:  # the one truncation rule: never past the position table
        max_length = limit
    if device is not None:
        model.to(device)
    frozen = _freeze(model, freeze_embeddings, freeze_layers)
    total = max(1, int(math.ceil(len(train) / batch_size) * epochs))
    started, estimate = _train(model, tokenizer, train, total, batch_size, max_length, lr, warmup, log, on_estimate)
    report = {"base": base, "train_examples": len(train), "steps": total, "epochs": epochs, "batch_size": batch_size,
              "lr": lr, "max_length": max_length, "seed": seed, "frozen": frozen,
              "seconds": round(time.time() - started, 1), "num_labels": num_labels,
              "estimated_seconds": round(estimate, 3) if estimate is not None else None}
    if dev:
        report["dev_accuracy"] = accuracy(model, tokenizer, dev, max_length=max_length)
        log(f"dev accuracy {report['dev_accuracy']:.4f}")
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    write_json(os.path.join(output_dir, "training.json"), report)
    return report


def _load_classifier(base: str, num_labels: int, label_names):
    """``(model, tokenizer)`` of ``base`` with a classification head of ``num_labels`` outputs (added or
    replaced), its ``id2label`` from ``label_names`` (or generic names when the checkpoint's count differs)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=num_labels, trust_remote_code=False,
                                                               ignore_mismatched_sizes=True)
    if label_names:
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {n: i for i, n in enumerate(label_names)}
    elif getattr(model.config, "id2label", None) and len(model.config.id2label) != num_labels:
        model.config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    return model, tokenizer


def _train(model, tokenizer, train: list[Example], total: int, batch_size: int, max_length: int, lr: float,
           warmup: float, log, on_estimate):
    """``total`` AdamW steps over shuffled batches of ``train`` (linear warm-up over the ``warmup``
    fraction, then linear decay; gradients clipped to norm 1), with a progress bar; the model is left
    in eval mode with every parameter trainable again. Returns ``(started, estimate)``: the start time
    and the estimated training seconds measured on the first three steps (see ``finetune``)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    warm = max(1, int(total * warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    model.train()
    from .progress import bar

    progress = bar(total, "fine-tuning", unit="step")
    step, started = 0, time.time()
    estimate, first_step = None, 0.0
    order = list(range(len(train)))
    while step < total:
        random.shuffle(order)
        for start in range(0, len(order), batch_size):
            if step >= total:
                break
            rows = [train[i] for i in order[start:start + batch_size]]
            enc = tokenizer([e.text for e in rows], [e.text_pair for e in rows] if rows[0].text_pair else None,
                            padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
            gold = torch.tensor([e.label for e in rows], device=next(model.parameters()).device)
            loss = model(**enc, labels=gold).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step == 1:
                first_step = time.time() - started  # the first step also warms up allocators and kernels
            if step == min(3, total) and estimate is None:  # measured, not guessed: the pace of steps 2 and 3
                pace = (time.time() - started - first_step) / (step - 1) if step > 1 else first_step
                estimate = first_step + pace * (total - 1)
                log(f"fine-tuning: {total} steps, about {_duration(estimate)} (measured on the first {step})")
                if on_estimate is not None:
                    on_estimate(estimate, total)
            progress.update(1)
            progress.set_postfix_str(f"loss {loss.item():.3f}")
            if (step % 50 == 0 or step == total) and not getattr(progress, "total", None):  # no bar: log
                log(f"step {step}/{total} loss {loss.item():.4f} ({time.time() - started:.0f}s)")
    progress.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return started, estimate


def _duration(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"2.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_output_folder(output_dir: str, overwrite: bool = False) -> str:
    """``output_dir`` as an absolute path, checked before anything is trained: a new or empty
    folder, or (``overwrite``) a model folder (with ``config.json``) to replace; anything else raises
    ``ParameterError`` (exit 2)."""
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise ParameterError(f"--output-dir {output_dir} is a file")
        if os.listdir(output_dir) and not overwrite:
            raise ParameterError(f"--output-dir {output_dir} is not empty: choose a new folder or pass --overwrite")
        if os.listdir(output_dir) and not os.path.exists(os.path.join(output_dir, "config.json")):
            raise ParameterError(f"--output-dir {output_dir} holds files that are not a model folder: "
                                 "refusing to replace it")
    return output_dir


def finetune_to_folder(base: str, train: list[Example], output_dir: str, overwrite: bool = False, **kwargs) -> dict:
    """``finetune`` into ``output_dir`` atomically: trained in ``<output_dir>.partial`` and renamed
    into place once saved (an existing model folder is replaced only with ``overwrite``; anything
    else there is refused). ``kwargs`` go to ``finetune``. Returns its report."""
    import shutil

    output_dir = check_output_folder(output_dir, overwrite)
    staging = output_dir + ".partial"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    report = finetune(base, train, staging, **kwargs)
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    os.replace(staging, output_dir)
    return report


@torch.no_grad()
def accuracy(model, tokenizer, examples: list[Example], max_length: int = 128, batch_size: int = 64) -> float:
    correct = 0
    model.eval()
    for start in range(0, len(examples), batch_size):
        rows = examples[start:start + batch_size]
        enc = tokenizer([e.text for e in rows], [e.text_pair for e in rows] if rows[0].text_pair else None,
                        padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
        pred = model(**enc).logits.argmax(-1).cpu()
        correct += int((pred == torch.tensor([e.label for e in rows])).sum())  # labels checked by the caller
    return correct / max(1, len(examples))


def _freeze(model, embeddings: bool, layers: int) -> list[str]:
    """Stop gradients for the embeddings and the lowest ``layers`` blocks; returns what was frozen."""
    from .adapters import adapter_for
    from .architecture import get_layers, get_module

    frozen = []
    if embeddings:
        for p in get_module(model, adapter_for(model).embeddings).parameters():
            p.requires_grad_(False)
        frozen.append("embeddings")
    blocks = get_layers(model)
    if not 0 <= layers <= len(blocks):
        raise ParameterError(f"freeze_layers must be between 0 and {len(blocks)}, got {layers}")
    from .architecture import tied_layers

    for group in tied_layers(model):  # ALBERT: one block runs several layers
        if group[0] < layers <= group[-1]:
            raise ParameterError(
                f"freeze_layers={layers} would freeze layers {group[0]}–{group[-1]} together: they run one shared "
                f"block (model_type {model.config.model_type!r}); choose {group[0]} or {group[-1] + 1}")
    for index in range(layers):
        for p in blocks[index].parameters():
            p.requires_grad_(False)
        frozen.append(f"layer {index}")
    return frozen
