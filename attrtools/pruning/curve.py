"""Accuracy and loss of a model with heads masked, and the accuracy-vs-heads-pruned curve.

Masking follows the official AttAttr protocol (``prune_head_with_attr.py``): the pruned heads'
attention probabilities are multiplied by 0 (``capture(model, head_mask=...)``), so their context
is 0 and ``b_O`` is still added; no re-fine-tuning. Prune rates 0 %, 10 %, …, 100 % by default,
``int(rate · L·H)`` heads each; accuracy on the evaluation set (the full dev set in the paper).
Loss = mean cross-entropy with the gold labels.

Evaluations go through the attribution cache when one is given: the key is the model's
fingerprint, the mask and a digest of the evaluation inputs and labels, so a re-run of the same
curve on the same model and data reads every point back instead of running the masked model again.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os

import torch

from ..capture import capture
from ..model_state import inference_state
from ..types import Example


def prepare_batches(engine, examples: list[Example], batch_size: int = 64) -> list[tuple[dict, torch.Tensor]]:
    """Tokenize once with the engine (same tokenization as attributions), length-sorted batches of
    ``(model inputs, gold labels)`` on the model's device (``Engine.batches``)."""
    from ..errors import InputDataError

    missing = [i for i, e in enumerate(examples) if e.label is None]
    if missing:
        raise InputDataError(f"{len(missing)} example(s) have no gold label (first: #{missing[0]}); "
                         "pruning needs labelled data")
    batches = []
    for batch in engine.batches(examples, batch_size):
        labels = torch.tensor([int(e.example.label) for e in batch.encoded], device=batch.inputs["input_ids"].device)
        batches.append((batch.inputs, labels))
    return batches


EVAL_FORMAT = 1


