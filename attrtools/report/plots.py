"""Static figures of attributions for papers: matplotlib ``Figure`` objects (no pyplot state, Agg
canvas) sized for one column of a two-column paper (3.3 in wide, 7-8 pt fonts), each with a colour
bar that says what its numbers are. ``PaperFigure.save(path)`` writes PNG (300 dpi), SVG or PDF by
the file's suffix, atomically.

Views (``Attribution.plot(view=...)`` and ``Attributions.plot(view=...)`` delegate here):

- ``"tokens"``: the token heat-map of the HTML views, same colour rules (``colors.scale_for``):
  signed scores on a blue-white-red scale centred on 0 (``RdBu_r``, ``vmin = -vmax``), unsigned
  ones white (0) to orange (``Oranges``); special tokens are drawn with a dashed outline and kept out
  of the colour range (they often dominate). ``level="word"`` uses ``Attribution.word_scores()``
  where that method exists.
- ``"heads"``: layer × head importance, ``(L, H)`` = ``Attribution.head_importance()`` (Hao et al.
  2021, Sec. 4: the maximum of each head's attribution map); for a list, the mean over examples
  (the aggregate of the AttAttr pruning experiment, Sec. 4.2).
- ``"matrix"``: one ``(n × n)`` map with the tokens on both axes: a layer (or the sum of layers,
  the default: never the almost-empty last layer of AttAttr) and a head (or the sum of heads).
  Row ``i`` (query, receiving token) × column ``j`` (key, source token).

Imports nothing of attrtools but this package, ``errors`` (which imports nothing) and the atomic writer.
"""
from __future__ import annotations

import os

from ..errors import UsageError
from .colors import DIVERGING, SEQUENTIAL, scale_for

#: one column of a two-column paper (ACL, NeurIPS, IEEE: 3.25-3.35 in)
COLUMN_WIDTH = 3.3
#: two columns
PAGE_WIDTH = 6.9
FONT_SIZE = 8
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
VIEWS = ("tokens", "heads", "matrix")


class FigureFormatError(UsageError):
    """A figure that cannot be drawn as asked: a file suffix not in ``FORMATS``, an unknown view or
    level, a layer/head out of range, a payload without the view's data (one line, CLI exit 2)."""


def figure_format(path: str | os.PathLike) -> str:
    """``"png"``, ``"svg"`` or ``"pdf"`` from the suffix of ``path`` (case-insensitive); any other
    suffix raises ``FigureFormatError`` (one line naming the accepted ones). The one rule for what
    a figure file may be."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise FigureFormatError(f"cannot write a figure to {os.fspath(path)!r}: the file name must end in "
                                f"{', '.join(FORMATS)} (the format is taken from the suffix)")
    return FORMATS[suffix]


def parse_formats(text: str | None) -> list[str]:
    """``"png,svg,pdf"`` (a CLI option) -> ``["png", "svg", "pdf"]``: comma-separated, case and
    spaces ignored, duplicates dropped; empty/None -> ``[]``. Any other name raises
    ``FigureFormatError`` naming it (one rule with ``figure_format``)."""
    names = []
    for part in (text or "").split(","):
        name = part.strip().lower().lstrip(".")
        if not name:
            continue
        if "." + name not in FORMATS:
            raise FigureFormatError(f"unknown figure format {name!r}: use a comma-separated list of "
                                    f"{', '.join(FORMATS.values())}")
        if name not in names:
            names.append(name)
    return names


def _figure_class():
    from matplotlib.figure import Figure

    class PaperFigure(Figure):
        """A matplotlib ``Figure`` with ``save(path)``: PNG at 300 dpi, SVG or PDF by suffix."""

        def save(self, path: str | os.PathLike, dpi: int = 300) -> str:
            """Write the figure to ``path`` (format from its suffix, see ``figure_format``), atomically
            (temporary file, then rename); returns the path."""
            from ..io import atomic_path

            path = os.fspath(path)
            fmt = figure_format(path)
            kwargs = {"metadata": {"Creator": "attrtools"}} if fmt in ("png", "pdf") else {}
            with atomic_path(path) as tmp:
                self.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.02, facecolor="white",
                             **kwargs)
            return path

    return PaperFigure


_PAPER_FIGURE = None


def paper_figure(width: float, height: float):
    """An empty ``PaperFigure`` of ``width`` × ``height`` inches on the Agg canvas (no pyplot)."""
    global _PAPER_FIGURE
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if _PAPER_FIGURE is None:
        _PAPER_FIGURE = _figure_class()
    fig = _PAPER_FIGURE(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _signed(attribution) -> bool:
    from .views import is_signed

    return is_signed(attribution)


def _units(attribution, signed: bool, short: bool = False) -> str:
    """The colour bar's label: method and what the numbers are (``short``: for a vertical bar)."""
    if short:
        return f"{attribution.method} ({'signed' if signed else 'unsigned'})"
    return f"{attribution.method} score" + (" (signed; red raises the class)" if signed else " (unsigned share)")


