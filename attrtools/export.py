"""What users take away from attributions: tables (the rows of ``token_scores.csv``, a pandas
``DataFrame``), one padded tensor with a mask, and the formats of peer tools (ferret's
``Explanation``, bertviz's ``(attention, tokens)``). ``Attribution`` / ``Attributions`` methods
delegate here; ``attrtools attribute`` writes its ``token_scores.csv`` from ``token_rows``.

Each export carries the numbers unchanged (no rescaling, no normalisation): what a peer tool does
with negative AttAttr values or shares above 1 is that tool's business, and is said in each docstring.
"""
from __future__ import annotations

from typing import NamedTuple

from .errors import MissingDependencyError, UsageError

#: the columns of ``token_scores.csv`` and of ``to_dataframe(level="token")``
TOKEN_COLUMNS = ("example", "example_id", "position", "token", "score", "special")
#: ``to_dataframe(level="word")``
WORD_COLUMNS = ("example", "example_id", "position", "word", "score", "special")


def token_rows(attributions):
    """One tuple per token of every attribution, in ``TOKEN_COLUMNS`` order: ``(example index,
    example id or "", position, token, score (float, ``token_scores()``), special (0/1))``.
    A generator: a streamed run never holds every result (the one rule for the token table)."""
    for index, a in enumerate(attributions):
        special = a.special_tokens_mask or [0] * a.n_tokens
        for position, (token, score) in enumerate(zip(a.tokens, a.token_scores().tolist())):
            yield (index, a.example_id if a.example_id is not None else "", position, token, float(score),
                   int(special[position]))


def word_rows(attributions):
    """As ``token_rows`` at word level, from ``Attribution.word_scores()`` (refused in one line where
    this attrtools has no ``word_scores``)."""
    for index, a in enumerate(attributions):
        word_scores = getattr(a, "word_scores", None)
        if word_scores is None:
            raise UsageError("level='word' needs Attribution.word_scores(), which this attrtools does not have; "
                             "use level='token'")
        from .report.plots import unpack_words

        words, scores, special = unpack_words(word_scores())
        for position, (word, score, sp) in enumerate(zip(words, scores, special)):
            yield (index, a.example_id if a.example_id is not None else "", position, word, float(score), int(sp))


def to_dataframe(attributions, level: str = "token"):
    """A pandas ``DataFrame`` with one row per token (``level="token"``: the columns of the CLI's
    ``token_scores.csv``, ``TOKEN_COLUMNS``) or per word (``level="word"``, ``WORD_COLUMNS``).
    Scores are float64, ``special`` is bool. Raises ``MissingDependencyError`` without pandas,
    ``UsageError`` for another level."""
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - pandas comes with datasets
        raise MissingDependencyError(f"to_dataframe needs pandas ({err}): pip install pandas") from None
    if level == "token":
        columns, rows = TOKEN_COLUMNS, list(token_rows(attributions))
    elif level == "word":
        columns, rows = WORD_COLUMNS, list(word_rows(attributions))
    else:
        raise UsageError(f"unknown level {level!r}: use 'token' or 'word'")
    frame = pd.DataFrame(rows, columns=list(columns))
    frame = frame.astype({"example": "int64", "position": "int64", "score": "float64", "special": "bool"})
    frame["example_id"] = frame["example_id"].astype(str)
    return frame


class Stacked(NamedTuple):
    """``values``: ``(B, n_max)`` (token scores) or ``(B, *lead, n_max, n_max)`` (payloads), padded
    with ``pad``; ``mask``: ``(B, n_max)`` bool, True on real tokens; ``lengths``: ``(B,)`` int64."""

    values: object
    mask: object
    lengths: object


