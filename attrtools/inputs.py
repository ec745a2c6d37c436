"""What comes in: the one rule that turns the Python objects users hold into attrtools inputs.

``normalize(inputs, tokenizer, ...)`` is called by ``attrtools.attribute`` and at the engine's
entry (``Engine.attribute`` / ``Engine.stream``), so every tool sees the same rule:

- a ``str``, a ``(text, text_pair)`` tuple of two strings, a dict with ``text`` (and ``text_pair``,
  ``label``, ``id``) or an ``Example``: one input (``single=True``);
- a ``pandas.DataFrame``, a ``datasets.Dataset`` or one split of a ``datasets.DatasetDict``
  (``split=``; a dict with a single split needs none): one example per row, columns named by
  ``text_column`` / ``pair_column`` / ``label_column`` or guessed as for files
  (``attrtools.data.examples_from_table``, the same function ``load_examples`` uses: ``text``,
  ``sentence``, ``sentence1``, ``premise``, ... / ``sentence2``, ``hypothesis``, ... / ``label``,
  ...; string labels through the model's ``label2id``). Never the column *names* (iterating a
  DataFrame yields them: the silent error this module exists for);
- a ``pandas.Series`` or numpy array of strings: its values;
- a list (or any iterable) of the single inputs above; a list of dicts goes through the same
  column rule as a DataFrame (read lazily, row by row, when it is not a list or tuple);
- token ids for users who tokenize themselves: a ``BatchEncoding`` / dict with ``input_ids`` (and
  ``attention_mask``, whose zeros are dropped: left or right padding alike; ``token_type_ids``;
  ``labels``), a 1-D / 2-D integer ``torch.Tensor`` or numpy array, or a list of lists of ints.
  Each row becomes a :class:`Tokenized` example, attributed as given (never re-tokenized; one longer
  than the model's limit is refused, not truncated);
- anything else: ``InputDataError`` in one line naming what is accepted.

Rows keep their order and count (one result per row), so a DataFrame gives the same attributions
as the list of its texts.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import InputDataError
from .types import Example

ACCEPTED = ("a str, a (text, text_pair) tuple, a dict with 'text', an attrtools.Example, a list of these, "
            "a pandas DataFrame or Series, a datasets Dataset or DatasetDict split, a list of dicts, "
            "or token ids (a BatchEncoding, a dict with 'input_ids', an integer tensor/array, "
            "a list of lists of ints)")


@dataclass(frozen=True)
class Tokenized(Example):
    """An example the user tokenized: ``input_ids`` (special tokens included, no padding) and
    ``token_type_ids`` (None: zeros) as given; ``text`` is the decoded ids, for display only."""

    input_ids: tuple = ()
    token_type_ids: tuple | None = None


class InputTypeError(InputDataError, TypeError):
    """An object of a type attrtools does not take as input (a ``TypeError`` too, as before)."""


def refuse(obj) -> InputDataError:
    module = type(obj).__module__
    name = type(obj).__qualname__ if module == "builtins" else f"{module}.{type(obj).__qualname__}"
    return InputTypeError(f"cannot use {name} as input: give {ACCEPTED}")


def _is_single(obj) -> bool:
    return isinstance(obj, (str, Example)) or (isinstance(obj, tuple) and len(obj) == 2
                                               and all(isinstance(x, str) for x in obj)) or \
        (isinstance(obj, Mapping) and "text" in obj and "input_ids" not in obj)


def _type_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _is_dataframe(obj) -> bool:
    return _type_name(obj).startswith("pandas.") and type(obj).__name__ == "DataFrame"


def _is_series(obj) -> bool:
    return _type_name(obj).startswith("pandas.") and type(obj).__name__ == "Series"


def _is_dataset(obj) -> bool:
    return _type_name(obj).startswith("datasets.") and type(obj).__name__ == "Dataset"


def _is_dataset_dict(obj) -> bool:
    return _type_name(obj).startswith("datasets.") and type(obj).__name__ in ("DatasetDict", "IterableDatasetDict")


def _is_iterable_dataset(obj) -> bool:
    return _type_name(obj).startswith("datasets.") and type(obj).__name__ == "IterableDataset"


def _is_tensor(obj) -> bool:
    return type(obj).__name__ in ("Tensor", "ndarray") and hasattr(obj, "shape") and hasattr(obj, "tolist")


def _is_int_rows(obj) -> bool:
    return isinstance(obj, (list, tuple)) and len(obj) > 0 and \
        all(isinstance(r, (list, tuple)) and r and all(_is_int(v) for v in r) for r in obj)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith(("int", "uint"))


def normalize(inputs, tokenizer=None, *, text_column: str | None = None, pair_column: str | None = None,
              label_column: str | None = None, split: str | None = None, label_names=None, model_config=None,
              passthrough: tuple = ()):
    """``(items, single)``: ``items`` a list (or, for a lazy iterable, an iterator) of ``Example`` /
    :class:`Tokenized` (and ``passthrough`` instances as they are), ``single`` whether ``inputs`` was
    one input. ``tokenizer`` decodes token ids for display; ``model_config`` maps string labels.

    Raises ``InputDataError`` (one line) for anything not in the module docstring's list, a
    ``DatasetDict`` with several splits and no ``split``, or unknown columns."""
    table_kwargs = dict(text_column=text_column, pair_column=pair_column, label_column=label_column,
                        label_names=label_names, model_config=model_config)
    if passthrough and isinstance(inputs, passthrough):
        return [inputs], True
    if _is_dataset_dict(inputs):
        splits = list(inputs.keys())
        if split is None and len(splits) != 1:
            raise InputDataError(f"a DatasetDict with splits {splits}: pass split= (one of them), "
                                 f"or give the split itself (e.g. dataset[{splits[0]!r}])")
        chosen = split if split is not None else splits[0]
        if chosen not in inputs:
            raise InputDataError(f"split {chosen!r} is not in the DatasetDict; its splits are {splits}")
        return normalize(inputs[chosen], tokenizer, **table_kwargs, passthrough=passthrough)
    if _is_dataframe(inputs):
        import datasets

        return _table(datasets.Dataset.from_pandas(inputs, preserve_index=False), "the DataFrame", table_kwargs), False
    if _is_dataset(inputs):
        return _table(inputs, "the dataset", table_kwargs), False
    if _is_single(inputs) or (isinstance(inputs, Mapping) and "input_ids" not in inputs):
        return [coerce(inputs, table_kwargs)], True
    if _is_series(inputs):
        return [coerce(v) for v in inputs.tolist()], False
    if isinstance(inputs, Mapping) and "input_ids" in inputs:  # BatchEncoding or a dict of token ids
        return _token_rows(inputs, tokenizer)
    if _is_tensor(inputs):
        if getattr(inputs, "dtype", None) is not None and str(inputs.dtype).startswith(("<U", "<S", "object")):
            return [coerce(v) for v in inputs.tolist()], False  # a numpy array of strings
        return _token_rows({"input_ids": inputs}, tokenizer)
    if _is_int_rows(inputs) or (isinstance(inputs, list) and inputs and all(_is_int(v) for v in inputs)):
        return _token_rows({"input_ids": inputs}, tokenizer)
    if isinstance(inputs, list) and all(isinstance(x, (Example,) + tuple(passthrough)) for x in inputs):
        return inputs, False  # already inputs (an ExampleList keeps its rows)
    if isinstance(inputs, (list, tuple)):
        if inputs and all(isinstance(x, Mapping) and "input_ids" not in x for x in inputs):
            import datasets

            return _table(datasets.Dataset.from_list([dict(x) for x in inputs]), "the list of dicts",
                          table_kwargs), False
        return [x if passthrough and isinstance(x, passthrough) else coerce(x, table_kwargs) for x in inputs], False
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Iterable):
        raise refuse(inputs)
    return (x if passthrough and isinstance(x, passthrough) else coerce(x, table_kwargs) for x in inputs), False


def coerce(obj, table_kwargs: dict | None = None) -> Example:
    """One input -> ``Example`` (a dict without ``text`` through the DataFrame column rule);
    ``InputDataError`` naming what is accepted otherwise."""
    if isinstance(obj, Example):
        return obj
    if isinstance(obj, str):
        return Example(obj)
    if isinstance(obj, (tuple, list)) and 1 <= len(obj) <= 2 and all(isinstance(o, str) for o in obj):
        return Example(*obj)
    if isinstance(obj, Mapping):
        if "text" in obj and not (table_kwargs and table_kwargs.get("text_column")):
            label = obj.get("label")
            return Example(obj["text"], obj.get("text_pair"), int(label) if _is_int(label) else label, obj.get("id"))
        import datasets

        return _table(datasets.Dataset.from_list([dict(obj)]), "the dict", table_kwargs or {})[0]
    raise refuse(obj)


def _table(table, name: str, table_kwargs: dict) -> list:
    from .data import examples_from_table

    return [_integer_label(e, name) for e in examples_from_table(table, name, keep=False, **table_kwargs)]


def _integer_label(example: Example, name: str) -> Example:
    """pandas turns an integer column with a missing value into floats (``1.0``, ``nan``): a whole
    float is its integer class, NaN (or a negative value) is unknown; any other number is refused."""
    label = example.label
    if label is None or (isinstance(label, int) and not isinstance(label, bool)):
        return example
    import math
    from dataclasses import replace

    if isinstance(label, float) and math.isnan(label):
        return replace(example, label=None)
    if isinstance(label, float) and label.is_integer():
        return replace(example, label=int(label) if label >= 0 else None)
    raise InputDataError(f"row {example.id} of {name}: label {label!r} is not a class index (an integer) or a "
                         "label name")


def _rows(value) -> list[list[int]]:
    rows = value.tolist() if hasattr(value, "tolist") else value
    if rows and not isinstance(rows[0], (list, tuple)):
        rows = [rows]
    return [[int(v) for v in r] for r in rows]


def _token_rows(encoding: Mapping, tokenizer):
    """One :class:`Tokenized` per row of ``encoding["input_ids"]``, without the positions whose
    ``attention_mask`` is 0 (padding on either side)."""
    ids = _rows(encoding["input_ids"])
    single = not hasattr(encoding["input_ids"], "shape") and ids and not isinstance(encoding["input_ids"][0],
                                                                                    (list, tuple)) \
        or getattr(encoding["input_ids"], "ndim", 2) == 1
    masks = _rows(encoding["attention_mask"]) if encoding.get("attention_mask") is not None else None
    types = _rows(encoding["token_type_ids"]) if encoding.get("token_type_ids") is not None else None
    labels = encoding.get("labels", encoding.get("label"))
    labels = (labels.tolist() if hasattr(labels, "tolist") else labels) if labels is not None else None
    if labels is not None and not isinstance(labels, list):
        labels = [labels]
    for what, other in (("attention_mask", masks), ("token_type_ids", types)):
        if other is not None and [len(r) for r in other] != [len(r) for r in ids]:
            raise InputDataError(f"{what} has another shape than input_ids")
    if labels is not None and (len(labels) != len(ids) or not all(_is_int(v) for v in labels)):
        raise InputDataError("labels must be one integer class per row of input_ids (multi-hot labels are not "
                             "supported)")
    items = []
    for r, row in enumerate(ids):
        keep = [t for t in range(len(row)) if masks is None or masks[r][t]]
        if not keep:
            raise InputDataError(f"row {r} of input_ids has no token with attention_mask 1")
        row_ids = tuple(row[t] for t in keep)
        row_types = tuple(types[r][t] for t in keep) if types is not None else None
        text = tokenizer.decode(list(row_ids), skip_special_tokens=True) if tokenizer is not None else ""
        label = int(labels[r]) if labels is not None and int(labels[r]) >= 0 else None
        items.append(Tokenized(text, None, label, str(r), input_ids=row_ids, token_type_ids=row_types))
    return items, bool(single)


def tokenized_fields(example: Tokenized, tokenizer, max_length: int | None) -> dict:
    """The engine's fields for a :class:`Tokenized` example: ``input_ids``, ``token_type_ids`` (zeros when
    not given), ``special_tokens_mask`` (the tokenizer's, ``already_has_special_tokens=True``).
    Raises ``InputDataError`` when it is longer than ``max_length`` (the model's limit: tokenize with
    ``truncation=True, max_length=...``; attrtools does not cut what the user tokenized)."""
    ids = [int(i) for i in example.input_ids]
    if max_length is not None and len(ids) > max_length:
        raise InputDataError(f"tokenized input {example.id!r} has {len(ids)} tokens, more than the model's limit of "
                             f"{max_length}: tokenize with truncation=True, max_length={max_length}")
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    bad = [i for i in ids if i < 0 or (size is not None and i >= size)]
    if bad:
        raise InputDataError(f"tokenized input {example.id!r} holds id {bad[0]}, outside the tokenizer's "
                             f"vocabulary of {size}")
    mask = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    types = list(example.token_type_ids) if example.token_type_ids is not None else [0] * len(ids)
    return {"input_ids": ids, "token_type_ids": types, "special_tokens_mask": list(mask)}
