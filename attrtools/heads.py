"""What a probability is: the one rule that turns a classifier's logits into probabilities.

transformers' ``*ForSequenceClassification`` heads come in three kinds, told apart by
``config.problem_type`` (and ``num_labels``), exactly as their loss is chosen in transformers
(``modeling_utils`` / each head's ``forward``: ``problem_type`` set explicitly, else ``regression``
for ``num_labels == 1``, else ``single_label_classification``):

- ``"single_label"``: one class per example; probabilities are ``softmax(logits)`` over the classes
  (they sum to 1); the prediction is the argmax;
- ``"multi_label"`` (``problem_type == "multi_label_classification"``, trained with
  ``BCEWithLogitsLoss``): every label is its own yes/no; probabilities are ``sigmoid(logit_k)`` per
  label (they need not sum to 1); the predicted labels are those with a probability above 0.5
  (logit > 0), and the single "predicted" class is the most probable label;
- ``"regression"`` (``problem_type == "regression"``, or ``num_labels == 1`` without a problem type):
  the output is a value, not a probability: where a probability is needed, ``NoProbabilityError``.

Every place that forms a probability (method target scores, the engine's stored probabilities and
predictions, the evaluation's perturbation curves, pruning accuracy, the audit's goal function,
the test references) calls :func:`probabilities`; nothing else applies a softmax to logits.
"""
from __future__ import annotations

from .errors import UsageError

SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label", "multi_label", "regression"
THRESHOLD = 0.5  # multi-label: a label is predicted when its sigmoid probability is above this


class NoProbabilityError(UsageError):
    """A probability was asked of a head that has none (a regression / single-output head), or a
    measure that assumes one class per example was asked of a multi-label head."""


def _config(model_or_config):
    return getattr(model_or_config, "config", model_or_config)


def head_kind(model_or_config) -> str:
    """``"single_label"``, ``"multi_label"`` or ``"regression"`` for a model or its config (the rule
    of the module docstring; transformers' own choice of loss)."""
    config = _config(model_or_config)
    problem = getattr(config, "problem_type", None)
    if problem == "multi_label_classification":
        return MULTI_LABEL
    if problem == "regression":
        return REGRESSION
    if problem is None and int(getattr(config, "num_labels", 2) or 2) == 1:
        return REGRESSION
    return SINGLE_LABEL


def is_multi_label(model_or_config) -> bool:
    return head_kind(model_or_config) == MULTI_LABEL


def probabilities(logits, model_or_config, what: str = "a class probability"):
    """``(..., C)`` probabilities from ``(..., C)`` logits (float32), by the head's kind: softmax over
    the last dim (single-label), sigmoid per label (multi-label).

    Raises ``NoProbabilityError`` naming ``what`` for a regression / single-output head (the softmax
    of one output is constantly 1: every attribution of it would be 0)."""
    import torch

    kind = head_kind(model_or_config)
    if kind == REGRESSION:
        raise NoProbabilityError(
            f"this model's head is a regression / single output (num_labels="
            f"{getattr(_config(model_or_config), 'num_labels', '?')}, problem_type="
            f"{getattr(_config(model_or_config), 'problem_type', None)!r}): it has no probability, so "
            f"{what} cannot be formed; explain the raw output instead (target_kind='logit')")
    if kind == MULTI_LABEL:
        return torch.sigmoid(logits.float())
    return torch.softmax(logits.float(), dim=-1)


def stored_probabilities(logits, model_or_config) -> list:
    """Per row, the list stored as ``Attribution.probs``: :func:`probabilities`, or ``[]`` for a
    regression head (it has none; never a constant 1)."""
    if head_kind(model_or_config) == REGRESSION:
        return [[] for _ in range(logits.shape[0])]
    return probabilities(logits, model_or_config).tolist()


def predicted_labels(probs, model_or_config) -> list[int]:
    """The labels predicted from one row of probabilities: those above ``THRESHOLD`` (multi-label),
    the argmax (single-label), ``[]`` for a regression head. ``model_or_config`` may also be a head
    kind (``"single_label"``, ``"multi_label"``, ``"regression"``)."""
    kind = model_or_config if model_or_config in (SINGLE_LABEL, MULTI_LABEL, REGRESSION) else \
        head_kind(model_or_config)
    values = [float(p) for p in probs]
    if kind == MULTI_LABEL:
        return [k for k, p in enumerate(values) if p > THRESHOLD]
    if kind == REGRESSION or not values:
        return []
    return [max(range(len(values)), key=values.__getitem__)]


def probs_problem(probs, model_or_config, num_classes: int | None) -> str | None:
    """Why a stored probability list cannot be this head's (None when it fits): length, range, and
    for single-label heads a sum of 1; regression heads store ``[]``."""
    kind = head_kind(model_or_config)
    if not isinstance(probs, list):
        return "probabilities are not a list"
    if kind == REGRESSION:
        return None if probs == [] else "a regression head stores no probabilities"
    if (num_classes and len(probs) != num_classes) or \
            not all(type(p) in (int, float) and 0.0 <= p <= 1.0 for p in probs):
        return "probabilities are not one per class of the model"
    if kind == SINGLE_LABEL and abs(sum(probs) - 1.0) > 1e-3:
        return "probabilities are not a distribution over the model's classes"
    return None


def require_single_label(model_or_config, measure: str) -> None:
    """Refuse, in one line naming why, a ``measure`` that assumes one class per example on a
    multi-label head (regression heads are refused by :func:`probabilities`)."""
    if head_kind(model_or_config) == MULTI_LABEL:
        raise NoProbabilityError(
            f"{measure} assumes one class per example, but this model is multi-label "
            "(problem_type='multi_label_classification': a sigmoid per label)")