def stack(attributions, pad: float = 0.0, view: str = "tokens") -> Stacked:
    """One padded tensor of a list of attributions of different lengths, with a token mask.

    ``view="tokens"``: ``token_scores()`` of each, ``(B, n_max)``; ``view="scores"``: the payloads
    themselves (all of one kind and one leading shape: ``(B, n_max)``, ``(B, L, n_max, n_max)`` or
    ``(B, L, H, n_max, n_max)``), padded on every token axis. ``pad``: the fill value (``float("nan")``
    makes a padded cell impossible to mistake for a score). Raises ``UsageError`` for an empty list,
    an unknown view or mixed payloads."""
    import torch

    items = list(attributions)
    if not items:
        raise UsageError("nothing to stack: the list of attributions is empty")
    if view == "tokens":
        tensors = [a.token_scores().detach().float().cpu() for a in items]
    elif view == "scores":
        kinds = {a.kind for a in items}
        leads = {tuple(a.scores.shape[:-1 if a.kind == "tokens" else -2]) for a in items}
        if len(kinds) > 1 or len(leads) > 1:
            raise UsageError(f"cannot stack payloads of different kinds or model shapes ({sorted(kinds)}, "
                             f"{sorted(leads)}): stack view='tokens' instead")
        tensors = [a.scores.detach().float().cpu() for a in items]
    else:
        raise UsageError(f"unknown view {view!r}: use 'tokens' or 'scores'")
    lengths = torch.tensor([a.n_tokens for a in items], dtype=torch.int64)
    n_max = int(lengths.max())
    square = view == "scores" and items[0].kind != "tokens"
    out_shape = (len(items),) + tuple(tensors[0].shape[:-2 if square else -1]) + ((n_max, n_max) if square else (n_max,))
    values = torch.full(out_shape, float(pad), dtype=torch.float32)
    for b, t in enumerate(tensors):
        n = t.shape[-1]
        if square:
            values[b, ..., :n, :n] = t
        else:
            values[b, ..., :n] = t
    mask = torch.arange(n_max)[None, :] < lengths[:, None]
    return Stacked(values, mask, lengths)


def to_ferret(attribution, explainer: str | None = None):
    """ferret's ``Explanation(text, tokens, scores, explainer, target)`` (ferret-xai,
    ``ferret/explainers/explanation.py``): ``tokens`` and ``scores`` are this attribution's tokens
    (special tokens included, as ferret's own explainers give them) and ``token_scores()`` as a
    float numpy array of the same length; ``target`` the explained class (the predicted one when
    the attribution explains no class); ``explainer`` the method name unless given. ferret's
    ``Explanation`` has one text: a pair gives it ``text``, while the tokens carry both segments. Raises ``MissingDependencyError`` where ferret does not import
    (``pip install --no-deps ferret-xai`` next to transformers 5, see docs/export.md)."""
    try:
        from ferret.explainers.explanation import Explanation
    except Exception as err:  # ferret's package import pulls many optional modules
        raise MissingDependencyError(f"to_ferret needs ferret-xai, which does not import here ({type(err).__name__}: "
                                     f"{err}); see docs/export.md for the install") from None
    import numpy as np

    target = attribution.target if attribution.target is not None else attribution.predicted
    return Explanation(text=attribution.text or "", tokens=list(attribution.tokens),
                       scores=np.asarray(attribution.token_scores().detach().float().cpu().tolist(), dtype=np.float64),
                       explainer=explainer or attribution.method, target=int(target))


def to_bertviz(attribution):
    """``(attention, tokens)`` as bertviz's ``head_view(attention, tokens)`` and
    ``model_view(attention, tokens)`` take them: ``attention`` a tuple of one float tensor per layer,
    ``(1, H, n, n)`` (batch of one; rows query, columns key, as transformers' attentions), and the
    ``n`` tokens. ``matrix`` payloads give every head; ``layer_matrix`` ones one "head" per layer
    (``H = 1``). Values are the attribution's own (AttAttr can be negative and is not a
    distribution; bertviz draws line opacity from the values). A ``tokens`` payload has no matrix:
    ``UsageError``."""
    if attribution.kind == "tokens":
        raise UsageError(f"{attribution.method} gives one score per token ('tokens'): bertviz needs token × token "
                         "maps (use a matrix method such as attattr, raw, rollout, globenc)")
    scores = attribution.scores.detach().float().cpu()
    if attribution.kind == "layer_matrix":
        scores = scores.unsqueeze(1)
    attention = tuple(scores[layer].unsqueeze(0).contiguous() for layer in range(scores.shape[0]))
    return attention, list(attribution.tokens)
