"""Refusals on load: what attrtools checks about a model folder, its tokenizer, the device and the
input before computing anything, so a broken or hostile folder ends in one sentence naming it
instead of a traceback or, worse, a run on the wrong vocabulary.

- ``check_model_folder(path)``: a local folder must hold ``config.json`` (valid JSON) and tokenizer
  files; a folder whose ``config.json`` names custom code (``auto_map``) for a ``model_type``
  transformers does not know is refused (``RemoteCodeError``): attrtools always loads with
  ``trust_remote_code=False`` and never runs a folder's Python.
- ``check_tokenizer(tokenizer, config, name)``: a tokenizer far smaller than the model's
  vocabulary (transformers builds a 5-token one when the tokenizer files are missing) is refused.
- ``check_unknown_share(tokenizer, id_lists, specials, name)``: input that tokenizes mostly to the
  unknown token is refused (the tokenizer does not fit the model or the text).
- ``check_device(device)``: a device string torch cannot parse, or a GPU this machine lacks.
- ``explain_load_error(err, name)``: the one-line reason for errors transformers raises while
  loading (pickle weights refused by ``weights_only``, remote code), or None.

Errors derive from ``attrtools.errors`` types (and so from ``ValueError``): the command line prints
them as one line (a bad device exits 2, the others 1).
"""
from __future__ import annotations

import json
import os

from .errors import InputDataError, ParameterError, UnsupportedModelError

# Files from which transformers can build a real tokenizer (any one of them is enough).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "sentencepiece.model", "bpe.codes", "vocab.model", "source.spm")
UNKNOWN_SHARE_LIMIT = 0.5  # refuse input where more than half the (non-special) tokens are unknown
UNKNOWN_MIN_TOKENS = 8  # ... once there are at least this many tokens to judge by


class ModelFolderError(UnsupportedModelError):
    """A model folder (or hub id) that cannot be used as it is; the message names it."""


class RemoteCodeError(ModelFolderError):
    """A model that needs its own Python code (``auto_map``), which attrtools will not run."""


class DeviceError(ParameterError):
    """A ``--device`` that torch cannot parse or this machine does not have."""


class InputFileError(InputDataError):
    """A local data file that cannot be read as its extension says (the message gives line and byte)."""


def check_data_file(path: str, ext: str, header: bool = True) -> None:
    """Read a local .csv/.tsv/.jsonl file once, streaming: it must be UTF-8 (a BOM is allowed), a
    .jsonl file must hold one JSON object per non-blank line, and a .csv/.tsv file must have rows
    after its header (``header=False``: a file without a header line needs one row). Raises
    ``InputFileError`` naming the line and byte offset."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    rows = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = decoder.decode(raw)
            except UnicodeDecodeError as err:
                raise InputFileError(
                    f"{path} is not UTF-8 text: byte 0x{raw[err.start]:02x} at line {number}, byte offset "
                    f"{offset + err.start} (re-save the file as UTF-8)") from None
            if number == 1:
                line = line.lstrip("\ufeff")
            offset += len(raw)
            if not line.strip():
                continue
            rows += 1
            if ext == ".jsonl":
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError) as err:
                    raise InputFileError(f"{path} line {number} (byte offset {offset - len(raw)}) is not JSON: "
                                         f"{str(err)[:80]}") from None
                if not isinstance(row, dict):
                    raise InputFileError(f"{path} line {number} is JSON but not an object ({{\"text\": ...}})")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputFileError(f"{path} is not UTF-8 text: it ends inside a character (byte offset {offset})") from None
    if ext in (".csv", ".tsv") and header and rows < 2:
        raise InputFileError(f"{path} has a header line but no rows")
    if rows == 0:
        raise InputFileError(f"{path} has no rows (only blank lines)")


class VocabularyError(InputDataError):
    """Input that the tokenizer mostly cannot represent (mostly the unknown token)."""


def missing_local_folder(name_or_path) -> str | None:
    """Why ``name_or_path`` is a local model folder that does not exist (None when it exists or reads
    as a hub id). The one rule for "local path or hub id": a name that does not exist is a local
    path when it starts with ``/``, ``./``, ``../``, ``~`` or a drive letter, holds a backslash or
    more than one ``/`` (hub ids are ``name`` or ``owner/name``), or when its first part is a folder
    here (``models/minilm-sst3`` with a ``models`` folder). The reason names the closest folders
    beside it. Checked before any hub lookup (``check_model_folder``, ``models.load_config``)."""
    path = os.fspath(name_or_path)
    if not path or os.path.exists(os.path.expanduser(path)):
        return None
    parts = path.replace("\\", "/").split("/")
    local = (path.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in path or len(parts) > 2
             or (len(path) > 1 and path[1] == ":") or (len(parts) == 2 and os.path.isdir(parts[0])))
    if not local:
        return None
    import difflib

    parent = os.path.dirname(os.path.expanduser(path).rstrip("/\\")) or "."
    near = []
    if os.path.isdir(parent):
        folders = [e for e in os.listdir(parent) if os.path.isdir(os.path.join(parent, e))]
        near = difflib.get_close_matches(os.path.basename(path.rstrip("/\\")), folders, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(os.path.join(parent, n) for n in near)}?" if near else ""
    return (f"cannot load model: no such folder: {path} (a local path, so the hub is not asked; hub ids read "
            f"owner/name){hint}")


def check_model_folder(name_or_path: str) -> None:
    """Refuse a local model folder that does not exist (``missing_local_folder``: "no such folder",
    before any hub lookup), one without ``config.json`` or tokenizer files, or one that needs
    custom code. Hub ids (not an existing path) are left to transformers."""
    path = os.fspath(name_or_path)
    missing = missing_local_folder(path)
    if missing is not None:
        raise ModelFolderError(missing)
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ModelFolderError(f"{path} is a file, not a model folder (give the folder holding config.json)")
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ModelFolderError(f"{path} has no config.json: not a Hugging Face model folder")
    try:
        with open(config_path, "rb") as f:
            config = json.loads(f.read())
    except (ValueError, RecursionError) as err:
        raise ModelFolderError(f"{config_path} is not valid JSON ({str(err)[:80]})") from None
    if not isinstance(config, dict):
        raise ModelFolderError(f"{config_path} is not a JSON object")
    check_remote_code(config, path)
    if not any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES):
        raise ModelFolderError(
            f"{path} has no tokenizer files (none of tokenizer.json, vocab.txt, vocab.json, *.model): without "
            "them transformers builds a near-empty tokenizer and every word becomes unknown; copy the "
            "tokenizer the model was trained with into the folder")


def check_remote_code(config: dict, name: str) -> None:
    """Refuse a config whose model class exists only as the folder's own Python (``auto_map``)."""
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    known = isinstance(model_type, str) and model_type in CONFIG_MAPPING
    if config.get("auto_map") and not known:
        raise RemoteCodeError(
            f"{name} needs custom code (config.json auto_map, model_type {str(model_type)[:40]!r}) that attrtools "
            "will not run: it loads with trust_remote_code=False; use a model transformers implements")


