"""Words: the one alignment of tokens to the words of the ORIGINAL text, and word diffs.

What a word is (one rule, ``split_words``; docs/words.md). Words are found on the text the user
gave, never on the tokenizer's normalised form, so a lower-casing, accent-stripping WordPiece
("naïve" -> "naive"), a byte-level BPE (RoBERTa/GPT-2, ``Ġ`` = a space) and a SentencePiece
tokenizer (XLM-R, ``▁`` = a word start) give the same words for the same text:

- a *word* is a run of letters, combining marks, digits and underscores, joined by inner
  apostrophes (``'`` or ``’``) or hyphens: ``it's``, ``don’t``, ``well-made``, ``naïve``, ``café``,
  ``3-2``;
- every other run of non-space characters (punctuation, symbols, emoji) is a word of its own:
  ``good,`` is ``good`` + ``,``; ``"great"`` is ``"`` + ``great`` + ``"``; ``...`` is one word;
- whitespace separates words and belongs to none.

Every non-space character thus lies in exactly one word, so word scores summed over a text
equal its token scores summed (special tokens excluded).

Tokens to words (``align``): each non-special token carries its character span in its own
segment (the fast tokenizer's ``offset_mapping`` and ``sequence_ids``: ``token_offsets``); it
belongs to the word its span overlaps most (the first on a tie); a token whose span covers only
whitespace or nothing (a lone ``▁`` or ``Ġ``) belongs to the word that starts right after it.
Special tokens ([CLS], <s>, </s>, ...) belong to no word. Words that no token reaches (cut off by
truncation) are left out. Callers with their own word list (TextAttack's words) pass its spans
(``locate``) instead of ``split_words``'.

Slow (Python) tokenizers have no offsets: the word-level views refuse in one line
(``WordAlignmentError``); the engine keeps a documented approximation for them
(``merge_wordpieces``) only for the trigger words of the adversarial tool.

Word diffs (``diff_words``): two word sequences aligned by ``difflib.SequenceMatcher`` (the longest
matching blocks, Ratcliff/Obershelp); inserted, deleted and substituted words are counted as such,
so two words inserted in the middle of a sentence are 2 words perturbed, not every later one.
"""
from __future__ import annotations

import bisect
import difflib
from dataclasses import dataclass, field

from .errors import AttrtoolsError

AGGREGATIONS = ("sum", "max", "mean")

# A word: letters/marks/digits/underscore, with inner apostrophes or hyphens; else a run of other
# non-space characters. ``regex`` (a transformers dependency) knows Unicode categories (\p{M}: the
# combining accents of decomposed text, which ``re``'s \w does not match).
_WORD = r"[\p{L}\p{M}\p{N}_]+(?:['’\-][\p{L}\p{M}\p{N}_]+)*"
_PATTERN = None


class WordAlignmentError(AttrtoolsError, ValueError):
    """Tokens cannot be placed in the words of the original text (no offsets, unknown word)."""


def _pattern():
    global _PATTERN
    if _PATTERN is None:
        import regex

        _PATTERN = regex.compile(rf"{_WORD}|[^\s\p{{L}}\p{{M}}\p{{N}}_]+")
    return _PATTERN


