"""HTML views of attributions: the token heat-map (any kind), the interactive layer/head view of the
``(n × n)`` maps (``matrix`` and ``layer_matrix`` kinds), a whole view per attribution, and a summary
table for a list. The same fragments serve files (``attribution_page``), reports and Jupyter
(``Attribution._repr_html_``)."""
from __future__ import annotations

import json
import math

from .colors import scale_for
from .format import class_name, fmt_number, truncate
from .page import Report, environment, markup, new_id

def is_signed(attribution) -> bool:
    """Whether the attribution's scores carry a direction: the method's declaration recorded by the
    engine (``params["_signed"]``), else the data (any negative score)."""
    declared = (attribution.params or {}).get("_signed")
    if declared is not None:
        return bool(declared)
    return bool(float(attribution.scores.min()) < 0)


def _segments(attribution) -> list[tuple[str | None, list[int]]]:
    """Token positions per line: one line for a single text, two (A and B) for a pair."""
    n = attribution.n_tokens
    positions = list(range(n))
    if not attribution.text_pair:
        return [(None, positions)]
    seg = attribution.segment_ids or []
    if seg and any(s == 1 for s in seg) and len(seg) == n:
        first = [i for i in positions if seg[i] == 0]
        second = [i for i in positions if seg[i] != 0]
        return [("A", first), ("B", second)]
    special = attribution.special_tokens_mask or [0] * n
    # without segment ids: the first run of content tokens (and the specials around it) is A
    i = 0
    while i < n and special[i]:
        i += 1
    while i < n and not special[i]:
        i += 1
    while i < n and special[i]:
        i += 1
    return [("A", positions[:i]), ("B", positions[i:])]


def token_heatmap(tokens, scores, special_mask=None, signed: bool = True, lines=None, header: str | None = None,
                  show_legend: bool = True, unit: str = "position") -> str:
    """Tokens coloured by their score; ``lines``: ``[(label, [positions])]`` (pairs: two lines).
    Special tokens are drawn dashed and left out of the colour scale (they often dominate).
    ``unit`` names an item's index in its hover text ("position" for tokens, "word" for words)."""
    scores = [float(s) for s in scores]
    special = list(special_mask or [0] * len(tokens))
    content = [s for s, m in zip(scores, special) if not m] or scores
    scale = scale_for(content, signed)
    lines = lines or [(None, list(range(len(tokens))))]
    rendered = []
    for label, positions in lines:
        items = []
        for i in positions:
            s = scores[i]
            items.append({"text": tokens[i], "special": bool(special[i]), "bg": scale.colour(s),
                          "fg": scale.text_colour(s), "title": f"{tokens[i]} ({unit} {i}): {s:.4g}"})
        rendered.append({"label": label, "tokens": items})
    return environment().get_template("heatmap.html.j2").render(
        lines=rendered, scale=scale, header=header, show_legend=show_legend, has_special=any(special),
        item_class="wd" if unit == "word" else "tok")


def _header(attribution) -> str:
    names = getattr(attribution, "label_names", None) or []
    parts = [f"method {attribution.method}"]
    if attribution.target is not None:
        parts.append(f"explains {class_name(attribution.target, names)}")
    probs = attribution.probs or []
    p = probs[attribution.predicted] if 0 <= attribution.predicted < len(probs) else None
    parts.append(f"predicted {class_name(attribution.predicted, names)}" + (f", p = {p:.3f}" if p is not None else ""))
    if attribution.label is not None:
        parts.append(f"gold {class_name(attribution.label, names)}")
    return " · ".join(parts)


def attribution_heatmap(attribution, header: bool = True, show_legend: bool = True) -> str:
    """The token heat-map fragment of one ``Attribution`` (``token_scores()``; pairs on two lines)."""
    return token_heatmap(attribution.tokens, attribution.token_scores().tolist(), attribution.special_tokens_mask,
                         is_signed(attribution), _segments(attribution), _header(attribution) if header else None,
                         show_legend)


