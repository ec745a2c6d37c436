"""Datasets as lists of ``Example``: hub ids (``stanfordnlp/imdb:test``, ``nyu-mll/glue:sst2:validation``,
legacy ``glue/sst2:validation``; the grammar is ``parse_spec``), local csv/tsv/jsonl/parquet files
(headerless ones with ``no_header``/``column_names``) and local dataset folders, all through
``datasets``, with column mapping and label names. docs/datasets.md is the user's page.

Two input rules live here (DESIGN.md, "Inputs, one rule"):

- **Rows without content** (an empty or missing field, only spaces, nothing but digits,
  punctuation or emoji: no letter at all; and, once the model's tokenizer is known, a text of
  which it keeps no token) are not examples: ``keep_content`` drops them and records each with
  its row index and reason in ``ExampleList.skipped``; every tool calls it (with its tokenizer),
  so such a row never crashes a run (TextAttack's language detection, "tokenizes to nothing")
  nor counts as zeros.
- **Labels**: each cell is read by ``labels.parse_label`` (the one label rule; ``labels.py`` also
  holds the check against the model that every command calls): string labels map through the
  model's own ``label2id`` when it is not generic (``LABEL_0``...); ``--label-names`` that disagree
  with it are an error showing both maps (``label_names_for``). Integer labels are used as they
  are (``one_based_labels``: minus one), except that a dataset whose ``ClassLabel`` names are a
  permutation of the model's names is re-numbered by name; ``-1`` and empty cells are unlabeled.
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
                 ".json": ("json", {}), ".parquet": ("parquet", {})}
TEXT_FORMATS = (".csv", ".tsv", ".jsonl", ".json")  # checked line by line before loading (guard.check_data_file)


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

    #: Set by ``load_examples``: whether a label column was read (None: not known, e.g. a list of
    #: texts) and the table's columns; read by ``labels.check_gold_labels``.
    has_label_column: bool | None = None
    columns: list[str] | None = None
    label_names: list[str] | None = None

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


#: Datasets of the hub's old un-namespaced era whose first path part was the dataset and the second
#: its config (``glue/sst2``): for these ``name/config[:split]`` keeps its old meaning. Any other
#: ``owner/name`` is a repository id, as the hub spells ids today (``stanfordnlp/sst2``).
LEGACY_CONFIG_DATASETS = frozenset({"glue", "super_glue", "tweet_eval", "xnli", "paws", "paws-x", "xglue",
                                    "amazon_reviews_multi", "financial_phrasebank", "emotion", "indic_glue"})


#: Addresses people paste for a hub dataset: what follows is its id (``owner/name``).
HUB_PREFIXES = ("https://huggingface.co/datasets/", "http://huggingface.co/datasets/", "huggingface.co/datasets/",
                "hf://datasets/")


def parse_spec(spec: str, config: str | None = None, split: str | None = None) -> tuple[str, str | None, str | None]:
    """A dataset spec -> ``(path, config, split)`` for ``datasets.load_dataset(path, config, split=split)``.

    The grammar (docs/datasets.md), with ``:`` separating the parts (or ``^``, as TextAttack's
    ``--dataset-from-huggingface glue^sst2^validation`` spells them):

    - ``name`` / ``name:split`` / ``name:config:split`` (``imdb:test``, ``nyu-mll/glue:sst2:validation``);
    - ``name`` is a hub repository id as the hub spells it (``stanfordnlp/imdb``, ``SetFit/sst2``; the
      address of its page, ``https://huggingface.co/datasets/stanfordnlp/imdb``, or ``hf://datasets/...``
      is read as its id), a legacy id (``imdb``), or a local file or dataset folder (a path that exists);
    - legacy ``dataset/config[:split]`` for the old un-namespaced datasets with configs
      (``LEGACY_CONFIG_DATASETS``: ``glue/sst2:validation`` -> ``("glue", "sst2", "validation")``),
      and ``owner/name/config[:split]``;
    - ``config`` / ``split`` (``--dataset-config`` / ``--dataset-split``): the unambiguous spelling;
      one that disagrees with the spec's own raises ``DataError``;
    - a name that does not exist but reads as a local path (it starts with ``/``, ``./``, ``../`` or
      ``~``, or its first part is a folder here) raises ``DataError`` "no such file or folder"
      instead of asking the hub.

    ``split`` is None when neither the spec nor the argument gives one (the loader picks)."""
    spec = os.fspath(spec).strip()
    if not spec:
        raise DataError("empty dataset spec")
    if os.path.exists(spec):  # a local path, whatever it holds (also one with a ':' in its name)
        return spec, config or None, split or None
    for prefix in HUB_PREFIXES:  # a pasted address of the dataset's page: its id
        if spec.startswith(prefix):
            spec = spec[len(prefix):].rstrip("/")
            break
    parts = spec.split(":")
    if "^" in spec and len(parts) == 1:  # TextAttack's spelling: name^subset^split (name^subset means no split)
        parts = spec.split("^")
        if len(parts) != 3:
            raise DataError(f"dataset spec {spec!r}: TextAttack's name^subset^split needs all three parts here; "
                            "attrtools spells it name:config:split (or name:split)")
    if len(parts) > 3 or any(not p for p in parts):
        raise DataError(f"dataset spec {spec!r}: expected name, name:split or name:config:split "
                        "(e.g. nyu-mll/glue:sst2:validation), or use --dataset-config/--dataset-split")
    path = parts[0]
    own_config = parts[1] if len(parts) == 3 else None
    own_split = parts[-1] if len(parts) >= 2 else None
    if not os.path.exists(path):
        pieces = path.split("/")
        if path.startswith(("/", "./", "../", "~", ".\\")) or "\\" in path or \
                (len(pieces) > 1 and os.path.isdir(pieces[0])):  # reads as a local path: never a hub lookup
            raise DataError(f"no such file or folder: {path} (a local path; hub ids read owner/name)")
        legacy = len(pieces) == 2 and pieces[0] in LEGACY_CONFIG_DATASETS
        if legacy or len(pieces) == 3:  # glue/sst2 or owner/name/config
            if own_config is not None:
                raise DataError(f"dataset spec {spec!r} names a config twice ({pieces[-1]!r} and {own_config!r})")
            path, own_config = "/".join(pieces[:-1]), pieces[-1]
        elif len(pieces) > 3 or any(not p for p in pieces):
            raise DataError(f"dataset spec {spec!r}: {path!r} is neither a local path nor a hub id (owner/name)")
    for what, own, given in (("config", own_config, config), ("split", own_split, split)):
        if own is not None and given and own != given:
            raise DataError(f"dataset spec {spec!r} names the {what} {own!r} but --dataset-{what} is {given!r}")
    return path, (config or own_config or None), (split or own_split or None)


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


def load_table(spec: str, config: str | None = None, split: str | None = None, no_header: bool = False,
               column_names=None):
    """A ``datasets.Dataset`` for a local file (``path[:split]``), a local dataset folder (parquet or
    arrow files, ``folder[:split]``) or a hub name (``parse_spec``), loaded without ``datasets``'
    own progress bars (``datasets_bars_off``). ``no_header``: a csv/tsv file whose first line is
    data; its columns are named ``"1"``, ``"2"``, ... (1-based, as ``cut -f`` and ``awk`` count), or
    ``column_names`` (a list or a comma-separated string, one name per field; implies ``no_header``)."""
    if isinstance(column_names, str):
        column_names = [name.strip() for name in column_names.split(",")]
    with datasets_bars_off():
        return _load_table(spec, config, split, no_header or bool(column_names), column_names or None)


DATASET_FOLDER_FILES = (".parquet", ".arrow")


def saved_to_disk(path: str) -> bool:
    """Whether ``path`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
    (read with ``datasets.load_from_disk``)."""
    return os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(os.path.join(path, "dataset_dict.json"))


def dataset_folder(path: str) -> bool:
    """Whether ``path`` is a folder ``datasets`` can load as one dataset: it holds parquet or arrow
    files (at any depth; split names come from file names such as ``validation-00000.parquet``), or
    was written by ``save_to_disk``."""
    if not os.path.isdir(path):
        return False
    if saved_to_disk(path):
        return True
    for _root, _dirs, files in os.walk(path):
        if any(name.lower().endswith(DATASET_FOLDER_FILES) for name in files):
            return True
    return False


def check_local_file(spec: str) -> str | None:
    """The local file ``spec`` names (``path[:split]`` with a .csv/.tsv/.jsonl/.json name), checked
    to exist, be a file and not be empty (``DataError`` otherwise), before anything is loaded; None
    for a hub name or a dataset folder (``dataset_folder``)."""
    local = spec.partition(":")[0] if not os.path.exists(spec) else spec
    if os.path.isdir(local):
        if dataset_folder(local):
            return None
        raise DataError(f"{local} is a folder: give one .csv/.tsv/.jsonl file (a folder's files are not merged) or a "
                        "dataset folder of parquet files")
    if os.path.splitext(local)[1].lower() not in LOCAL_FORMATS:
        return None
    if not os.path.exists(local):
        raise DataError(f"dataset file not found: {local}")
    if os.path.getsize(local) == 0:
        raise DataError(f"dataset file is empty: {local}")
    return local


def numbered_columns(path: str, delimiter: str = ",") -> list[str]:
    """``["1", "2", ...]``: the names of a headerless csv/tsv file's columns (1-based), one per field
    of its first line."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        first = next(reader, [])
    return [str(i) for i in range(1, len(first) + 1)]


def _load_table(spec: str, config=None, split=None, no_header=False, column_names=None):
    import datasets

    local = check_local_file(spec)
    if local is not None:
        ext = os.path.splitext(local)[1].lower()
        from .guard import InputFileError, check_data_file

        if no_header and ext not in (".csv", ".tsv"):
            raise DataError(f"--no-header/--column-names apply to .csv/.tsv files, not {local}")
        if config or split:
            raise DataError(f"--dataset-config/--dataset-split apply to hub datasets and dataset folders; {local} is "
                            "one file (one split)")
        try:
            if ext in TEXT_FORMATS:
                check_data_file(local, ext, header=not no_header)  # encoding, JSON lines, header-only tables
        except InputFileError as err:
            raise DataError(str(err)) from None
        builder, kwargs = LOCAL_FORMATS[ext]
        if no_header:
            numbered = numbered_columns(local, kwargs.get("delimiter", ","))
            if column_names is not None and (len(column_names) != len(numbered) or len(set(column_names)) !=
                                             len(column_names) or not all(column_names)):
                raise DataError(f"--column-names gives {len(column_names)} names {column_names} for the "
                                f"{len(numbered)} fields of the first line of {local} (one distinct name per field)")
            kwargs = {**kwargs, "header": None, "column_names": list(column_names or numbered)}
        try:
            return datasets.load_dataset(builder, data_files={"data": os.path.abspath(local)}, split="data",
                                         **kwargs)
        except Exception as err:  # datasets raises many types for malformed files
            raise DataError(f"cannot read {local} as {ext[1:]}: {type(err).__name__}: {err}") from None
    if no_header:
        raise DataError(f"--no-header/--column-names apply to local .csv/.tsv files, not {spec!r}")
    path, config, split = parse_spec(spec, config, split)
    if os.path.isdir(path):
        return _load_folder(path, config, split)
    try:
        return datasets.load_dataset(path, config, split=split or "validation")
    except Exception as err:
        raise DataError(f"cannot load dataset {spec!r} as load_dataset({path!r}, {config!r}, "
                        f"split={split or 'validation'!r}) (hub id or local file/folder): {err}") from None


def _load_folder(path: str, config, split):
    """A local dataset folder through ``datasets.load_dataset(path)``: the split asked for, else
    its only split, else ``validation``; anything else is a one-line error listing its splits."""
    import datasets

    try:
        if saved_to_disk(path):
            loaded = datasets.load_from_disk(path)
            if split is not None and isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DataError(f"no split {split!r} in {path}; its splits are {list(loaded)}")
                return loaded[split]
            if not isinstance(loaded, datasets.DatasetDict):
                return loaded
        else:
            loaded = datasets.load_dataset(path, config, split=split)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"cannot load the dataset folder {path} (split {split!r}): {err}") from None
    if split is not None:
        return loaded
    splits = list(loaded)
    if len(splits) == 1:
        return loaded[splits[0]]
    if "validation" in splits:
        return loaded["validation"]
    raise DataError(f"dataset folder {path} has the splits {splits}: name one ({path}:{splits[0]} or --dataset-split)")


def header_hint(columns) -> str:
    """``"; the header ... looks like data ..."`` when the column names read like a data row (a
    number, or a long text), else ``""``: the hint at ``--no-header``."""
    from .labels import looks_like_label

    def data_like(name) -> bool:
        name = str(name)
        return looks_like_label(name) or len(name) > 40 or len(name.split()) > 4

    if columns and any(data_like(c) for c in columns):
        shown = ", ".join(repr(str(c)[:30]) for c in columns[:3])
        return (f"; the header line ({shown}) looks like a data row: if the file has no header, pass --no-header "
                "and give columns by number (1 = the first column)")
    return ""


def _pick(columns, given, guesses, role, required, numbered=False):
    if given is not None:
        given = str(given)
        if given not in columns:
            if numbered:
                raise DataError(f"{role} column {given!r} not found: with --no-header the columns are numbered "
                                f"1..{len(columns)} (1 = the first)")
            raise DataError(f"{role} column {given!r} not found; columns are {sorted(columns)}{header_hint(columns)}")
        return given
    for guess in guesses:
        if guess in columns:
            return guess
    if required:
        how = " (a column number: the file was read with --no-header)" if numbered else ""
        raise DataError(f"cannot guess the {role} column among {sorted(columns)}: pass --{role}-column ({role}_column= in Python){how}"
                        f"{'' if numbered else header_hint(columns)}")
    return None


def load_examples(spec: str, text_column: str | None = None, pair_column: str | None = None,
                  label_column: str | None = None, limit: int | None = None,
                  label_names: list[str] | None = None, model_config=None, *, dataset_config: str | None = None,
                  dataset_split: str | None = None, no_header: bool = False,
                  one_based_labels: bool = False, infer_label_names: bool = False,
                  column_names=None) -> ExampleList:
    """Examples from a dataset spec, rows without content left out (``ExampleList.skipped``).

    ``spec``: a hub id, a local csv/tsv/jsonl file or a local dataset folder (grammar: ``parse_spec``;
    ``dataset_config`` / ``dataset_split`` are its unambiguous spelling). ``no_header``: a csv/tsv
    file without a header line; columns are then given by number, 1-based (``text_column=2`` or
    ``"2"``), or by the names ``column_names`` gives them (``"label,title,description"``; implies
    ``no_header``). Each label cell goes through ``labels.parse_label`` (the one label rule): strings map
    through ``label_names_for(label_names, model_config)`` (the model's own non-generic
    ``label2id``, or ``label_names``: a list or a comma-separated string, index = class id), else the
    dataset's ClassLabel names; integers are class ids (``one_based_labels``: counted from 1),
    re-numbered by name when the dataset's ClassLabel names are a permutation of the model's;
    ``-1`` and empty cells mean "unlabeled". ``infer_label_names`` (fine-tuning a new head): string
    labels with no names given define the classes, in sorted order (recorded as ``label_names``).
    The result records ``has_label_column``, ``columns`` and ``label_names`` for
    ``labels.check_gold_labels``. ``model_config``: the model (or its config) whose labels these are."""
    table = load_table(spec, dataset_config, dataset_split, no_header, column_names)
    return examples_from_table(table, spec, text_column, pair_column, label_column, limit, label_names, model_config,
                               one_based_labels=one_based_labels, infer_label_names=infer_label_names,
                               numbered=no_header and not column_names, no_header=no_header or bool(column_names))


def examples_from_table(table, spec: str, text_column: str | None = None, pair_column: str | None = None,
                        label_column: str | None = None, limit: int | None = None,
                        label_names: list[str] | None = None, model_config=None, keep: bool = True, *,
                        one_based_labels: bool = False, infer_label_names: bool = False, numbered: bool = False,
                        no_header: bool = False) -> ExampleList:
    """``load_examples`` on a loaded ``datasets.Dataset`` (``spec`` names it in messages): the same
    column guessing and label rule. ``keep=False``: every row becomes an example (no ``keep_content``;
    ``attrtools.inputs`` keeps one result per row of a user's DataFrame or dataset). ``numbered``: columns
    are named "1", "2", ... (a file read with ``no_header``)."""
    from .labels import LabelError, parse_label, swapped_columns_hint

    label_names = label_names_for(label_names, model_config)
    if len(table) == 0:
        raise DataError(f"dataset {spec!r} has no rows")
    columns = list(table.column_names)
    text = _pick(columns, text_column, TEXT_GUESSES, "text", True, numbered)
    pair = _pick(columns, pair_column, PAIR_GUESSES, "pair", False, numbered) if pair_column is not None or \
        any(c in columns for c in PAIR_GUESSES) else None
    label = _pick(columns, label_column, LABEL_GUESSES, "label", False, numbered)
    given = {"text": text_column, "pair": pair_column, "label": label_column}
    roles = [(role, column) for role, column in (("text", text), ("pair", pair), ("label", label)) if column is not None]
    for i, (role, column) in enumerate(roles):
        for other, other_column in roles[i + 1:]:
            if column == other_column:
                guessed = [r for r in (role, other) if given[r] is None]
                fix = (f"name the {guessed[0]} column with --{guessed[0]}-column" if guessed else
                       f"--{role}-column and --{other}-column name the same column")
                raise DataError(f"column {column!r} would be both the {role} and the {other} column: {fix} "
                                f"(columns: {columns})")
    names = label_names
    remap = None
    if label is not None:
        dataset_names = getattr(table.features[label], "names", None)
        if names is None:
            names = dataset_names
        if names is None and infer_label_names:
            from .labels import looks_like_label

            cells = [v.strip() for v in table[label] if isinstance(v, str) and v.strip()]
            if cells and not any(looks_like_label(v) for v in cells):
                names = sorted(set(cells))
        elif dataset_names and list(dataset_names) != list(names) and sorted(dataset_names) == sorted(names):
            remap = {i: list(names).index(name) for i, name in enumerate(dataset_names)}
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    examples = []
    for index, row in enumerate(table):
        raw = row[label] if label is not None else None
        try:
            value = parse_label(raw, names, one_based_labels)
        except LabelError as err:
            head = table.select(range(min(20, len(table))))
            hint = swapped_columns_hint(head[text], head[label], text, label, names)
            if hint:  # the likely mistake first, not "no label names given"
                raise LabelError(f"row {index + 1}: label {raw!r} is text, not a label{hint}") from None
            if no_header and index == 0:
                raise LabelError(f"row 1: {err}; with --no-header the first line is data: if it is a header, drop "
                                 "--no-header") from None
            raise LabelError(f"row {index + 1}: {err}") from None
        if value is not None and remap is not None and not isinstance(raw, str):
            value = remap.get(value, value)
        pair_text = (str(row[pair]) if row[pair] is not None else "") if pair else None
        examples.append(Example(str(row[text]) if row[text] is not None else "", pair_text,
                                value, str(row.get("id", index)) if "id" in columns else str(index)))
    kept = keep_content(examples) if keep else ExampleList(examples, rows=list(range(len(examples))))
    kept.has_label_column = label is not None
    kept.columns = columns
    kept.label_names = list(names) if names else None
    return kept