def _norm(values, signed: bool):
    """``(cmap, vmin, vmax)`` with the HTML views' rule (``scale_for``)."""
    scale = scale_for(values, signed)
    return (DIVERGING if signed else SEQUENTIAL), scale.vmin, scale.vmax


def _token_units(attribution, level: str):
    """``(texts, scores, special)`` at ``level`` ``"token"`` or ``"word"``."""
    if level == "token":
        scores = [float(s) for s in attribution.token_scores().tolist()]
        special = list(attribution.special_tokens_mask or [0] * len(scores))
        return list(attribution.tokens), scores, [bool(m) for m in special]
    if level == "word":
        word_scores = getattr(attribution, "word_scores", None)
        if word_scores is None:
            raise FigureFormatError("level='word' needs Attribution.word_scores(), which this attrtools does not have; "
                                    "use level='token'")
        words = word_scores()
        texts, scores, special = unpack_words(words)
        return texts, scores, special
    raise FigureFormatError(f"unknown level {level!r}: use 'token' or 'word'")


def unpack_words(words):
    """Words from ``word_scores()``: a list of ``(word, score)`` pairs, of objects with ``word``/``text``
    and ``score``, or a mapping with ``words`` and ``scores``."""
    if isinstance(words, dict) and "words" in words and "scores" in words:
        texts, scores = list(words["words"]), [float(s) for s in words["scores"]]
        return texts, scores, [bool(m) for m in words.get("special", [0] * len(texts))]
    texts, scores, special = [], [], []
    for w in words:
        if isinstance(w, (tuple, list)):
            texts.append(str(w[0]))
            scores.append(float(w[1]))
            special.append(False)
        else:
            texts.append(str(getattr(w, "word", getattr(w, "text", ""))))
            scores.append(float(getattr(w, "score")))
            special.append(bool(getattr(w, "special", False)))
    return texts, scores, special


def _layout(texts, chars_per_line: int):
    """Greedy line breaking in character units: ``[(line, x0, width)]`` per token (monospace)."""
    places, line, x = [], 0, 0.0
    for t in texts:
        w = max(2, len(t)) + 1.2
        if x > 0 and x + w > chars_per_line:
            line, x = line + 1, 0.0
        places.append((line, x, w))
        x += w + 0.6
    return places


