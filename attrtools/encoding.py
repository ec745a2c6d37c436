"""Encoding: one example -> the engine's tokenization (``Encoded``), under the one truncation rule.

``Encoder(tokenizer, max_length).encode(example)`` tokenizes with the word alignment of
``attrtools.words`` (the original text's words, docs/words.md); an input longer than ``max_length``
(``models.max_input_length``: the model's position table and the tokenizer's limit, or the user's
override) is truncated, counted, noted in the run report (``attrtools.runreport``) and reported once
per example in one ``TruncationWarning`` (``report_truncation``). A ``Tokenized`` example (the user's
own token ids) is taken as it is (``attrtools.inputs.tokenized_fields``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from . import runreport
from .errors import InputDataError
from .inputs import Tokenized, tokenized_fields
from .notices import warn
from .types import Example
from .words import encoded_alignment


class TruncationWarning(UserWarning):
    """An input longer than the model's limit was truncated (see ``models.max_input_length``)."""


@dataclass
class Encoded:
    """One tokenized example, as the engine tokenizes it (the only tokenization any tool uses).

    ``word_ids[t]``: 0-based index of the word holding token ``t`` within its segment (None for
    special tokens); ``segments[t]``: segment of token ``t`` (0 = ``text``, 1 = ``text_pair``);
    ``words[(segment, word_id)]``: the word's text. Fast tokenizers give these from their character
    offsets into the original text (``words.py``, one rule); slow ones by merging ``##`` word pieces.
    """

    example: Example
    input_ids: list[int]
    token_type_ids: list[int] | None
    special_tokens_mask: list[int]
    tokens: list[str]
    original_length: int | None = None  # tokens before truncation (None: not truncated)
    word_ids: list[int | None] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    words: dict = field(default_factory=dict)
    offsets: list = field(default_factory=list)  # per token [segment, start, end] or None (words.token_offsets)

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def truncated(self) -> bool:
        return self.original_length is not None


def word_alignment(enc, tokenizer, text: str, text_pair: str | None):
    """``(word_ids, segments, words)`` of one tokenizer output (see ``Encoded``): the one rule of
    ``words.encoded_alignment`` (words of the original text, docs/words.md)."""
    return encoded_alignment(enc, tokenizer, text, text_pair)[:3]


class Encoder:
    """Tokenizes examples for one engine and keeps its truncation notes.

    ``stats``: the engine's counters (``stats["truncated"]`` counts inputs truncated, each once);
    ``truncated``: ``(text, text_pair) -> (original, kept)`` token counts."""

    def __init__(self, tokenizer, max_length: int | None, stats: dict):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stats = stats
        self.truncated: dict[tuple, tuple[int, int]] = {}
        self._unreported: list[tuple[str, int, int]] = []

    def encode(self, example) -> Encoded:
        """Tokenize one example under the truncation rule (``max_length``), with its word alignment.
        Raises ``InputDataError`` for an example that tokenizes to nothing."""
        example = Example.coerce(example)
        if isinstance(example, Tokenized):
            fields = tokenized_fields(example, self.tokenizer, self.max_length)
            word_ids, segments, words = word_alignment(fields, self.tokenizer, example.text, None)
            return Encoded(example, fields["input_ids"], fields["token_type_ids"], fields["special_tokens_mask"],
                           self.tokenizer.convert_ids_to_tokens(fields["input_ids"]), None,
                           word_ids=list(word_ids), segments=list(segments), words=words)
        kwargs = dict(return_special_tokens_mask=True, return_token_type_ids=True,
                      return_offsets_mapping=bool(getattr(self.tokenizer, "is_fast", False)))
        enc = self.tokenizer(example.text, example.text_pair, truncation=False, verbose=False, **kwargs)
        original = None
        if self.max_length is not None and len(enc["input_ids"]) > self.max_length:
            original = len(enc["input_ids"])
            enc = self.tokenizer(example.text, example.text_pair, truncation=True, max_length=self.max_length,
                                 **kwargs)
        ids = list(enc["input_ids"])
        if not ids:
            raise InputDataError(f"example {example.id!r} tokenizes to nothing")
        if original is not None:
            self._note_truncated(example, original, len(ids))
        word_ids, segments, words, offsets = encoded_alignment(enc, self.tokenizer, example.text, example.text_pair)
        return Encoded(example, ids, list(enc.get("token_type_ids") or [0] * len(ids)),
                       list(enc["special_tokens_mask"]), self.tokenizer.convert_ids_to_tokens(ids), original,
                       word_ids=list(word_ids), segments=list(segments), words=words, offsets=offsets)

    def encode_all(self, items: Iterable) -> list[Encoded]:
        """``encode`` each item; ``Encoded`` items are kept as they are."""
        return [e if isinstance(e, Encoded) else self.encode(e) for e in items]

    def _note_truncated(self, example: Example, original: int, kept: int):
        key = (example.text, example.text_pair)
        if key in self.truncated:
            return
        self.truncated[key] = (original, kept)
        self.stats["truncated"] += 1
        runreport.note_truncated(example.text, example.text_pair, original, kept)
        label = example.id if example.id is not None else (example.text[:40] + ("..." if len(example.text) > 40 else ""))
        self._unreported.append((str(label), original, kept))

    def report_truncation(self):
        """One ``TruncationWarning`` for the examples truncated since the last report (each example
        is reported once per engine): how many, and the original and kept lengths."""
        if not self._unreported:
            return
        shown = ", ".join(f"{label!r}: {original} -> {kept}" for label, original, kept in self._unreported[:5])
        more = f" and {len(self._unreported) - 5} more" if len(self._unreported) > 5 else ""
        warn(f"{len(self._unreported)} input(s) longer than the model's limit of {self.max_length} tokens "
             f"were truncated (tokens: original -> kept): {shown}{more}. Use --max-length / "
             f"max_length to change the limit (at most the model's position table).", TruncationWarning)
        self._unreported = []
