"""Datasets as lists of ``Example``: hub names (``glue/sst2:validation``) or local csv/tsv/jsonl files,
both through ``datasets.load_dataset``, with column mapping and label names.
"""
from __future__ import annotations

import os

from .types import Example

TEXT_GUESSES = ("text", "sentence", "sentence1", "premise", "question", "review", "content")
PAIR_GUESSES = ("text_pair", "sentence2", "hypothesis", "question2")
LABEL_GUESSES = ("label", "labels", "gold_label", "target", "class")
# TSV has no quoting convention (GLUE's files are read with QUOTE_NONE): a leading '"' is text.
LOCAL_FORMATS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}), ".jsonl": ("json", {}),
                 ".json": ("json", {})}


class DataError(ValueError):
    """A dataset, file or column that cannot be used, with a message saying why."""


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``"glue/sst2:validation"`` -> ``("glue", "sst2", "validation")``; ``"imdb"`` -> ``("imdb", None, None)``."""
    name, _, split = spec.partition(":")
    path, _, config = name.partition("/") if not os.path.exists(name) else (name, "", "")
    if path.count("/") == 0 and config and "/" in config:  # org/name/config
        org_name, _, config = config.rpartition("/")
        path = f"{path}/{org_name}"
    return path, (config or None), (split or None)


def load_table(spec: str):
    """A ``datasets.Dataset`` for a local file (``path[:split]``) or a hub name."""
    import datasets

    local, _, split = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    ext = os.path.splitext(local)[1].lower()
    if os.path.isdir(local):
        raise DataError(f"{local} is a folder: give one .csv/.tsv/.jsonl file (a folder's files are not merged)")
    if ext in LOCAL_FORMATS:
        if not os.path.exists(local):
            raise DataError(f"dataset file not found: {local}")
        if os.path.getsize(local) == 0:
            raise DataError(f"dataset file is empty: {local}")
        from .guard import InputFileError, check_data_file

        try:
            check_data_file(local, ext)  # encoding, JSON lines, header-only tables: said with line and byte
        except InputFileError as err:
            raise DataError(str(err)) from None
        builder, kwargs = LOCAL_FORMATS[ext]
        try:
            return datasets.load_dataset(builder, data_files={"data": os.path.abspath(local)}, split="data",
                                         **kwargs)
        except Exception as err:  # datasets raises many types for malformed files
            raise DataError(f"cannot read {local} as {ext[1:]}: {type(err).__name__}: {err}") from None
    path, config, split = parse_spec(spec)
    try:
        return datasets.load_dataset(path, config, split=split or "validation")
    except Exception as err:
        raise DataError(f"cannot load dataset {spec!r} (hub name or local .csv/.tsv/.jsonl file): {err}") from None


def _pick(columns, given, guesses, role, required):
    if given is not None:
        if given not in columns:
            raise DataError(f"{role} column {given!r} not found; columns are {sorted(columns)}")
        return given
    for guess in guesses:
        if guess in columns:
            return guess
    if required:
        raise DataError(f"cannot guess the {role} column among {sorted(columns)}: pass --{role}-column")
    return None


def load_examples(spec: str, text_column: str | None = None, pair_column: str | None = None,
                  label_column: str | None = None, limit: int | None = None,
                  label_names: list[str] | None = None) -> list[Example]:
    """Examples from a dataset spec. Labels given as strings are mapped through ``label_names``
    (a list, or a comma-separated string, index = class id), else the dataset's ClassLabel names;
    integer labels (or integer strings) are used as they are; negative labels mean "unknown"."""
    if isinstance(label_names, str):
        label_names = [name.strip() for name in label_names.split(",") if name.strip()]
    table = load_table(spec)
    if len(table) == 0:
        raise DataError(f"dataset {spec!r} has no rows")
    columns = list(table.column_names)
    text = _pick(columns, text_column, TEXT_GUESSES, "text", True)
    pair = _pick(columns, pair_column, PAIR_GUESSES, "pair", False) if pair_column is not None or \
        any(c in columns for c in PAIR_GUESSES) else None
    label = _pick(columns, label_column, LABEL_GUESSES, "label", False)
    names = label_names
    if names is None and label is not None:
        feature = table.features[label]
        names = getattr(feature, "names", None)
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    examples = []
    for index, row in enumerate(table):
        value = row[label] if label is not None else None
        if isinstance(value, str):
            if value.strip().lstrip("-").isdigit():
                value = int(value)
            elif names and value in names:
                value = names.index(value)
            else:
                known = f"known names: {list(names)}" if names else "no label names given (--label-names)"
                raise DataError(f"row {index}: label {value!r} is not an integer or a known label name; {known}")
        if value is not None and value < 0:
            value = None  # GLUE test splits mark unknown labels with -1
        if row[text] is None:
            raise DataError(f"row {index}: empty text")
        examples.append(Example(str(row[text]), str(row[pair]) if pair and row[pair] is not None else None,
                                value, str(row.get("id", index)) if "id" in columns else str(index)))
    return examples
