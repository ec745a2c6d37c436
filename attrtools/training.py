"""Fine-tuning a sequence classifier from a local or hub checkpoint (used by scripts/finetune.py and
the offline demo). Plain AdamW with linear warm-up/decay; length-sorted buckets for speed on CPU."""
from __future__ import annotations

import math
import os
import random
import time

import torch

from .errors import InputDataError, ParameterError
from .io import write_json
from .types import Example


def finetune(base: str, train: list[Example], output_dir: str, dev: list[Example] | None = None,
             num_labels: int = 2, epochs: float = 1.0, batch_size: int = 32, lr: float = 5e-5,
             max_length: int = 64, seed: int = 42, warmup: float = 0.06, label_names=None,
             freeze_embeddings: bool = False, freeze_layers: int = 0, log=print) -> dict:
    """Fine-tune ``base`` on ``train``; save model + tokenizer + ``training.json`` to ``output_dir``.

    ``freeze_embeddings`` / ``freeze_layers=k``: the embeddings and the lowest ``k`` blocks keep their
    pretrained weights (no gradient is computed below block ``k``, and AdamW skips them), which makes
    a step several times cheaper on CPU; ``training.json`` records both and the dev accuracy.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    random.seed(seed)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=num_labels, trust_remote_code=False)
    if label_names:
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {n: i for i, n in enumerate(label_names)}
    if any(e.label is None for e in train):
        raise InputDataError("every training example needs a label")
    frozen = _freeze(model, freeze_embeddings, freeze_layers)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = max(1, int(steps_per_epoch * epochs))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    warm = max(1, int(total * warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    model.train()
    from .progress import bar

    progress = bar(total, "fine-tuning", unit="step")
    step, started = 0, time.time()
    order = list(range(len(train)))
    while step < total:
        random.shuffle(order)
        for start in range(0, len(order), batch_size):
            if step >= total:
                break
            rows = [train[i] for i in order[start:start + batch_size]]
            enc = tokenizer([e.text for e in rows], [e.text_pair for e in rows] if rows[0].text_pair else None,
                            padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([e.label for e in rows])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            progress.update(1)
            progress.set_postfix_str(f"loss {loss.item():.3f}")
            if (step % 50 == 0 or step == total) and not getattr(progress, "total", None):  # no bar: log
                log(f"step {step}/{total} loss {loss.item():.4f} ({time.time() - started:.0f}s)")
    progress.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    report = {"base": base, "train_examples": len(train), "steps": total, "epochs": epochs, "batch_size": batch_size,
              "lr": lr, "max_length": max_length, "seed": seed, "frozen": frozen,
              "seconds": round(time.time() - started, 1)}
    if dev:
        report["dev_accuracy"] = accuracy(model, tokenizer, dev, max_length=max_length)
        log(f"dev accuracy {report['dev_accuracy']:.4f}")
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    write_json(os.path.join(output_dir, "training.json"), report)
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
        correct += int((pred == torch.tensor([e.label for e in rows])).sum())
    return correct / max(1, len(examples))


def _freeze(model, embeddings: bool, layers: int) -> list[str]:
    """Stop gradients for the embeddings and the lowest ``layers`` blocks; returns what was frozen."""
    from .models import adapter_for, get_layers, get_module

    frozen = []
    if embeddings:
        for p in get_module(model, adapter_for(model).embeddings).parameters():
            p.requires_grad_(False)
        frozen.append("embeddings")
    blocks = get_layers(model)
    if not 0 <= layers <= len(blocks):
        raise ParameterError(f"freeze_layers must be between 0 and {len(blocks)}, got {layers}")
    from .models import tied_layers

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
