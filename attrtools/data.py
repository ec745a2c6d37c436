"""Datasets as lists of ``Example``: hub names (``glue/sst2:validation``) or local csv/tsv/jsonl files,
both through ``datasets.load_dataset``, with column mapping and label names.

Two input rules live here (DESIGN.md, "Inputs, one rule"):

- **Rows without content** (an empty or missing field, only spaces, nothing but digits,
  punctuation or emoji: no letter at all; and, once the model's tokenizer is known, a text of
  which it keeps no token) are not examples: ``keep_content`` drops them and records each with
  its row index and reason in ``ExampleList.skipped``; every tool calls it (with its tokenizer),
  so such a row never crashes a run (TextAttack's language detection, "tokenizes to nothing")
  nor counts as zeros.
- **Labels**: string labels map through the model's own ``label2id`` when it is not generic
  (``LABEL_0``...); ``--label-names`` that disagree with it are an error showing both maps
  (``label_names_for``). Integer labels are used as they are, except that a dataset whose
  ``ClassLabel`` names are a permutation of the model's names is re-numbered by name.
"""
from __future__ import annotations

import contextlib
import os
import re

from .errors import InputDataError
from .types import Example

TEXT_GUESSES = ("text", "sentence", "sentence1", "premise", "question", "review", "content")
PAIR_GUESSES = ("text_pair", "sentence2", "hypothesis", "question2")
LABEL_GUESSES = ("label", "labels", "gold_label", "target", "class")
# TSV has no quoting convention (GLUE's files are read with QUOTE_NONE): a leading '"' is text.
LOCAL_FORMATS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}), ".jsonl": ("json", {}),
                 ".json": ("json", {})}


#: The old name of :class:`attrtools.errors.InputDataError`.
DataError = InputDataError


class ExampleList(list):
    """A list of ``Example`` that remembers the rows left out (``skipped``: dicts with ``index``
    (0-based), ``row`` (the 1-based data row the user sees, ``row_label``), ``id``, ``reason`` and
    the start of the ``text``). ``total`` = kept + skipped rows.

    ``rows``: the dataset row index of each item (None when unknown), kept by slicing, so that a
    row a later ``keep_content`` leaves out (with the model's tokenizer) is named by its row in the
    file, not by its position among the rows kept before."""

    def __init__(self, items=(), skipped=None, rows=None):
        if rows is None and isinstance(items, ExampleList):
            rows = items.rows
        super().__init__(items)
        self.skipped: list[dict] = list(skipped or [])
        self.rows: list[int] | None = list(rows) if rows is not None and len(rows) == len(self) else None

    def __getitem__(self, key):
        item = super().__getitem__(key)
        if isinstance(key, slice):  # a slice keeps the row numbers (not the skipped rows: they are the whole list's)
            return ExampleList(item, rows=self.rows[key] if self.row_numbers_valid() else None)
        return item

    def row_numbers_valid(self) -> bool:
        """Whether ``rows`` still matches the items (a list changed in place loses them)."""
        return self.rows is not None and len(self.rows) == len(self)

    @property
    def total(self) -> int:
        return len(self) + len(self.skipped)

    def skipped_summary(self) -> str:
        """``"2 (empty text: 1, no letters in text: 1)"`` or ``"0"``."""
        if not self.skipped:
            return "0"
        from .runreport import count_reasons

        counts = count_reasons(row["reason"] for row in self.skipped)
        return f"{len(self.skipped)} (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")"


def row_label(skipped_row: dict) -> str:
    """``"row 3"``: a skipped row as the user counts the rows of the file (1 = the first data row,
    after any header), from a ``skipped`` dict (``row``, or the 0-based ``index`` of older records)."""
    row = skipped_row.get("row")
    if row is None and skipped_row.get("index") is not None:
        row = int(skipped_row["index"]) + 1
    return f"row {row}" if row is not None else f"id {skipped_row.get('id')!r}"


def content_problem(example: Example) -> str | None:
    """Why ``example`` has no content (None if it has): an empty/missing or whitespace-only text or
    pair, or one without a single letter (digits, punctuation, emoji only)."""
    fields = [("text", example.text)] + ([("text_pair", example.text_pair)] if example.text_pair is not None else [])
    for name, value in fields:
        if value is None or value == "":
            return f"empty {name}"
        if not value.strip():
            return f"whitespace-only {name}"
        if not any(ch.isalpha() for ch in value):
            return f"no letters in {name} ({value.strip()[:30]!r})"
    return None


