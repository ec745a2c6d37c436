"""Words perturbed by an attack, from an alignment of the two word sequences (not positions).

TextAttack counts a result's perturbed words position by position (``AttackedText.all_words_diff``:
word ``i`` of the original against word ``i`` of the perturbed text), so an *inserted* word shifts
every later word: the trigger attack's 2-word insertion in the middle of an 8-word sentence reads
as 7 words perturbed, one at the end as 0, and its ``[[word]]`` highlights mark unchanged words.
Here the two word sequences are aligned (``attrtools.words.diff_words``: ``difflib.SequenceMatcher``)
and insertions, deletions and substitutions are counted as such:

- ``num_words_perturbed``: inserted + deleted + substituted words (0 for skipped and failed
  attacks, as in TextAttack);
- ``num_words_inserted`` / ``num_words_deleted`` / ``num_words_substituted``: the breakdown;
- ``num_words_perturbed_positional``: TextAttack's positional count, kept beside it and labelled so;
- ``original_text`` / ``perturbed_text``: ``[[word]]`` marks on the words the alignment changed
  (deleted or substituted words in the original, inserted or substituted ones in the perturbed
  text) instead of TextAttack's positional marks.

Words are TextAttack's own (``words_from_text``), the words its recipes edit.
"""
from __future__ import annotations

from ..words import diff_words, mark_changed
from .textattack_compat import load_textattack

DIFF_COLUMNS = ["num_words_inserted", "num_words_deleted", "num_words_substituted", "num_words_perturbed_positional"]
SPLIT_TOKEN = "<SPLIT>"  # TextAttack's CSVLogger joins the inputs of a pair with it


def strip_marks(text: str) -> str:
    """``text`` without TextAttack's ``[[`` / ``]]`` highlight marks."""
    return str(text).replace("[[", "").replace("]]", "")


def _words(text: str) -> list[str]:
    return load_textattack().shared.utils.words_from_text(text)


def _remark(text: str) -> tuple[str, list[str]]:
    plain = strip_marks(text)
    return plain, _words(plain)


def realign_row(row: dict, original_words=None, perturbed_words=None, positional: int | None = None) -> dict:
    """Set ``row``'s word counts and highlights from the alignment (module docstring), in place;
    returns it. ``original_words`` / ``perturbed_words``: the inputs' words (TextAttack's
    ``AttackedText.words``), default the words of the row's (unmarked) texts; ``positional``:
    TextAttack's count (default: the row's current ``num_words_perturbed``)."""
    if positional is None:
        positional = int(row.get("num_words_perturbed") or 0)
    original_text, shown_original = _remark(row["original_text"])
    perturbed_text, shown_perturbed = _remark(row["perturbed_text"])
    attacked = row["result_type"] not in ("Skipped", "Failed")
    d = diff_words(original_words if original_words is not None else shown_original,
                   perturbed_words if perturbed_words is not None else shown_perturbed)
    row.update(num_words_perturbed=d.perturbed if attacked else 0,
               num_words_inserted=d.inserted if attacked else 0,
               num_words_deleted=d.deleted if attacked else 0,
               num_words_substituted=d.substituted if attacked else 0,
               num_words_perturbed_positional=positional if attacked else 0)
    if original_text != perturbed_text:
        shown = diff_words(shown_original, shown_perturbed)
        row["original_text"] = mark_changed(original_text, shown_original, shown.changed_original)
        row["perturbed_text"] = mark_changed(perturbed_text, shown_perturbed, shown.changed_perturbed)
    else:
        row["original_text"], row["perturbed_text"] = original_text, perturbed_text
    return row
