"""Adversarial trigger patterns from self-attention attribution (Hao et al., AAAI 2021, §6).

Protocol of the official code (``run_adver_connection.py`` + ``run_adver_evaluate.py``; docs/methods.md, "Adversarial triggers"):

1. Take correctly classified **training** examples (official: the first 500), compute AttAttr per
   layer w.r.t. the predicted class probability (official m = 64 steps; here ``steps``, default 20).
2. Pick the single head over all layers whose (n, n) matrix holds the largest entry.
3. In that matrix take the top-1 and top-2 entries ``(i, j)`` with values ``v1 >= v2``.
4. Rank patterns by ``v1 + v2``; drop patterns with ``v1 + v2 < pattern_threshold`` (0.02).
5. Trigger positions: the top-1 pair, plus the top-2 pair when ``v2 / v1 >= top2_ratio`` (0.2);
   [CLS]/[SEP] (any special token) removed.
6. Relative position of a token in its segment: ``r = k / len_seg`` with ``k`` its 1-based index in
   the segment (official: ``pos / (seg_pos - 1)`` for segment A and
   ``(pos - seg_pos) / (len - 2 - seg_pos)`` for segment B, the same quantity).
7. Insertion into a new example: slot ``round((len_seg + n_inserted) * r)`` (1-based) in the
   enlarged segment, bumped by one on a collision; the original words fill the free slots in order.

Deliberate deviations (documented):

- Word pieces are merged back into whole words (the official code inserts word pieces): a
  trigger is the set of *words* holding the selected tokens, ``r`` is computed over words
  (1-based word index / number of words in the segment). Inserted text stays readable and
  TextAttack, which edits words, can apply it.
- Patterns are also grouped by their (predicted = gold) class and deduplicated by trigger words
  (keeping the best-ranked) when the top-k triggers are evaluated; ``triggers.json`` keeps all.

The pure parts (``pattern_from_matrix``, ``select_positions``, ``insertion_slots``,
``insert_words``) work on plain tensors/lists and are tested without TextAttack.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from ..errors import InputDataError
from ..ranges import TOLERANCE

PATTERN_THRESHOLD = 0.02
TOP2_RATIO = 0.2


# ------------------------------------------------------------------------------------ data types
@dataclass
class TriggerWord:
    word: str
    segment: int          # 0 = text, 1 = text_pair
    relative: float       # r in (0, 1]: 1-based word index / number of words in its segment


@dataclass
class Pattern:
    """One extracted pattern (one training example's strongest attribution interaction)."""

    example_id: str | None
    target: int                      # predicted (= gold) class of the source example
    label: int | None
    layer: int
    head: int
    top1: tuple[int, int]
    top2: tuple[int, int]
    values: tuple[float, float]      # v1 >= v2 (``max_combined_attr`` in the official code)
    tokens: list[str]
    seg_pos: int                     # index of the first [SEP] (official ``seg_pos``), -1 if none
    positions: list[int] = field(default_factory=list)   # selected token positions (specials removed)
    words: list[TriggerWord] = field(default_factory=list)
    text: str | None = None
    text_pair: str | None = None

    @property
    def score(self) -> float:
        return float(self.values[0] + self.values[1])

    @property
    def trigger(self) -> tuple[str, ...]:
        return tuple(w.word for w in self.words)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = self.score
        d["trigger"] = " ".join(self.trigger)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Pattern":
        d = {k: v for k, v in d.items() if k not in ("score", "trigger")}
        d["words"] = [TriggerWord(**w) for w in d.get("words", [])]
        d["top1"], d["top2"], d["values"] = tuple(d["top1"]), tuple(d["top2"]), tuple(d["values"])
        return cls(**d)


# ------------------------------------------------------------------------------------ extraction (pure)
def pattern_from_matrix(scores, tokens, special_tokens_mask=None, *, target: int = 0, label=None,
                        example_id=None, top2_ratio: float = TOP2_RATIO, use_all: bool = False,
                        text=None, text_pair=None) -> Pattern:
    """Pattern of one example from its AttAttr payload ``scores`` of shape ``(L, H, n, n)``.

    The head (over all layers) with the largest entry is chosen; its top-1 and top-2 entries give
    the token pairs; positions = top-1 pair (+ top-2 pair if ``v2/v1 >= top2_ratio`` or
    ``use_all``), special tokens removed, sorted, unique."""
    import torch

    scores = torch.as_tensor(scores, dtype=torch.float32)
    if scores.dim() != 4 or scores.shape[-1] != scores.shape[-2] or scores.shape[-1] != len(tokens):
        raise ValueError(f"expected AttAttr scores (L, H, n, n) with n = {len(tokens)}, got {tuple(scores.shape)}")
    L, H, n, _ = scores.shape
    flat = int(scores.reshape(-1).argmax())
    layer, head = flat // (H * n * n), (flat // (n * n)) % H
    matrix = scores[layer, head].reshape(-1)
    values, index = matrix.topk(min(2, matrix.numel()))
    pairs = [(int(k) // n, int(k) % n) for k in index]
    if len(pairs) == 1:
        pairs.append(pairs[0])
        values = torch.cat([values, values.new_zeros(1)])
    v1, v2 = float(values[0]), float(values[1])
    special = set(i for i, s in enumerate(special_tokens_mask or []) if s)
    seps = [i for i, t in enumerate(tokens) if i in special and i > 0]
    pattern = Pattern(example_id=example_id, target=int(target), label=label, layer=int(layer), head=int(head),
                      top1=pairs[0], top2=pairs[1], values=(v1, v2), tokens=list(tokens),
                      seg_pos=seps[0] if seps else -1, text=text, text_pair=text_pair)
    pattern.positions = select_positions(pattern, special, top2_ratio=top2_ratio, use_all=use_all)
    return pattern


def select_positions(pattern: Pattern, special_positions, top2_ratio: float = TOP2_RATIO,
                     use_all: bool = False) -> list[int]:
    """Top-1 pair positions, plus the top-2 pair when ``v2 / v1 >= top2_ratio`` (official ``--if_all``
    forces it), minus special-token positions."""
    positions = set(pattern.top1)
    v1, v2 = pattern.values
    if use_all or (v1 > 0 and v2 / v1 >= top2_ratio):
        positions |= set(pattern.top2)
    return sorted(p for p in positions if p not in set(special_positions))


def rank_patterns(patterns: list[Pattern], pattern_threshold: float = PATTERN_THRESHOLD) -> list[Pattern]:
    """Patterns with ``v1 + v2 >= pattern_threshold`` and at least one trigger word, best first."""
    kept = [p for p in patterns if p.score >= pattern_threshold and p.positions]
    return sorted(kept, key=lambda p: -p.score)


def group_by_class(patterns: list[Pattern]) -> dict[int, list[Pattern]]:
    groups: dict[int, list[Pattern]] = {}
    for p in patterns:
        groups.setdefault(p.target, []).append(p)
    return groups


def unique_triggers(patterns: list[Pattern]) -> list[Pattern]:
    """First (best-ranked) pattern of each distinct trigger word sequence."""
    seen, out = set(), []
    for p in patterns:
        key = tuple((w.word.lower(), w.segment) for w in p.words)
        if key and key not in seen:
            seen.add(key)
            out.append(p)
    return out


# ------------------------------------------------------------------------------------ words
def words_for_positions(positions, word_ids, segments, word_texts) -> list[TriggerWord]:
    """Merge token positions into whole words.

    ``word_ids[t]``: word index of token t within its segment (None for special tokens);
    ``segments[t]``: segment of token t; ``word_texts[(segment, word_id)]``: the word's text.
    ``r = (word_id + 1) / number of words in the segment``."""
    counts: dict[int, int] = {}
    for w, s in zip(word_ids, segments):
        if w is not None:
            counts[s] = max(counts.get(s, 0), w + 1)
    out, seen = [], set()
    for t in sorted(positions):
        w, s = word_ids[t], segments[t]
        if w is None or (s, w) in seen:
            continue
        seen.add((s, w))
        out.append(TriggerWord(word_texts[(s, w)], int(s), (w + 1) / counts[s]))
    return out


def word_alignment(tokenizer, text: str, text_pair: str | None, max_length: int | None = None):
    """``(word_ids, segments, word_texts)`` of ``(text, text_pair)`` truncated at ``max_length`` (pass
    the engine's), for callers holding only a tokenizer. The tools do not call it: they read
    ``Encoded.word_ids`` / ``segments`` / ``words`` from the engine's one tokenization."""
    from ..encoding import word_alignment as align

    enc = tokenizer(text, text_pair, truncation=max_length is not None, max_length=max_length,
                    return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
                    return_special_tokens_mask=True, return_token_type_ids=True)
    return align(enc, tokenizer, text, text_pair)


# ------------------------------------------------------------------------------------ insertion (pure)
def insertion_slots(n_words: int, relatives: list[float]) -> list[int]:
    """0-based slots of the inserted words in the enlarged segment of ``n_words + k`` words.

    Official rule: 1-based slot ``round((len_seg + k) * r)`` (halves round up), +1 on collision; at
    the end of the segment the nearest free slot before it is taken instead."""
    total = n_words + len(relatives)
    taken: list[int] = []
    for r in relatives:
        slot = min(max(int(math.floor(total * r + 0.5)), 1), total) - 1
        free_after = [s for s in range(slot, total) if s not in taken]
        slot = free_after[0] if free_after else max(s for s in range(slot) if s not in taken)
        taken.append(slot)
    return taken


def _boundary_of_slots(n_chunks: int, relatives: list[float]) -> list[int]:
    """For each inserted word, the boundary it goes to: the number of original chunks before it in
    the enlarged sequence (0 = before the first chunk, ``n_chunks`` = after the last)."""
    slots = insertion_slots(n_chunks, relatives)
    taken = set(slots)
    return [sum(1 for s in range(slot) if s not in taken) for slot in slots]


def insert_at_word_boundaries(text: str, words: list[str], triggers: list[tuple[str, float]]) -> list[str]:
    """Insert trigger words into ``text`` at word boundaries only; returns, per word of ``words``
    (a word segmentation of ``text`` such as TextAttack's, in order), the string that replaces it.

    A boundary is a gap between whitespace-separated chunks of ``text`` (or its start or end), so a
    trigger never lands inside "it's", "it 's"'s "'s", "well-made" or between a word and the
    punctuation glued to it. The official rule (``insertion_slots``) picks the boundary over the
    chunks. An inserted word is realised as a prefix of the word that opens the next chunk or a
    suffix of the word that closes the previous chunk; a boundary with neither (e.g. between
    ``good,`` and ``"great"``) moves to the nearest one that has one (later first)."""
    import re

    from ..words import locate

    spans = locate(text, words)  # the words' characters in the original text (attrtools.words)
    chunks = [m.span() for m in re.finditer(r"\S+", text)]
    opens = {c: k for c, (a, _) in enumerate(chunks) for k, (s, _) in enumerate(spans) if s == a}
    closes = {c: k for c, (_, b) in enumerate(chunks) for k, (_, e) in enumerate(spans) if e == b}

    def realise(boundary):
        if boundary < len(chunks) and boundary in opens:
            return "prefix", opens[boundary]
        if boundary > 0 and boundary - 1 in closes:
            return "suffix", closes[boundary - 1]
        return None

    prefix: dict[int, list[str]] = {}
    suffix: dict[int, list[str]] = {}
    for (word, _), boundary in zip(triggers, _boundary_of_slots(len(chunks), [r for _, r in triggers])):
        order = [boundary] + [b for d in range(1, len(chunks) + 1) for b in (boundary + d, boundary - d)
                              if 0 <= b <= len(chunks)]
        place = next((p for p in map(realise, order) if p is not None), None)
        if place is None:
            continue
        side, k = place
        (prefix if side == "prefix" else suffix).setdefault(k, []).append(word)
    return [" ".join(prefix.get(k, []) + [w] + suffix.get(k, [])) for k, w in enumerate(words)]


def insert_words(words: list[str], triggers: list[tuple[str, float]]) -> list[str]:
    """``words`` with each ``(word, r)`` of ``triggers`` inserted at its relative position."""
    slots = insertion_slots(len(words), [r for _, r in triggers])
    total = len(words) + len(triggers)
    out: list[str | None] = [None] * total
    for (word, _), slot in zip(triggers, slots):
        out[slot] = word
    rest = iter(words)
    return [w if w is not None else next(rest) for w in out]


def apply_pattern(text: str, text_pair: str | None, pattern: Pattern) -> tuple[str, str | None]:
    """Insert ``pattern``'s trigger words into a (whitespace-tokenized) example, segment by segment."""
    segments = [text, text_pair]
    out = []
    for s, seg in enumerate(segments):
        if seg is None:
            out.append(None)
            continue
        trig = [(w.word, w.relative) for w in pattern.words if w.segment == s]
        out.append(" ".join(insert_words(seg.split(), trig)) if trig else seg)
    return out[0], out[1]


# ------------------------------------------------------------------------------------ files
def save_triggers(path: str, patterns: list[Pattern], config: dict) -> str:
    from ..io import write_json

    groups = group_by_class(patterns)
    return write_json(path, {
        "format": "attrtools.triggers/1",
        "config": config,
        "patterns": [p.to_dict() for p in patterns],
        "by_class": {str(c): [patterns.index(p) for p in ps] for c, ps in sorted(groups.items())},
    })


def load_triggers(path: str) -> tuple[list[Pattern], dict]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("format") != "attrtools.triggers/1":
        raise InputDataError(f"{path} is not an attrtools triggers.json file")
    return [Pattern.from_dict(d) for d in data["patterns"]], data.get("config", {})


# ------------------------------------------------------------------------------------ model-facing
def predict(model, tokenizer, examples, batch_size: int = 32, max_length: int | None = None):
    """Predicted class of each example (one clean forward, length-sorted batches). A multi-label
    model is refused (``heads.require_single_label``): "correctly classified" needs one class."""
    from ..engine import Engine
    from ..heads import require_single_label

    require_single_label(model, "trigger extraction (correctly classified examples, one class each)")

    engine = Engine(model, tokenizer, batch_size=batch_size, max_length=max_length, progress=False)
    return [int(p) for p in engine.logits(examples).argmax(-1).tolist()] if examples else []


def extract_triggers(model, tokenizer, examples, num_examples: int = 500, steps: int | str = "auto", cache=None,
                     pattern_threshold: float = PATTERN_THRESHOLD, top2_ratio: float = TOP2_RATIO,
                     use_all: bool = False, batch_size: int = 8, progress: bool | None = None,
                     max_length: int | None = None, tolerance: float = TOLERANCE) -> tuple[list[Pattern], dict]:
    """Patterns from the first ``num_examples`` correctly classified ``examples`` (ranked, filtered).

    Args: ``examples`` labelled training examples (scanned in order until ``num_examples`` are
    correctly classified); ``steps`` AttAttr integration steps m (official 64) or "auto" to
    ``tolerance`` (relative, default 1e-3); ``cache`` the
    attribution cache; ``pattern_threshold`` / ``top2_ratio`` / ``use_all`` the selection rules
    of the module docstring; ``batch_size`` examples per batch; ``max_length`` tokens (None: the
    engine's truncation rule, ``models.max_input_length``; the official code used 128).

    Returns ``(patterns, stats)``: patterns ranked by v1 + v2 (AttAttr values: probability times
    attention), each with its trigger words and their relative positions; stats count the
    examples scanned and used. AttAttr comes from the ``Engine`` (one tokenization shared with
    the word alignment), target = predicted class. Raises ``InputDataError`` without labelled
    examples. Source: Hao et al. 2021 (AAAI), §6."""
    from ..engine import Engine

    from ..data import keep_content

    examples = keep_content(examples, tokenizer)  # rows without content are skipped, with their reason in stats
    labelled = [e for e in examples if e.label is not None]
    if not labelled:
        raise InputDataError("trigger extraction needs labelled examples (correctly classified ones are used)")
    # Scan in order, a chunk at a time, until enough are correct: the official code takes the
    # first correctly classified training examples, so a large training set need not be predicted whole.
    from ..progress import bar

    correct, scanned, chunk = [], 0, max(64, 2 * num_examples)
    scan = bar(len(labelled), "finding correctly classified examples", unit="ex", enabled=progress)
    while len(correct) < num_examples and scanned < len(labelled):
        part = labelled[scanned: scanned + chunk]
        preds = predict(model, tokenizer, part, max_length=max_length)
        correct += [e for e, p in zip(part, preds) if p == e.label]
        scanned += len(part)
        scan.update(len(part))
        scan.set_postfix_str(f"{min(len(correct), num_examples)}/{num_examples} correct")
    scan.close()
    correct = correct[:num_examples]
    engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, max_length=max_length, progress=progress)
    encoded = engine.encode_all(correct)  # one tokenization: the attributions and the word alignment share it
    attributions = engine.attribute(encoded, "attattr", target="pred", steps=steps, tolerance=tolerance)
    patterns = []
    for enc, att in zip(encoded, attributions):
        e = enc.example
        p = pattern_from_matrix(att.scores, att.tokens, att.special_tokens_mask, target=att.predicted,
                                label=e.label, example_id=e.id, top2_ratio=top2_ratio, use_all=use_all,
                                text=e.text, text_pair=e.text_pair)
        p.words = words_for_positions(p.positions, enc.word_ids, enc.segments, enc.words)
        patterns.append(p)
    ranked = rank_patterns(patterns, pattern_threshold)
    stats = {"scanned": scanned, "correct_used": len(correct), "patterns": len(patterns),
             "kept": len(ranked), "engine": dict(engine.stats), "skipped_rows": list(examples.skipped)}
    return ranked, stats


def per_class_accuracy(model, tokenizer, examples, patterns: list[Pattern], top_k: int = 3,
                       label_names: list[str] | None = None, max_length: int | None = None) -> list[dict]:
    """The paper's evaluation: per gold class, accuracy before and after inserting each of the
    top-k distinct triggers (fixed insertion, no search). One row per (trigger, class).

    Every class of the model is listed; a class with no example has ``n = 0`` and empty
    accuracy cells. Rows without content are left out (``data.keep_content``). Class names: the
    given ``label_names``, else the model's own non-generic ``id2label``, else the index."""
    from ..data import keep_content, model_label_names

    examples = [e for e in keep_content(examples, tokenizer) if e.label is not None]
    count = int(getattr(model.config, "num_labels", 0) or 0)
    classes = sorted(set(range(count)) | {e.label for e in examples})
    label_names = label_names or model_label_names(model.config)
    base = predict(model, tokenizer, examples, max_length=max_length)

    def acc(preds, c):
        idx = [i for i, e in enumerate(examples) if e.label == c]
        return (sum(preds[i] == c for i in idx) / len(idx) if idx else None), len(idx)

    def name(c):
        return label_names[c] if label_names and c < len(label_names) else str(c)

    def cell(value):
        return "" if value is None else round(value, 4)

    rows = []
    baseline = {c: acc(base, c) for c in classes}
    for c in classes:
        rows.append({"trigger_rank": 0, "trigger": "", "source_class": "", "score": "", "gold_class": name(c),
                     "n": baseline[c][1], "accuracy": cell(baseline[c][0]),
                     "accuracy_drop": "" if baseline[c][0] is None else 0.0})
    from ..types import Example

    for rank, p in enumerate(unique_triggers(patterns)[:top_k], start=1):
        inserted = [Example(*apply_pattern(e.text, e.text_pair, p), label=e.label, id=e.id) for e in examples]
        preds = predict(model, tokenizer, inserted, max_length=max_length)
        for c in classes:
            a, n = acc(preds, c)
            rows.append({"trigger_rank": rank, "trigger": " ".join(p.trigger), "source_class": name(p.target),
                         "score": round(p.score, 6), "gold_class": name(c), "n": n, "accuracy": cell(a),
                         "accuracy_drop": "" if a is None else round(baseline[c][0] - a, 4)})
    return rows