def token_problem(example: Example, tokenizer) -> str | None:
    """Why ``example`` has no content for ``tokenizer`` (None if it has): a text or pair of which
    the tokenizer keeps no token but special ones (``[UNK]`` counts as content), e.g. characters a
    tokenizer's normaliser drops, or words a vocabulary without an unknown token cannot spell."""
    special = set(getattr(tokenizer, "all_special_ids", None) or ()) - {getattr(tokenizer, "unk_token_id", None)}
    fields = [("text", example.text)] + ([("text_pair", example.text_pair)] if example.text_pair is not None else [])
    for name, value in fields:
        ids = tokenizer(value, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        if not [i for i in ids if i not in special]:
            return f"no tokens in {name} ({value.strip()[:30]!r}: the tokenizer keeps none of it)"
    return None


def keep_content(examples, tokenizer=None) -> ExampleList:
    """``examples`` without the rows that have no content (``content_problem``; with a
    ``tokenizer``, also ``token_problem``), as an ``ExampleList`` whose ``skipped`` lists them (row
    index: ``examples.rows`` when ``examples`` is an ``ExampleList`` that knows them, else the
    position in ``examples``; id; reason); rows an input ``ExampleList`` already skipped are kept in
    the record. Every skipped row is noted for the run's summary (``attrtools.runreport``)."""
    from . import runreport

    kept, kept_rows, skipped = [], [], list(getattr(examples, "skipped", []))
    numbers = examples.rows if isinstance(examples, ExampleList) and examples.row_numbers_valid() else None
    for position, example in enumerate(examples):
        index = numbers[position] if numbers is not None else position  # the row in the file when known
        example = Example.coerce(example)
        reason = content_problem(example)
        if reason is None and tokenizer is not None:
            reason = token_problem(example, tokenizer)
        if reason is None:
            kept.append(example)
            kept_rows.append(index)
        else:
            skipped.append({"index": index, "row": index + 1, "id": example.id, "reason": reason,
                            "text": (example.text or "")[:80]})
    runreport.note_skipped(skipped)
    return ExampleList(kept, skipped, kept_rows)


_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


def model_label_names(config) -> list[str] | None:
    """The model's class names in id order (``config.id2label``), or None when they are the
    generic ``LABEL_0, LABEL_1, ...`` (or missing)."""
    config = getattr(config, "config", config)
    id2label = getattr(config, "id2label", None) or {}
    if not id2label:
        return None
    names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(len(id2label))]
    if all(_GENERIC_LABEL.match(name) for name in names):
        return None
    return names


def _as_map(names) -> str:
    return "{" + ", ".join(f"{i}: {name!r}" for i, name in enumerate(names)) + "}"


