"""Figures for reports (matplotlib ``Figure`` objects, no pyplot state, Agg canvas)."""
from __future__ import annotations

import math


def blank_figure(width: float, height: float):
    """An empty matplotlib ``Figure`` of ``width`` × ``height`` inches on the Agg canvas, made without
    pyplot (no global figure state, no display needed): what every report figure starts from."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def head_importance_figure(tables: dict, plans: dict | None = None, title: str | None = None):
    """One layer × head heat-map per strategy (``tables[name]``: 2-D array-like ``(L, H)``), each on
    its own sequential scale with a colour bar (strategies are not comparable in absolute value);
    heads in ``plans[name]`` (``{layer: [heads]}``) are crossed out: the plan drawn on its scores."""
    import numpy as np

    names = list(tables)
    cols = min(3, len(names)) or 1
    rows = math.ceil(len(names) / cols) or 1
    first = np.asarray(tables[names[0]], dtype=float) if names else np.zeros((1, 1))
    L, H = first.shape
    cell = 0.36
    fig = blank_figure(cols * max(3.4, H * cell + 1.6), rows * max(2.6, L * cell + 1.2))
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        table = np.asarray(tables[name], dtype=float)
        low, high = float(np.nanmin(table)), float(np.nanmax(table))
        image = ax.imshow(table, cmap="viridis", aspect="equal", vmin=low, vmax=high if high > low else low + 1)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
        plan = (plans or {}).get(name) or {}
        xs, ys = [], []
        for layer, heads in plan.items():
            for head in heads:
                xs.append(int(head))
                ys.append(int(layer))
        if xs:
            ax.scatter(xs, ys, marker="x", s=40, c="#ff3b30", linewidths=1.6, label="pruned by the plan")
        ax.set_title(f"{name}" + (f" ({len(xs)} heads pruned)" if plan else ""), fontsize=10)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def line_figure(panels: list[dict], title: str | None = None, width: float = 11.0, height: float = 3.8):
    """Side-by-side line charts. Each panel: ``{"title", "xlabel", "ylabel", "series": {name: (xs, ys)},
    "dashed": {names}}``; a missing y (None/NaN) leaves a gap."""
    fig = blank_figure(width, height)
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for name, (xs, ys) in panel["series"].items():
            ys = [float("nan") if y is None or y == "" else float(y) for y in ys]
            style = {"linestyle": "--", "color": "#555"} if name in panel.get("dashed", ()) else {}
            ax.plot(xs, ys, marker="o", markersize=3.5, label=name, **style)
        ax.set_title(panel.get("title", ""), fontsize=10)
        ax.set_xlabel(panel.get("xlabel", ""), fontsize=9)
        ax.set_ylabel(panel.get("ylabel", ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if len(panel["series"]) > 1 and k == 0:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def layer_bars_figure(layers, bars, bar_label: str, line=None, line_label: str | None = None,
                      title: str | None = None):
    """Per-layer chart: bars (e.g. tree edges per example) and, on a second panel, a line
    (e.g. mean interaction distance |i − j|)."""
    fig = blank_figure(10.0 if line is not None else 5.5, 3.4)
    ax = fig.add_subplot(1, 2 if line is not None else 1, 1)
    ax.bar(layers, bars, color="#3b6ea8")
    ax.set_xlabel("layer", fontsize=9)
    ax.set_ylabel(bar_label, fontsize=9)
    ax.set_xticks(list(layers))
    ax.set_title(bar_label, fontsize=10)
    if line is not None:
        ax2 = fig.add_subplot(1, 2, 2)
        pts = [(x, y) for x, y in zip(layers, line) if y is not None and y != ""]
        ax2.plot([p[0] for p in pts], [float(p[1]) for p in pts], marker="o", color="#c0392b")
        ax2.set_xlabel("layer", fontsize=9)
        ax2.set_ylabel(line_label or "", fontsize=9)
        ax2.set_xticks(list(layers))
        ax2.set_title(line_label or "", fontsize=10)
        ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def bar_figure(labels, values, xlabel: str, title: str | None = None, colour: str = "#3b6ea8"):
    """Horizontal bars, one per label (e.g. accuracy under each attack)."""
    fig = blank_figure(6.5, 0.45 * len(labels) + 1.3)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(list(range(len(labels))), [0 if v is None else float(v) for v in values], color=colour)
    ax.set_yticks(list(range(len(labels))))
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=9)
    for i, v in enumerate(values):
        if v is not None:
            ax.text(float(v), i, f" {float(v):.1f}", va="center", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