def split_words(text: str) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` character spans of the words of ``text`` (module docstring), in order."""
    return [m.span() for m in _pattern().finditer(text or "")]


def locate(text: str, words) -> list[tuple[int, int]]:
    """Character spans of ``words`` (substrings of ``text``, in order, e.g. TextAttack's words).

    Raises ``WordAlignmentError`` naming the first word not found after the previous one."""
    spans, pos = [], 0
    for word in words:
        start = text.find(word, pos)
        if start < 0 or not word:
            raise WordAlignmentError(f"word {word!r} not found in the text after character {pos}")
        spans.append((start, start + len(word)))
        pos = start + len(word)
    return spans


@dataclass(frozen=True)
class Word:
    """One word of an example: its ``segment`` (0 = text, 1 = text_pair), its index among that
    segment's words, its character span ``[start, end)`` in that segment's original text, the
    text itself, and the positions of its tokens."""

    segment: int
    index: int
    start: int
    end: int
    text: str
    tokens: tuple = ()
    span: int = 0  # its index in the segment's word spans (``index`` skips words no token reaches)


@dataclass(frozen=True)
class WordScore:
    """A word and its score (``Attribution.word_scores``)."""

    word: str
    score: float
    segment: int
    index: int
    start: int
    end: int
    tokens: tuple = ()


# ------------------------------------------------------------------------------------ offsets
def token_offsets(enc, tokenizer=None, batch_index: int = 0) -> list:
    """``[[segment, start, end] or None, ...]`` per token of one fast-tokenizer output ``enc``
    (a ``BatchEncoding`` made with ``return_offsets_mapping=True`` and
    ``return_special_tokens_mask=True``): the token's character span in its own segment's text;
    None for special tokens. Raises ``WordAlignmentError`` for a slow tokenizer's output."""
    try:
        seq_ids = enc.sequence_ids(batch_index)
        offsets = enc["offset_mapping"]
    except (ValueError, AttributeError, KeyError):
        name = type(tokenizer).__name__ if tokenizer is not None else "this tokenizer"
        raise WordAlignmentError(f"word alignment needs a fast tokenizer (character offsets); {name} has none: "
                                 "load it with use_fast=True") from None
    if offsets and isinstance(offsets[0][0], (list, tuple)):
        offsets = offsets[batch_index]
    special = enc.get("special_tokens_mask") or [0] * len(offsets)
    if special and isinstance(special[0], (list, tuple)):
        special = special[batch_index]
    return [None if (m or s is None) else [int(s), int(a), int(b)]
            for (a, b), s, m in zip(offsets, seq_ids, special)]


def align(offsets, texts, spans=None) -> tuple[list, list[Word]]:
    """Tokens to words of the original texts.

    Args: ``offsets`` per token ``[segment, start, end]`` or None (``token_offsets``); ``texts``
    the original ``(text, text_pair)``; ``spans`` optional per-segment word spans (default
    ``split_words`` of each text). Returns ``(word_of_token, words)``: for each token the position
    of its word in ``words`` (None for special tokens), and the words reached by at least one
    token, in (segment, index) order, numbered densely per segment. Rule: module docstring."""
    texts = list(texts)
    if spans is None:
        spans = [split_words(t) if t is not None else [] for t in texts]
    starts = [[a for a, _ in seg] for seg in spans]
    raw: list = []
    for off in offsets:
        if off is None:
            raw.append(None)
            continue
        s, a, b = off
        if s >= len(spans) or texts[s] is None:
            raise WordAlignmentError(f"a token of segment {s} has no text to align to")
        raw.append((s, _word_of_span(spans[s], starts[s], texts[s], a, b)))
    used = sorted({key for key in raw if key is not None and key[1] is not None})
    position = {key: k for k, key in enumerate(used)}
    members: dict = {}
    word_of_token = []
    for t, key in enumerate(raw):
        k = position.get(key) if key is not None else None
        word_of_token.append(k)
        if k is not None:
            members.setdefault(k, []).append(t)
    words, per_segment = [], {}
    for k, (s, w) in enumerate(used):
        a, b = spans[s][w]
        local = per_segment.get(s, 0)
        per_segment[s] = local + 1
        words.append(Word(s, local, a, b, texts[s][a:b], tuple(members[k]), w))
    return word_of_token, words


def _word_of_span(spans, starts, text: str, a: int, b: int):
    """Index of the word a token span ``[a, b)`` belongs to (most overlap, the first on a tie;
    whitespace-only spans: the word starting right after), None when there is none. ``starts``:
    the spans' starts (sorted), for the binary search."""
    best, best_overlap = None, 0
    w = max(bisect.bisect_right(starts, a) - 1, 0)
    while w < len(spans) and spans[w][0] < b:
        s, e = spans[w]
        overlap = min(b, e) - max(a, s)
        if overlap > best_overlap:
            best, best_overlap = w, overlap
        w += 1
    if best is not None or text[a:b].strip():
        return best
    w = bisect.bisect_right(starts, a) - 1
    if a == b and w >= 0 and spans[w][0] <= a < spans[w][1]:  # zero-width, inside a word
        return w
    w = bisect.bisect_left(starts, a)
    if w < len(spans) and not text[b:spans[w][0]].strip():
        return w
    return None


def encoded_alignment(enc, tokenizer, text: str, text_pair: str | None):
    """``(word_ids, segments, words, offsets)`` of one tokenizer output, as ``engine.Encoded`` holds
    them: ``word_ids[t]`` the index of token t's word within its segment (None for special tokens),
    ``segments[t]`` its segment, ``words[(segment, index)]`` the word's original text, and
    ``offsets`` (``token_offsets``; ``[]`` for a slow tokenizer, whose words come from
    ``merge_wordpieces``)."""
    try:
        offsets = token_offsets(enc, tokenizer)
    except WordAlignmentError:
        word_ids, segments, words = merge_wordpieces(tokenizer.convert_ids_to_tokens(enc["input_ids"]),
                                                     enc["special_tokens_mask"], enc.get("token_type_ids"))
        return word_ids, segments, words, []
    seq_ids = enc.sequence_ids()
    word_of_token, words = align(offsets, (text, text_pair))
    segments = [s if s is not None else 0 for s in seq_ids]
    word_ids = [None if k is None else words[k].index for k in word_of_token]
    return word_ids, segments, {(w.segment, w.index): w.text for w in words}, offsets


def merge_wordpieces(tokens, special_mask, token_type_ids=None):
    """Slow-tokenizer approximation (no offsets): ``##`` pieces merged into the word before them;
    the word texts are the tokenizer's (normalised) pieces, not the original text. Used only for
    the adversarial tool's trigger words; the word-level scores refuse slow tokenizers."""
    word_ids, segments, texts = [], [], {}
    segment, count = 0, {}
    for t, tok in enumerate(tokens):
        if special_mask[t]:
            word_ids.append(None)
            segments.append(segment)
            if t > 0 and token_type_ids is None and t < len(tokens) - 1:
                segment = 1
            continue
        if token_type_ids is not None:
            segment = token_type_ids[t]
        if tok.startswith("##") and word_ids and word_ids[-1] is not None:
            w = word_ids[-1]
            texts[(segment, w)] += tok[2:]
        else:
            w = count.get(segment, 0)
            count[segment] = w + 1
            texts[(segment, w)] = tok
        word_ids.append(w)
        segments.append(segment)
    return word_ids, segments, texts


# ------------------------------------------------------------------------------------ scores
def aggregate(values, groups, agg: str = "sum") -> list[float]:
    """One number per group of token positions: ``sum``, ``max`` or ``mean`` of ``values[t]``.

    Raises ``WordAlignmentError`` for an unknown ``agg``."""
    if agg not in AGGREGATIONS:
        raise WordAlignmentError(f"unknown word aggregation {agg!r}; expected one of {', '.join(AGGREGATIONS)}")
    out = []
    for group in groups:
        xs = [float(values[t]) for t in group]
        out.append(sum(xs) if agg == "sum" else max(xs) if agg == "max" else sum(xs) / len(xs))
    return out


def span_scores(token_values, offsets, texts, spans, agg: str = "sum") -> list[list[float | None]]:
    """Per segment, one score per word span of ``spans`` (e.g. TextAttack's words, ``locate``):
    ``token_values`` aggregated over the tokens the alignment gives the word (None for a word no
    token reaches: cut off by truncation). ``offsets`` per token as in ``token_offsets``."""
    _, words = align(offsets, texts, spans=spans)
    scores = aggregate(token_values, [w.tokens for w in words], agg)
    out: list[list[float | None]] = [[None] * len(seg) for seg in spans]
    for w, score in zip(words, scores):
        out[w.segment][w.span] = score
    return out


def attribution_word_scores(attribution, agg: str = "sum") -> list[WordScore]:
    """Word scores of an ``Attribution`` (``Attribution.word_scores``): its ``token_scores()``
    (shape ``(n,)``, in the method's units) aggregated over each word's tokens by ``agg``
    (``sum``: the word's share of the total; ``max``/``mean`` of its tokens' scores).

    Needs ``attribution.token_offsets`` (recorded by the engine for fast tokenizers) and its
    original ``text`` / ``text_pair``; raises ``WordAlignmentError`` in one line otherwise."""
    offsets = getattr(attribution, "token_offsets", None) or []
    if len(offsets) != attribution.n_tokens or attribution.text is None:
        raise WordAlignmentError(
            "this attribution holds no token offsets, so its tokens cannot be aligned to words: it was computed "
            "from token ids (attribute the texts themselves), with a slow tokenizer (use the fast one), or saved "
            "by an attrtools before word alignment (recompute it)")
    if agg not in AGGREGATIONS:
        raise WordAlignmentError(f"unknown word aggregation {agg!r}; expected one of {', '.join(AGGREGATIONS)}")
    _, words = align(offsets, (attribution.text, attribution.text_pair))
    values = attribution.token_scores().detach().float().cpu().tolist()
    scores = aggregate(values, [w.tokens for w in words], agg)
    return [WordScore(w.text, s, w.segment, w.index, w.start, w.end, w.tokens) for w, s in zip(words, scores)]


def token_words(attribution) -> list | None:
    """Per token of an ``Attribution``, the original-text word holding it (None for special tokens);
    None when the attribution holds no token offsets. Labels for views that show tokens (trees)."""
    offsets = getattr(attribution, "token_offsets", None) or []
    if len(offsets) != attribution.n_tokens or attribution.text is None:
        return None
    word_of_token, words = align(offsets, (attribution.text, attribution.text_pair))
    return [None if k is None else words[k].text for k in word_of_token]


# ------------------------------------------------------------------------------------ diffs
@dataclass
class WordDiff:
    """The alignment of an original and a perturbed word sequence (``diff_words``).

    ``inserted`` / ``deleted`` / ``substituted``: word counts by kind (a replaced block of ``a``
    original and ``b`` new words counts ``min(a, b)`` substitutions plus the rest as insertions or
    deletions); ``perturbed`` = their sum; ``changed_original`` / ``changed_perturbed``: indices
    of the words to highlight in each sequence."""

    inserted: int = 0
    deleted: int = 0
    substituted: int = 0
    changed_original: list = field(default_factory=list)
    changed_perturbed: list = field(default_factory=list)

    @property
    def perturbed(self) -> int:
        return self.inserted + self.deleted + self.substituted


def diff_words(original, perturbed) -> WordDiff:
    """Align two word sequences (``difflib.SequenceMatcher``, no junk heuristic) and count the edits."""
    original, perturbed = list(original), list(perturbed)
    out = WordDiff()
    matcher = difflib.SequenceMatcher(None, original, perturbed, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        a, b = i2 - i1, j2 - j1
        out.substituted += min(a, b)
        out.deleted += max(a - b, 0)
        out.inserted += max(b - a, 0)
        out.changed_original += range(i1, i2)
        out.changed_perturbed += range(j1, j2)
    return out


def mark_changed(text: str, words, changed, left: str = "[[", right: str = "]]") -> str:
    """``text`` with the words at the indices ``changed`` (of ``words``, located in ``text`` in
    order) wrapped in ``left``/``right`` (TextAttack's ``[[word]]`` marks by default)."""
    spans = locate(text, words)
    out, pos = [], 0
    for k in sorted(set(changed)):
        a, b = spans[k]
        out += [text[pos:a], left, text[a:b], right]
        pos = b
    return "".join(out + [text[pos:]])


# ------------------------------------------------------------------------------------ files
WORD_TABLE_COLUMNS = ["example", "example_id", "segment", "word_index", "word", "start", "end", "tokens",
                      "sum", "max", "mean"]


def write_word_scores(path: str, attributions) -> tuple[str, int]:
    """``word_scores.csv``: one row per word of every attribution (``WORD_TABLE_COLUMNS``: the
    word, its character span ``[start, end)`` in its segment's original text, its token positions
    separated by spaces, and its tokens' scores aggregated by ``sum``, ``max`` and ``mean``).
    Written atomically. Returns ``(path, n)`` with ``n`` the attributions left out because they
    hold no token offsets (slow tokenizer, old files)."""
    import csv

    from .io import atomic_path

    left_out = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(WORD_TABLE_COLUMNS)
            for index, a in enumerate(attributions):
                try:
                    per_agg = {agg: attribution_word_scores(a, agg) for agg in AGGREGATIONS}
                except WordAlignmentError:
                    left_out += 1
                    continue
                for k, w in enumerate(per_agg["sum"]):
                    writer.writerow([index, a.example_id if a.example_id is not None else "", w.segment, w.index,
                                     w.word, w.start, w.end, " ".join(map(str, w.tokens))]
                                    + [f"{per_agg[agg][k].score:.6g}" for agg in AGGREGATIONS])
    return path, left_out