def label_names_for(given=None, config=None) -> list[str] | None:
    """The class names string labels map through: the model's own (non-generic) ``id2label``,
    or ``given`` (``--label-names``: a list or a comma-separated string, index = class id).

    Raises ``DataError`` showing both maps when ``given`` disagrees with the model's own names."""
    if isinstance(given, str):
        given = [name.strip() for name in given.split(",") if name.strip()]
    given = list(given) if given else None
    own = model_label_names(config) if config is not None else None
    if given and own and given != own:
        raise DataError(f"--label-names {_as_map(given)} conflict with the model's own labels {_as_map(own)}; "
                        f"drop --label-names (the model's map is used) or give them in the model's order")
    if given and config is not None:
        count = int(getattr(getattr(config, "config", config), "num_labels", len(given)) or len(given))
        if len(given) != count:
            raise DataError(f"--label-names gives {len(given)} names {_as_map(given)} for a {count}-class model")
    return given or own


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``"glue/sst2:validation"`` -> ``("glue", "sst2", "validation")``; ``"imdb"`` -> ``("imdb", None, None)``."""
    name, _, split = spec.partition(":")
    path, _, config = name.partition("/") if not os.path.exists(name) else (name, "", "")
    if path.count("/") == 0 and config and "/" in config:  # org/name/config
        org_name, _, config = config.rpartition("/")
        path = f"{path}/{org_name}"
    return path, (config or None), (split or None)


@contextlib.contextmanager
def datasets_bars_off():
    """No progress bars of ``datasets`` inside (its "Generating ... split" bar for a small local
    file is noise next to attrtools' own); the previous state is restored after. Left alone when
    ``HF_DATASETS_DISABLE_PROGRESS_BARS`` is set: the environment decides then."""
    import datasets

    if datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is not None or datasets.are_progress_bars_disabled():
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def load_table(spec: str):
    """A ``datasets.Dataset`` for a local file (``path[:split]``) or a hub name, loaded without
    ``datasets``' own progress bars (``datasets_bars_off``)."""
    with datasets_bars_off():
        return _load_table(spec)


def check_local_file(spec: str) -> str | None:
    """The local file ``spec`` names (``path[:split]`` with a .csv/.tsv/.jsonl/.json name), checked
    to exist, be a file and not be empty (``DataError`` otherwise), before anything is loaded; None
    for a hub name."""
    local = spec.partition(":")[0] if not os.path.exists(spec) else spec
    if os.path.isdir(local):
        raise DataError(f"{local} is a folder: give one .csv/.tsv/.jsonl file (a folder's files are not merged)")
    if os.path.splitext(local)[1].lower() not in LOCAL_FORMATS:
        return None
    if not os.path.exists(local):
        raise DataError(f"dataset file not found: {local}")
    if os.path.getsize(local) == 0:
        raise DataError(f"dataset file is empty: {local}")
    return local


def _load_table(spec: str):
    import datasets

    local = check_local_file(spec)
    if local is not None:
        ext = os.path.splitext(local)[1].lower()
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
                  label_names: list[str] | None = None, model_config=None) -> ExampleList:
    """Examples from a dataset spec, rows without content left out (``ExampleList.skipped``).

    Labels given as strings map through ``label_names_for(label_names, model_config)`` (the
    model's own non-generic ``label2id``, or ``label_names``: a list or a comma-separated string,
    index = class id), else the dataset's ClassLabel names; integer labels (or integer strings)
    are used as they are, re-numbered by name when the dataset's ClassLabel names are a
    permutation of the model's; negative labels mean "unknown". ``model_config``: the model (or
    its config) whose labels these are."""
    return examples_from_table(load_table(spec), spec, text_column, pair_column, label_column, limit, label_names,
                               model_config)


def examples_from_table(table, spec: str, text_column: str | None = None, pair_column: str | None = None,
                        label_column: str | None = None, limit: int | None = None,
                        label_names: list[str] | None = None, model_config=None, keep: bool = True) -> ExampleList:
    """``load_examples`` on a loaded ``datasets.Dataset`` (``spec`` names it in messages): the same
    column guessing and label rule. ``keep=False``: every row becomes an example (no ``keep_content``;
    ``attrtools.inputs`` keeps one result per row of a user's DataFrame or dataset)."""
    label_names = label_names_for(label_names, model_config)
    if len(table) == 0:
        raise DataError(f"dataset {spec!r} has no rows")
    columns = list(table.column_names)
    text = _pick(columns, text_column, TEXT_GUESSES, "text", True)
    pair = _pick(columns, pair_column, PAIR_GUESSES, "pair", False) if pair_column is not None or \
        any(c in columns for c in PAIR_GUESSES) else None
    label = _pick(columns, label_column, LABEL_GUESSES, "label", False)
    names = label_names
    remap = None
    if label is not None:
        dataset_names = getattr(table.features[label], "names", None)
        if names is None:
            names = dataset_names
        elif dataset_names and list(dataset_names) != list(names) and sorted(dataset_names) == sorted(names):
            remap = {i: list(names).index(name) for i, name in enumerate(dataset_names)}
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    examples = []
    for index, row in enumerate(table):
        value = row[label] if label is not None else None
        if isinstance(value, str):
            folded = [str(n).lower() for n in names] if names else []
            if not value.strip():
                value = None  # an empty label field: unknown
            elif value.strip().lstrip("-").isdigit():
                value = int(value)
            elif names and value in names:
                value = list(names).index(value)
            elif value.strip().lower() in folded:
                value = folded.index(value.strip().lower())
            else:
                known = f"known names: {list(names)}" if names else "no label names given (--label-names)"
                raise DataError(f"row {index + 1}: label {value!r} is not an integer or a known label name; {known}")
        if value is not None and value < 0:
            value = None  # GLUE test splits mark unknown labels with -1
        elif value is not None and remap is not None and not isinstance(row[label], str):
            value = remap.get(value, value)
        pair_text = (str(row[pair]) if row[pair] is not None else "") if pair else None
        examples.append(Example(str(row[text]) if row[text] is not None else "", pair_text,
                                value, str(row.get("id", index)) if "id" in columns else str(index)))
    return keep_content(examples) if keep else ExampleList(examples, rows=list(range(len(examples))))
