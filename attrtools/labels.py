"""The one label rule of every command (evaluate, prune, tree, triggers, audit, attribute, finetune).

Two functions, used by ``attrtools.data`` (reading a label) and by the command-line kit (checking
a dataset's labels against a model), so that every tool accepts and refuses the same labels with the
same words:

- ``parse_label(value, names, one_based)``: one cell of a label column -> a class id or None
  (unlabeled). Integers (or integer strings) are class ids; strings map through ``names`` (exact,
  then case-folded); an empty cell or a negative integer (GLUE's test splits mark unlabeled rows
  with ``-1``) is unlabeled. ``one_based=True`` (``--one-based-labels``): integer labels count
  classes from 1 (AG News' 1..4, Yelp's 1..5 stars) and become ``value - 1``. Anything else raises
  ``LabelError`` saying why (and, through ``swapped_columns_hint``, when the text and label columns
  look swapped).
- ``check_gold_labels(examples, num_classes, need=..., what=...)``: every label a class of the
  model (``0..num_classes-1``); labels running ``1..num_classes`` are named as 1-based with the
  option that fixes them; with ``need=True`` (tools that compare to gold labels) a dataset without a
  label column is refused naming the columns, and unlabeled rows (``-1`` / empty) are left out with
  the reason ``unlabeled row`` recorded in ``ExampleList.skipped`` (as ``data.keep_content`` does),
  none left being an error.

``infer_num_classes`` (fine-tuning a fresh head) counts classes from the labels by the same rule.
"""
from __future__ import annotations

from .errors import InputDataError

#: The option (and Python keyword) that declares 1-based integer labels.
ONE_BASED_OPTION = "--one-based-labels"
ONE_BASED_KWARG = "one_based_labels=True"


class LabelError(InputDataError):
    """A label that is not a label at all, or a dataset without the labels a tool needs (one line, exit 1)."""


class LabelRangeError(LabelError):
    """A label outside the model's classes (1-based labels included): the request does not fit the
    model, fixable by an option (one line, exit 2, as every malformed request)."""

    exit_code = 2


def _integer(value):
    """``value`` as an int when it is one (an int, a whole float, or an integer string), else None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-+").isdigit():
            return int(stripped)
        if stripped.lstrip("-+").replace(".", "", 1).isdigit() and float(stripped).is_integer():
            return int(float(stripped))  # "1.0": a whole number written by a float column
    return None


def looks_like_label(value, names=None) -> bool:
    """Whether ``value`` reads as a label: an integer, or one of ``names`` (case-folded)."""
    if value is None:
        return False
    if _integer(value) is not None:
        return True
    folded = {str(n).strip().lower() for n in names or ()}
    return isinstance(value, str) and value.strip().lower() in folded


def parse_label(value, names=None, one_based: bool = False):
    """One label cell -> a 0-based class id, or None for an unlabeled row.

    ``value``: the cell (int, float, str or None); ``names``: class names in id order (the model's
    or ``--label-names``); ``one_based``: integer labels count from 1. Negative integers (``-1``)
    and empty cells are unlabeled (None). Raises ``LabelError`` for a string that is neither an
    integer nor one of ``names`` (the caller adds the row and the swap hint)."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN: an empty cell
        return None
    if isinstance(value, str) and not value.strip():
        return None
    number = _integer(value)
    if number is not None:
        if number < 0:
            return None  # GLUE's test splits: -1 = no label
        if one_based:
            if number == 0:
                raise LabelError(f"label 0 in labels declared 1-based ({ONE_BASED_OPTION}): drop {ONE_BASED_OPTION} "
                                 "if the labels count from 0")
            return number - 1
        return number
    if isinstance(value, str):
        listed = [str(n) for n in names or ()]
        if value in listed:
            return listed.index(value)
        folded = [n.strip().lower() for n in listed]
        if value.strip().lower() in folded:
            return folded.index(value.strip().lower())
        known = f"known names: {listed}" if listed else "no label names given (--label-names)"
        raise LabelError(f"label {value!r} is not an integer or a known label name; {known}")
    raise LabelError(f"label {value!r} ({type(value).__name__}) is not an integer or a label name")


def swapped_columns_hint(text_values, label_values, text_column, label_column, names=None) -> str:
    """``"; --text-column 'label' and --label-column 'text' look swapped ..."`` when the column read
    as text holds label-like values (integers or label names) and the label column holds longer
    text; else ``""``. ``text_values`` / ``label_values``: the first cells of each column."""
    text_values = [v for v in text_values if v is not None][:20]
    label_values = [v for v in label_values if v is not None][:20]
    if not text_values or not label_values:
        return ""
    text_like_labels = all(looks_like_label(v, names) for v in text_values)
    labels_like_text = not all(looks_like_label(v, names) for v in label_values)
    if text_like_labels and labels_like_text:
        return (f"; the text column {text_column!r} holds label-like values ({str(text_values[0])!r}) and the label "
                f"column {label_column!r} holds text: --text-column and --label-column look swapped "
                f"(try --text-column {label_column} --label-column {text_column})")
    return ""


def num_classes_of(model) -> int | None:
    """The model's class count (``config.num_labels``) from a model, its config or an int, or None."""
    if isinstance(model, int) and not isinstance(model, bool):
        return model if model > 0 else None
    classes = getattr(getattr(model, "config", model), "num_labels", None)
    return classes if isinstance(classes, int) and classes > 0 else None