def _draw_tokens(ax, texts, scores, special, cmap, vmin, vmax, chars_per_line, top_line=0, label=None):
    """Token boxes coloured by score on ``ax`` (character units); returns the number of lines used."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import FancyBboxPatch

    colours = colormaps[cmap]
    norm = Normalize(vmin, vmax, clip=True)
    places = _layout(texts, chars_per_line)
    for text, score, is_special, (line, x, w) in zip(texts, scores, special, places):
        y = -(top_line + line) * 1.6
        rgba = (0.98, 0.98, 0.98, 1.0) if is_special else colours(norm(score))
        lum = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
        ax.add_patch(FancyBboxPatch((x, y - 0.55), w, 1.1, boxstyle="round,pad=0,rounding_size=0.25",
                                    facecolor=rgba, edgecolor="#98a2ad" if is_special else "none",
                                    linestyle="--" if is_special else "-", linewidth=0.5))
        ax.text(x + w / 2, y, text, ha="center", va="center", family="DejaVu Sans Mono", fontsize=FONT_SIZE - 1,
                color="#6b7580" if is_special else ("#ffffff" if lum < 0.45 else "#111111"))
    lines = (places[-1][0] + 1) if places else 1
    if label:
        ax.text(-0.6, -top_line * 1.6, label, ha="right", va="center", fontsize=FONT_SIZE - 1, color="#555555")
    return lines


def tokens_figure(attributions, level: str = "token", width: float = COLUMN_WIDTH, labels=None):
    """The token heat-map of one or several attributions, stacked (one block of lines each), on one
    colour scale (the largest content score of all of them; special tokens left out of it).

    Args: ``attributions``: one ``Attribution`` or a list; ``level``: ``"token"`` or ``"word"``;
    ``width``: inches (default one paper column); ``labels``: one caption per attribution (default:
    the example id or index, for several). Returns a ``PaperFigure``.
    Raises ``FigureFormatError`` for an unknown level; mixed signed/unsigned lists raise too (one
    colour scale cannot show both honestly)."""
    items = list(attributions) if isinstance(attributions, (list, tuple)) else [attributions]
    if not items:
        raise FigureFormatError("nothing to plot: the list of attributions is empty")
    signs = {_signed(a) for a in items}
    if len(signs) > 1:
        raise FigureFormatError("cannot draw signed and unsigned attributions on one colour scale: plot them apart")
    signed = signs.pop()
    units = [_token_units(a, level) for a in items]
    content = [s for _, scores, special in units for s, m in zip(scores, special) if not m] or \
              [s for _, scores, _ in units for s in scores]
    cmap, vmin, vmax = _norm(content, signed)
    chars = max(20, int((width - 0.25) / (0.6 * (FONT_SIZE - 1) / 72) / 1.0) - 2)
    if labels is None:
        labels = [None] if len(items) == 1 else [str(a.example_id if a.example_id is not None else i)
                                                 for i, a in enumerate(items)]
    line_counts = [(_layout(t, chars)[-1][0] + 1) if t else 1 for t, _, _ in units]
    total_lines = sum(line_counts) + 0.6 * (len(items) - 1)
    height = 0.62 + 0.2 * total_lines
    fig = paper_figure(width, height)
    bar_h = 0.09 / height
    ax = fig.add_axes([0.02, (0.42 / height), 0.96, 1 - 0.47 / height])
    top = 0.0
    for (texts, scores, special), count, label in zip(units, line_counts, labels):
        _draw_tokens(ax, texts, scores, special, cmap, vmin, vmax, chars, top_line=top, label=label)
        top += count + 0.6
    ax.set_xlim(-0.2, chars + 0.2)
    ax.set_ylim(-(top - 0.6) * 1.6 + 0.6, 0.75)
    ax.set_axis_off()
    cax = fig.add_axes([0.2, 0.17 / height, 0.6, bar_h])
    _colour_bar(fig, cax, cmap, vmin, vmax, _units(items[0], signed) + (" per word" if level == "word" else ""),
                horizontal=True)
    return fig


def _colour_bar(fig, cax, cmap, vmin, vmax, label, horizontal=False):
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=colormaps[cmap])
    from matplotlib.ticker import FuncFormatter

    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal" if horizontal else "vertical",
                       format=FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.2g}"))
    bar.set_label(label, fontsize=FONT_SIZE - 1)
    bar.ax.tick_params(labelsize=FONT_SIZE - 1, length=2, pad=1)
    bar.outline.set_linewidth(0.4)
    return bar


def heads_figure(importance, signed: bool, label: str, title: str | None = None, plan=None,
                 width: float = COLUMN_WIDTH):
    """Layer × head heat-map of ``importance`` (array-like ``(L, H)``), layers top to bottom, with
    a colour bar labelled ``label``; heads in ``plan`` (``{layer: [heads]}``) are crossed out (a
    pruning plan drawn on its scores). Signed values on the diverging scale centred on 0."""
    import numpy as np

    table = np.asarray(importance, dtype=float)
    if table.ndim != 2:
        raise FigureFormatError(f"head importance must be a 2-D (layers × heads) table, got shape {table.shape}")
    L, H = table.shape
    cmap, vmin, vmax = _norm(table.ravel().tolist(), signed)
    cell = min(0.26, (width - 1.1) / max(H, 1))
    fig = paper_figure(width, max(1.6, L * cell + 0.9))
    ax = fig.add_axes([0.14, 0.2, 0.66, 0.68])
    image = ax.imshow(table, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xlabel("head", fontsize=FONT_SIZE)
    ax.set_ylabel("layer", fontsize=FONT_SIZE)
    step_h, step_l = max(1, H // 12), max(1, L // 12)
    ax.set_xticks(range(0, H, step_h))
    ax.set_yticks(range(0, L, step_l))
    ax.tick_params(labelsize=FONT_SIZE - 1, length=2, pad=1)
    xs, ys = [], []
    for layer, heads in (plan or {}).items():
        for head in heads:
            xs.append(int(head))
            ys.append(int(layer))
    if xs:
        ax.scatter(xs, ys, marker="x", s=14, c="#111111", linewidths=0.9)
    ax.set_title(title or "head importance", fontsize=FONT_SIZE)
    cax = fig.add_axes([0.83, 0.2, 0.03, 0.68])
    _colour_bar(fig, cax, cmap, vmin, vmax, label)
    del image
    return fig


def matrix_figure(attribution, layer=None, head=None, width: float = COLUMN_WIDTH):
    """One ``(n × n)`` map with the tokens on both axes (rows: query; columns: key).

    ``layer``: an int (negative counts from the end) or None for the sum over layers (the default);
    ``head``: an int or None for the sum over heads (``matrix`` payloads only). Colour range: the
    largest content cell (special tokens' rows and columns left out, as in the HTML view).
    Raises ``FigureFormatError`` for a ``tokens`` payload or a layer/head out of range."""
    if attribution.kind == "tokens":
        raise FigureFormatError(f"a 'tokens' attribution ({attribution.method}) has no token × token map: "
                                "use view='tokens'")
    scores = attribution.scores.detach().float().cpu()
    L = scores.shape[0]
    if layer is not None:
        if not -L <= int(layer) < L:
            raise FigureFormatError(f"layer {layer} is out of range: this attribution has layers 0 to {L - 1}")
        layer = int(layer) % L
    if attribution.kind == "matrix":
        H = scores.shape[1]
        if head is not None:
            if not -H <= int(head) < H:
                raise FigureFormatError(f"head {head} is out of range: this attribution has heads 0 to {H - 1}")
            head = int(head) % H
            scores = scores[:, head]
        else:
            scores = scores.sum(1)
    elif head is not None:
        raise FigureFormatError(f"{attribution.method} gives one map per layer ('layer_matrix'): there is no head to pick")
    m = scores[layer] if layer is not None else scores.sum(0)
    n = m.shape[-1]
    special = [bool(s) for s in (attribution.special_tokens_mask or [0] * n)]
    keep = [i for i in range(n) if not special[i]]
    content = m[keep][:, keep].reshape(-1).tolist() if keep else m.reshape(-1).tolist()
    signed = _signed(attribution)
    cmap, vmin, vmax = _norm(content, signed)
    longest = max((len(t) for t in attribution.tokens), default=3)
    label_in = min(1.1, 0.2 + 0.055 * longest)
    side = max(1.4, width - label_in - 0.75)
    fig = paper_figure(side + label_in + 0.75, side + label_in + 0.3)
    W, Hh = fig.get_size_inches()
    ax = fig.add_axes([label_in / W, 0.15 / Hh, side / W, side / Hh])
    ax.imshow(m.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal", interpolation="nearest")
    size = FONT_SIZE - 1 if n <= 24 else max(4, FONT_SIZE - 1 - (n - 24) // 8)
    room = max(1, int(side * 72 / (size * 1.25)))  # labels that fit along one side without overlapping
    step = -(-n // room)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels([attribution.tokens[i] for i in ticks], rotation=90, fontsize=size)
    ax.set_yticklabels([attribution.tokens[i] for i in ticks], fontsize=size)
    ax.xaxis.tick_top()
    ax.tick_params(length=1.5, pad=1)
    which = ("sum of layers" if layer is None else f"layer {layer}")
    if attribution.kind == "matrix":
        which += ", " + ("sum of heads" if head is None else f"head {head}")
    ax.set_xlabel(which, fontsize=FONT_SIZE - 1)
    ax.set_ylabel("query (row) ← key (column)", fontsize=FONT_SIZE - 1)
    cax = fig.add_axes([(label_in + side + 0.12) / W, 0.15 / Hh, 0.1 / W, side / Hh])
    _colour_bar(fig, cax, cmap, vmin, vmax, _units(attribution, signed, short=True))
    return fig


def attribution_figure(attribution, view: str = "tokens", **options):
    """``Attribution.plot``: ``view`` in ``VIEWS``; ``options`` go to the view's function
    (``level``/``width`` for tokens; ``layer``/``head``/``width`` for matrix; ``width`` for heads)."""
    if view == "tokens":
        return tokens_figure(attribution, **options)
    if view == "matrix":
        return matrix_figure(attribution, **options)
    if view == "heads":
        if attribution.kind != "matrix":
            raise FigureFormatError(f"view='heads' needs a per-head ('matrix') attribution such as AttAttr; "
                                    f"{attribution.method} gives {attribution.kind!r}")
        signed = _signed(attribution)
        return heads_figure(attribution.head_importance().detach().float().cpu().numpy(), signed,
                            f"{attribution.method} (max of map)", **options)
    raise FigureFormatError(f"unknown view {view!r}: use one of {', '.join(VIEWS)}")


def attributions_figure(attributions, view: str = "tokens", **options):
    """``Attributions.plot``: ``"tokens"`` stacks every example's heat-map on one scale; ``"heads"``
    draws the mean layer × head importance over the examples (all must be ``matrix`` payloads of one
    model shape)."""
    items = list(attributions)
    if not items:
        raise FigureFormatError("nothing to plot: the list of attributions is empty")
    if view == "tokens":
        return tokens_figure(items, **options)
    if view == "heads":
        if any(a.kind != "matrix" for a in items):
            raise FigureFormatError("view='heads' needs per-head ('matrix') attributions for every example")
        shapes = {tuple(a.scores.shape[:2]) for a in items}
        if len(shapes) > 1:
            raise FigureFormatError(f"cannot average head importance over different model shapes {sorted(shapes)}")
        import torch

        mean = torch.stack([a.head_importance().detach().float().cpu() for a in items]).mean(0)
        return heads_figure(mean.numpy(), any(_signed(a) for a in items),
                            f"{items[0].method} (mean of {len(items)})", **options)
    if view == "matrix":
        raise FigureFormatError("view='matrix' draws one example: use attributions[i].plot(view='matrix')")
    raise FigureFormatError(f"unknown view {view!r}: use one of {', '.join(VIEWS)}")