def batches_digest(batches) -> str:
    """sha256 of the evaluation inputs (every model input tensor, in order) and gold labels."""
    digest = hashlib.sha256()
    for inputs, labels in batches:
        for name in sorted(inputs):
            digest.update(name.encode())
            digest.update(str(tuple(inputs[name].shape)).encode())
            digest.update(inputs[name].detach().cpu().contiguous().numpy().tobytes())
        digest.update(labels.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def evaluation_key(model, mask: torch.Tensor | None, digest: str) -> str:
    """Cache key of one masked evaluation (``memo.key``, kind ``masked-eval``): model fingerprint,
    mask (None = no mask) and input digest."""
    from .. import memo
    from ..models import fingerprint

    mask_list = None if mask is None or bool(torch.all(mask == 1)) else \
        [[round(float(v), 6) for v in row] for row in mask.detach().cpu()]
    return memo.key("masked-eval", {"model": fingerprint(model), "mask": mask_list, "inputs": digest,
                                    "format": EVAL_FORMAT})


def read_evaluation(model, cache, mask, digest: str) -> dict | None:
    """The cached ``{"accuracy", "loss", "n"}`` of ``model`` with ``mask`` on the inputs of ``digest``, or None."""
    hit = cache.get(evaluation_key(model, mask, digest))
    if hit is not None and {"accuracy", "loss", "n"} <= set(hit[1]):
        return {name: hit[1][name] for name in ("accuracy", "loss", "n")}
    return None


def write_evaluation(model, cache, mask, digest: str, result: dict) -> None:
    """Store one masked evaluation (its numbers in the entry's metadata)."""
    from ..models import fingerprint

    cache.put(evaluation_key(model, mask, digest), torch.zeros(1),
              dict(result, method="masked-eval", kind="evaluation", unit=None, model=fingerprint(model)))


def evaluate_masked(model, batches, mask: torch.Tensor | None = None, cache=None, digest: str | None = None) -> dict:
    """``{"accuracy", "loss", "n"}`` of ``model`` on ``batches`` with ``mask`` (L, H) applied (None: no mask).

    ``cache``: an attribution cache (``get``/``put``); the result is read from it when the same model,
    mask and inputs were evaluated before, and written to it otherwise. ``digest``: the inputs'
    :func:`batches_digest`, when the caller evaluates the same batches many times.
    """
    if cache is None:
        return _evaluate(model, batches, mask)
    digest = digest or batches_digest(batches)
    result = read_evaluation(model, cache, mask, digest)
    if result is None:
        result = _evaluate(model, batches, mask)
        write_evaluation(model, cache, mask, digest, result)
    return result


@torch.no_grad()
def _evaluate(model, batches, mask):
    correct, loss_sum, count = 0, 0.0, 0
    use_mask = mask is not None and not bool(torch.all(mask == 1))
    for inputs, labels in batches:
        scope = capture(model, head_mask=mask.to(labels.device)) if use_mask else contextlib.nullcontext()
        with scope, inference_state(model):  # eval mode, the caller's flags restored (attrtools.model_state)
            logits = model(**inputs).logits.float()
        correct += int((logits.argmax(-1) == labels).sum())
        loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        count += int(labels.numel())
    return {"accuracy": correct / max(1, count), "loss": loss_sum / max(1, count), "n": count}


def pruning_curve(model, batches, plans: dict[str, dict[float, dict]], progress=None, cache=None) -> list[dict]:
    """One row per (strategy, fraction): heads pruned, accuracy and loss with that plan masked.

    ``plans[strategy][fraction] = {layer: [heads]}``. Identical plans are evaluated once; with a
    ``cache``, points evaluated by an earlier run of the same model on the same inputs are read back.
    """
    from ..architecture import num_layers_heads
    from .. import memo

    from .plan import plan_size, plan_to_mask

    num_layers, num_heads = num_layers_heads(model)
    digest = batches_digest(batches) if cache is not None else None
    jobs = [(s, f) for s in plans for f in sorted(plans[s])]
    unique: dict[tuple, dict] = {}  # plan key -> plan, in order of first use
    for strategy, fraction in jobs:
        unique.setdefault(_plan_key(plans[strategy][fraction]), plans[strategy][fraction])

    def mask(plan):
        return plan_to_mask(plan, num_layers, num_heads)

    # The one protocol of attrtools.memo: looked up, the rest computed (shared out across ranks
    # under a launcher: every evaluation costs one pass over the same batches, and is computed
    # exactly as in one process) and written back; lazily, point by point, in one process.
    def lookup(plan):
        return read_evaluation(model, cache, mask(plan), digest)

    def write(plan, result):
        write_evaluation(model, cache, mask(plan), digest, result)

    cached = cache is not None
    evaluations = memo.run(list(unique.values()), lambda plan: _evaluate(model, batches, mask(plan)),
                           lookup=lookup if cached else None, write=write if cached else None,
                           what="the masked evaluations")
    done: dict[tuple, dict] = {}
    rows = []
    for strategy, fraction in jobs:
        plan = plans[strategy][fraction]
        key = _plan_key(plan)
        if key not in done:  # unique holds the plans in order of first use: the next evaluation is this one
            done[key] = next(evaluations)
        result = done[key]
        rows.append({"strategy": strategy, "fraction": round(float(fraction), 6), "heads_pruned": plan_size(plan),
                     "accuracy": result["accuracy"], "loss": result["loss"], "n": result["n"]})
        if progress is not None:
            progress(rows[-1])
    return rows


def _plan_key(plan: dict) -> tuple:
    return tuple(sorted((int(l), tuple(h)) for l, h in plan.items()))


def write_curve_csv(path: str, rows: list[dict]) -> str:
    from ..io import write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["strategy", "fraction", "heads_pruned", "accuracy", "loss", "n"],
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return write_text(path, buffer.getvalue())


def plot_curve(path: str, rows: list[dict], title: str = "") -> str:
    """Accuracy and loss vs fraction of heads pruned, every strategy on one figure (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy in strategies:
        mine = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["fraction"])
        xs = [100 * r["fraction"] for r in mine]
        axes[0].plot(xs, [r["accuracy"] for r in mine], marker="o", label=strategy)
        axes[1].plot(xs, [r["loss"] for r in mine], marker="o", label=strategy)
    axes[0].set_ylabel("accuracy")
    axes[1].set_ylabel("loss (cross-entropy)")
    for ax in axes:
        ax.set_xlabel("heads pruned (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def curve_exists(path: str) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0