def word_heatmap(attribution, agg: str = "sum", header: bool = True, show_legend: bool = True) -> str | None:
    """The word heat-map fragment of one ``Attribution``: ``Attribution.word_scores(agg)``, the words
    of the original text (``attrtools.words``; pairs on two lines), each coloured by the ``agg``
    (sum, max or mean) of its tokens' scores. None when the attribution holds no token offsets
    (slow tokenizer, old file)."""
    from ..words import WordAlignmentError, attribution_word_scores

    try:
        scored = attribution_word_scores(attribution, agg)
    except WordAlignmentError as err:
        if "aggregation" in str(err):
            raise
        return None
    lines = None
    if attribution.text_pair:
        lines = [(label, [i for i, w in enumerate(scored) if w.segment == s]) for s, label in ((0, "A"), (1, "B"))]
    fragment = token_heatmap([w.word for w in scored], [w.score for w in scored], None, is_signed(attribution),
                             lines, _header(attribution) if header else None, show_legend, unit="word")
    return fragment.replace('class="token-heatmap"', 'class="token-heatmap word-heatmap"', 1)


#: the matrix view's embedded numbers stay under this many characters (a notebook cell output
#: must stay under Jupyter's default data rate limit of 1 MB, static PNG fallback included)
MATRIX_BUDGET = 600_000
#: above this many tokens the matrix view draws on a <canvas> (one element) instead of SVG cells
CANVAS_ABOVE = 150


def matrix_payload(scores, kind: str, budget: int = MATRIX_BUDGET):
    """What the matrix view embeds, within ``budget`` characters: the one rule for its size.

    Tries, in order: every head (``matrix`` only) as 4-digit decimals, every layer (heads summed),
    then the same two as 8-bit codes (base64, one byte per cell, each ``n × n`` block scaled by its
    own largest magnitude: a value is known to within 1/254 of that block's range), then the sum over
    layers (and heads) as 8-bit codes. Returns ``(blocks, layers, heads, encoding, note)``: ``blocks``
    a float tensor ``(layers, heads or 1, n, n)``; ``heads`` 0 when summed; ``encoding`` "text" or
    "u8"; ``note`` what was given up, for the reader (None when nothing)."""
    scores = scores.detach().float().cpu()
    if kind == "matrix":
        L, H = scores.shape[0], scores.shape[1]
        options = [(scores, L, H, "per layer and head"), (scores.sum(1, keepdim=True), L, 0, "per layer (heads summed)")]
    else:
        L = scores.shape[0]
        options = [(scores.unsqueeze(1), L, 0, "per layer")]
    options.append((scores.reshape((L, -1) + tuple(scores.shape[-2:])).sum((0, 1))[None, None], 1, 0,
                    "the sum over layers" + (" and heads" if kind == "matrix" else "")))
    full = options[0][3]
    for encoding, per_value in (("text", 8), ("u8", 1.34)):
        for k, (blocks, layers, heads, what) in enumerate(options):
            if encoding == "text" and k == len(options) - 1:
                continue  # the sum alone is only worth giving as 8-bit codes after every layer as text failed
            if blocks.numel() * per_value <= budget or (encoding == "u8" and k == len(options) - 1):
                note = None
                if what != full or encoding == "u8":
                    note = (f"Too many numbers to embed them all: this view shows {what}"
                            + (", each value to within 1/254 of its map's range (8-bit)" if encoding == "u8" else "")
                            + ". The attribution object and its saved file keep every value.")
                return blocks, layers, heads, encoding, note
    raise AssertionError("unreachable")