def _row_of(examples, index: int) -> int:
    rows = examples.rows if getattr(examples, "row_numbers_valid", lambda: False)() else None
    return (rows[index] if rows is not None else index) + 1


def check_gold_labels(examples, num_classes: int | None = None, need: bool = False, what: str = "--dataset"):
    """The one label rule: ``examples`` (an ``ExampleList`` or a list of ``Example``) checked
    against a ``num_classes``-class model, returned as an ``ExampleList``.

    - A label outside ``0..num_classes-1`` raises ``LabelRangeError`` (exit 2) naming the row; labels that run
      ``1..num_classes`` (no 0) are named as 1-based with the fix (``--one-based-labels``).
    - ``need=True``: a dataset read without any label column raises ``LabelError`` naming the
      columns and ``--label-column``; rows without a label (``-1`` or empty) are left out, each
      recorded in ``skipped`` with the reason ``unlabeled row (label -1 or empty)``; no labelled
      row left raises ``LabelError``.
    ``num_classes=None`` skips the range check (the model's class count is not known yet)."""
    from .data import ExampleList

    examples = examples if isinstance(examples, ExampleList) else ExampleList(examples)
    if need and getattr(examples, "has_label_column", None) is False:
        columns = getattr(examples, "columns", None)
        among = f" among the columns {columns}" if columns else ""
        raise LabelError(f"{what}: no label column found{among}; name it with --label-column "
                         "(this tool compares predictions to gold labels)")
    if need and any(e.label is None for e in examples):
        examples = _drop_unlabeled(examples, what)
    if num_classes:
        labels = [e.label for e in examples if e.label is not None]
        bad = [i for i, e in enumerate(examples) if e.label is not None and not 0 <= e.label < num_classes]
        if bad:
            row, label = _row_of(examples, bad[0]), examples[bad[0]].label
            low, high = min(labels), max(labels)
            if low >= 1 and high == num_classes:
                raise LabelRangeError(
                    f"{what}: the labels run {low}..{high} and row {row} has label {label}, but the model's "
                    f"{num_classes} classes are 0..{num_classes - 1}: the labels look 1-based (as AG News ships "
                    f"them); pass {ONE_BASED_OPTION} ({ONE_BASED_KWARG} in Python) to read label k as class k-1")
            distinct = len(set(labels))
            more = f"; the dataset has {distinct} distinct labels ({low}..{high})" if distinct > num_classes else ""
            raise LabelRangeError(f"{what}: row {row} has label {label}, but the model has {num_classes} classes "
                             f"(0..{num_classes - 1}){more}; check --label-column, or use another model or dataset")
        if num_classes > 2 and len(labels) >= 2 * num_classes and sorted(set(labels)) == list(range(1, num_classes)):
            from .notices import warn

            warn(f"{what}: no row has label 0 and the labels run 1..{num_classes - 1} for a {num_classes}-class "
                 f"model: if they are 1-based, pass {ONE_BASED_OPTION} ({ONE_BASED_KWARG}), else every score "
                 "against gold labels is off by one class")
    return examples


def _drop_unlabeled(examples, what: str):
    from . import runreport
    from .data import ExampleList

    kept, rows, skipped = [], [], list(examples.skipped)
    numbers = examples.rows if examples.row_numbers_valid() else None
    for position, example in enumerate(examples):
        index = numbers[position] if numbers is not None else position
        if example.label is None:
            skipped.append({"index": index, "row": index + 1, "id": example.id,
                            "reason": "unlabeled row (label -1 or empty)", "text": (example.text or "")[:80]})
        else:
            kept.append(example)
            rows.append(index)
    if not kept:
        raise LabelError(f"{what}: none of the {len(examples)} rows has a gold label (all are -1 or empty, as in "
                         "GLUE's test splits, which hide their labels); use a labelled split such as validation")
    runreport.note_skipped(skipped[len(examples.skipped):])
    result = ExampleList(kept, skipped, rows)
    result.has_label_column = getattr(examples, "has_label_column", None)
    result.columns = getattr(examples, "columns", None)
    result.label_names = getattr(examples, "label_names", None)
    return result


def infer_num_classes(examples, names=None, what: str = "--dataset") -> int:
    """The class count a fresh classifier head needs for ``examples`` (fine-tuning): ``len(names)``
    when class names are given, else ``max(label) + 1``. Labels with no 0 whose count of distinct
    values equals their maximum (``1..K``) raise ``LabelError`` as 1-based (``--one-based-labels``),
    as ``check_gold_labels`` does; rows must carry labels (callers pass ``need=True`` first)."""
    labels = sorted({e.label for e in examples if e.label is not None})
    if not labels:
        raise LabelError(f"{what}: no row has a gold label")
    if names:
        return len(names)
    if labels[0] >= 1 and labels == list(range(1, labels[-1] + 1)):
        raise LabelRangeError(f"{what}: the labels run {labels[0]}..{labels[-1]} with no 0: they look 1-based (as AG News "
                         f"ships them); pass {ONE_BASED_OPTION} ({ONE_BASED_KWARG} in Python) to read label k as "
                         f"class k-1, or --label-names to fix the classes")
    return labels[-1] + 1
