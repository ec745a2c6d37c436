"""Explanations computed elsewhere, evaluated with the same faithfulness metrics (docs/export.md).

A supplied explanation is one per evaluated example, in the examples' order, each with ``tokens``
and ``scores`` of equal length: an ``attrtools.Attribution``, a ferret ``Explanation``, any object
with ``tokens`` and ``scores`` attributes, a ``{"tokens": [...], "scores": [...]}`` mapping, or a
line of a JSONL file of such mappings (``load_explanations``). ``align`` is the one rule that puts
them on the evaluated tokens: the tokens must be this tokenizer's tokens of the example, either all
of them (special tokens included) or its content tokens only (specials get no score: they are never
ranked). Anything else (words, another tokenizer, another text) is refused in one line naming the
example and the first token that differs: a ranking of other tokens would give silently wrong numbers.
"""
from __future__ import annotations

import json
import math
import os

from ..errors import InputDataError


def coerce(obj, index: int) -> tuple[list[str], list[float]]:
    """``(tokens, scores)`` of one supplied explanation (see the module docstring); scores are floats
    (``Attribution``: ``token_scores()``). Raises ``InputDataError`` for another shape, lengths that
    differ, or a score that is not a finite number."""
    if hasattr(obj, "token_scores") and hasattr(obj, "tokens"):
        tokens, scores = list(obj.tokens), obj.token_scores().float().tolist()
    elif isinstance(obj, dict) and "tokens" in obj and "scores" in obj:
        tokens, scores = obj["tokens"], obj["scores"]
    elif hasattr(obj, "tokens") and hasattr(obj, "scores"):
        tokens, scores = obj.tokens, obj.scores
    else:
        raise InputDataError(f"explanation {index}: give tokens and scores (an Attribution, a ferret Explanation, "
                             f"or a mapping with 'tokens' and 'scores'), not a {type(obj).__name__}")
    tokens = [str(t) for t in tokens]
    try:
        scores = [float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores)]
    except (TypeError, ValueError):
        raise InputDataError(f"explanation {index}: scores must be numbers") from None
    if len(tokens) != len(scores):
        raise InputDataError(f"explanation {index}: {len(tokens)} tokens but {len(scores)} scores")
    bad = next((j for j, s in enumerate(scores) if not math.isfinite(s)), None)
    if bad is not None:
        raise InputDataError(f"explanation {index}: score {bad} ({tokens[bad]!r}) is {scores[bad]}, not a finite number")
    return tokens, scores


def align(tokens: list[str], scores: list[float], expected: list[str], special: list[int], index: int) -> list[float]:
    """Scores on the ``expected`` tokens of example ``index`` (``special``: its special-tokens mask):
    the same tokens give the scores as they are; the content tokens only give them at the content
    positions (0.0 at specials, which are never ranked). Otherwise ``InputDataError``."""
    if tokens == expected:
        return list(scores)
    content = [j for j, s in enumerate(special) if not s]
    if tokens == [expected[j] for j in content]:
        out = [0.0] * len(expected)
        for j, s in zip(content, scores):
            out[j] = s
        return out
    first = next((j for j, (a, b) in enumerate(zip(tokens, [expected[j] for j in content])) if a != b),
                 min(len(tokens), len(content)))
    got = tokens[first] if first < len(tokens) else "(end)"
    want = expected[content[first]] if first < len(content) else "(end)"
    raise InputDataError(f"explanation {index}: its tokens are not this tokenizer's tokens of the example "
                         f"(token {first}: {got!r}, expected {want!r}; {len(tokens)} tokens given, {len(expected)} "
                         f"with special tokens or {len(content)} without); supply scores per model token")


def load_explanations(path: str | os.PathLike) -> list[dict]:
    """The explanations of a JSONL file: one ``{"tokens": [...], "scores": [...]}`` object a line (other
    keys ignored; blank lines skipped). JSON only, never pickle. ``InputDataError`` for a missing or
    malformed file, naming the line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputDataError(f"explanations file {path!r} does not exist")
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputDataError(f"{path}, line {number}: not JSON ({err.msg})") from None
            if not isinstance(item, dict):
                raise InputDataError(f"{path}, line {number}: expected an object with 'tokens' and 'scores'")
            out.append(item)
    if not out:
        raise InputDataError(f"explanations file {path!r} holds no explanation")
    return out


def supplied_scores(explanations, encoded, tokenizer) -> tuple[list[list[float]], list[list[int]]]:
    """``(token score lists, special masks)`` of supplied ``explanations`` on the ``encoded`` examples
    (one each, in order; a count that differs is refused)."""
    explanations = list(explanations)
    if len(explanations) != len(encoded):
        raise InputDataError(f"{len(explanations)} explanation(s) supplied for {len(encoded)} evaluated example(s): "
                             "give one per example, in order")
    lists, specials = [], []
    for i, (obj, e) in enumerate(zip(explanations, encoded)):
        tokens, scores = coerce(obj, i)
        expected = tokenizer.convert_ids_to_tokens(list(e.input_ids))
        special = list(e.special_tokens_mask)
        lists.append(align(tokens, scores, expected, special, i))
        specials.append(special)
    return lists, specials