def _encode(blocks, encoding: str, signed: bool):
    """Blocks ``(A, B, n, n)`` as the view's ``scores`` (a JSON list, or base64 8-bit codes) and, for
    codes, ``{"scale": per-block largest magnitude, "signed": codes centred on 128}`` (else None)."""
    if encoding == "text":
        flat = blocks.reshape(-1).tolist()
        return "[" + ",".join("0" if (v != v or math.isinf(v)) else f"{v:.4g}" for v in flat) + "]", None
    import base64

    import torch

    A, B, n = blocks.shape[0], blocks.shape[1], blocks.shape[-1]
    flat = torch.nan_to_num(blocks.reshape(A * B, n * n), nan=0.0, posinf=0.0, neginf=0.0)
    top = flat.abs().amax(1).clamp_min(1e-30)
    signed = signed or bool((flat < 0).any())  # codes centred on 128 whenever a value is negative
    if signed:
        codes = torch.round(flat / top[:, None] * 127) + 128
    else:
        codes = torch.round(flat.clamp_min(0) / top[:, None] * 255)
    data = base64.b64encode(codes.clamp(0, 255).to(torch.uint8).numpy().tobytes()).decode("ascii")
    return json.dumps(data), {"scale": [float(t) for t in top.tolist()], "signed": signed}