def check_tokenizer(tokenizer, config, name: str) -> None:
    """Refuse a tokenizer whose vocabulary is far below ``config.vocab_size`` (under half)."""
    vocab_size = getattr(config, "vocab_size", None)
    size = len(tokenizer)
    if isinstance(vocab_size, int) and vocab_size > 0 and size < vocab_size / 2:
        raise ModelFolderError(
            f"{name}: the tokenizer has {size} tokens but the model's vocabulary has {vocab_size}; its tokenizer "
            "files are missing or do not belong to this model")


def unknown_share(tokenizer, id_lists, special_masks=None) -> tuple[float, int]:
    """(share of unknown tokens among the non-special tokens, number of non-special tokens)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return 0.0, 0
    total = unknown = 0
    for row, ids in enumerate(id_lists):
        specials = special_masks[row] if special_masks is not None else [0] * len(ids)
        for token, special in zip(ids, specials):
            if not special:
                total += 1
                unknown += token == unk
    return (unknown / total if total else 0.0), total


def check_unknown_share(tokenizer, id_lists, special_masks=None, name: str | None = None) -> None:
    """Refuse input of which more than half the tokens are the unknown token."""
    share, total = unknown_share(tokenizer, id_lists, special_masks)
    if total >= UNKNOWN_MIN_TOKENS and share > UNKNOWN_SHARE_LIMIT:
        name = name or getattr(tokenizer, "name_or_path", None) or "the tokenizer"
        raise VocabularyError(
            f"{share:.0%} of the {total} input tokens are {tokenizer.unk_token!r} under {name}: the tokenizer does "
            "not fit this text or this model (missing or wrong tokenizer files?)")


def check_device(device) -> None:
    """Refuse a device string torch cannot parse, CUDA on a machine without it, or a missing index."""
    import torch

    if device is None or device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"--device {device!r} is not a device (use cpu, cuda, cuda:N or mps)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"--device {device}: MPS is not available on this machine")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {device}: attrtools runs on cpu, cuda or mps")


def explain_load_error(err: BaseException, name: str) -> str | None:
    """The one-line reason for an error transformers raised while loading ``name``, if known."""
    import pickle

    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text or "weights_only" in text:
        return (f"{name}: the weights file is a pickle holding more than tensors, which attrtools will not "
                "unpickle (weights_only=True); use a model saved as safetensors")
    if "trust_remote_code" in text or "custom code" in text:
        return f"{name} needs custom code that attrtools will not run (it loads with trust_remote_code=False)"
    if isinstance(err, OSError) and isinstance(name, str) and not os.path.exists(os.path.expanduser(name)):
        first = text.strip().splitlines()[0][:160] if text.strip() else type(err).__name__
        return (f"{name}: no such folder here, and the hub gave no model by that id (hub ids read owner/name; "
                f"offline, only local folders load): {first}")
    return None