def _static_png(attribution) -> str | None:
    """The scriptless fallback: a PNG (data URI) of the sum over layers and heads (``plots.matrix_figure``)."""
    import base64
    import io

    from .plots import matrix_figure

    fig = matrix_figure(attribution, width=4.6)
    buffer = io.BytesIO()
    # above CANVAS_ABOVE tokens a cell is under a pixel anyway: a coarser picture keeps the output small
    fig.savefig(buffer, format="png", dpi=90 if attribution.n_tokens <= CANVAS_ABOVE else 60, bbox_inches="tight",
                facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def matrix_view(attribution) -> str:
    """Interactive view of the ``(n × n)`` maps: a layer (or the sum of layers, shown first) and, for
    ``matrix`` payloads, a head (or the sum of heads). Self-contained: the numbers are embedded as JSON
    (within ``MATRIX_BUDGET``, see ``matrix_payload``) and drawn by a few lines of inline JavaScript
    (SVG cells, or one <canvas> above ``CANVAS_ABOVE`` tokens); where scripts do not run (an untrusted
    notebook, GitHub's preview) a static PNG of the summed map is shown instead."""
    if attribution.kind == "tokens":
        raise ValueError("a 'tokens' attribution has no token × token maps")
    signed = is_signed(attribution)
    blocks, L, H, encoding, note = matrix_payload(attribution.scores, attribution.kind)
    n = blocks.shape[-1]
    numbers, qscale = _encode(blocks, encoding, signed)
    scale = scale_for([0.0, 1.0], signed)
    longest = max((len(t) for t in attribution.tokens), default=4)
    payload = {"n": n, "layers": L, "heads": H, "signed": signed, "tokens": attribution.tokens,
               "special": [int(m) for m in (attribution.special_tokens_mask or [0] * n)],
               "colours": scale.colours, "pad": min(140, 14 + 7 * longest), "encoding": encoding,
               "qscale": qscale, "canvas": n > CANVAS_ABOVE, "scores": "@@SCORES@@"}
    text = json.dumps(payload).replace("</", "<\\/")
    text = text.replace('"@@SCORES@@"', numbers)
    fragment = environment().get_template("matrix.html.j2").render(
        mid=new_id("mx"), layers=L if L > 1 or attribution.scores.shape[0] == 1 else 0, heads=H,
        payload=markup(text), static=_static_png(attribution), per_head=attribution.kind == "matrix")
    if note:
        fragment = f'<p class="muted">{note}</p>' + fragment
    return fragment


def attribution_report(attribution, title: str | None = None, words: str | None = "sum") -> Report:
    """A report for one attribution: the token heat-map, the word heat-map (``words``: the
    aggregation of each word's tokens, ``"sum"``, ``"max"`` or ``"mean"``; None: no word view)
    and, for matrix kinds, the layer/head view."""
    text = attribution.text or ""
    if attribution.text_pair:
        text = f"A: {truncate(text, 120)}   B: {truncate(attribution.text_pair, 120)}"
    report = Report(title or f"{attribution.method} attribution", truncate(text, 260) or None)
    section = report.section("Token scores", _token_intro(attribution))
    section.html(attribution_heatmap(attribution))
    if words:
        fragment = word_heatmap(attribution, words)
        words_section = report.section("Word scores", f"One score per word of the original text: the {words} of "
                                                      "its tokens' scores (special tokens excluded).")
        if fragment is None:
            words_section.text("No word view: this attribution holds no token offsets (computed with a slow "
                               "tokenizer or saved by an older attrtools).", muted=True)
        else:
            words_section.html(fragment)
    if attribution.kind != "tokens":
        what = "per layer and head" if attribution.kind == "matrix" else "per layer"
        report.section(f"Token × token maps ({what})",
                       "Pick a layer (or the sum over layers)" + (" and a head (or the sum over heads)"
                                                                  if attribution.kind == "matrix" else "")
                       + ". Row i, column j: how much the query token i draws from the key token j."
                       ).html(matrix_view(attribution))
    return report


def _token_intro(attribution) -> str:
    how = {"tokens": "the method's own per-token scores",
           "layer_matrix": "what the classification position draws from each token in the last layer",
           "matrix": "the total attribution flowing out of each token (layers, heads and query rows summed)"}
    return f"One score per token: {how[attribution.kind]}."


def attribution_html(attribution) -> str:
    """Notebook fragment of one attribution (same templates as the files)."""
    return attribution_report(attribution)._repr_html_()


def attribution_page(attribution, title: str | None = None, words: str | None = "sum") -> str:
    """A whole self-contained page for one attribution (``attrtools attribute --html``); ``words``
    as in ``attribution_report``."""
    return attribution_report(attribution, title, words).to_html()


def summary_report(attributions, title: str = "Attributions", words: str | None = None) -> Report:
    """A list of attributions as one table: text, prediction, top tokens and a small heat-map per row;
    with ``words`` (``"sum"``, ``"max"`` or ``"mean"``) top words and a word heat-map instead
    (rows without token offsets keep their tokens)."""
    from .page import Table

    attributions = list(attributions)
    report = Report(title, f"{len(attributions)} attribution(s); each heat-map is scaled by its own row "
                           "(special tokens left out); hover a token for its score.")
    rows = []
    for index, a in enumerate(attributions):
        names = getattr(a, "label_names", None) or []
        scores = a.token_scores().tolist()
        special = a.special_tokens_mask or [0] * len(scores)
        ranked = sorted((i for i in range(len(scores)) if not special[i]), key=lambda i: -scores[i])[:3]
        top, heatmap = ", ".join(a.tokens[i] for i in ranked), None
        if words:
            heatmap = word_heatmap(a, words, header=False, show_legend=False)
        if heatmap is not None:
            scored = a.word_scores(words)
            scores, special = [w.score for w in scored], [0] * len(scored)
            top = ", ".join(w.word for w in sorted(scored, key=lambda w: -w.score)[:3])
        p = a.probs[a.predicted] if a.probs and 0 <= a.predicted < len(a.probs) else None
        rows.append([a.example_id if a.example_id is not None else str(index), a.method,
                     class_name(a.predicted, names) + (f" ({fmt_number(p)})" if p is not None else ""),
                     class_name(a.label, names) if a.label is not None else "–",
                     top, _range(a, scores, special),
                     markup(heatmap or attribution_heatmap(a, header=False, show_legend=False))])
    report.section("Summary", "Colour range: the row's own scale; signed methods use blue (lowers the "
                              "explained score) – white (0) – red (raises it), unsigned ones white (0) to orange."
                   ).add(Table(["example", "method", "predicted (p)", "gold", "top words" if words else "top tokens",
                                "colour range", "words" if words else "tokens"], rows))
    return report


def _range(attribution, scores, special) -> str:
    content = [s for s, m in zip(scores, special) if not m] or scores
    scale = scale_for(content, is_signed(attribution))
    return f"±{scale.vmax:.3g} (signed)" if scale.signed else f"0 – {scale.vmax:.3g} (unsigned)"
