"""Exports of an attribution tree (``nx.DiGraph`` from ``build_tree``): GraphML, node-link JSON, DOT,
PNG/SVG (matplotlib, Agg, no pyplot state) and one self-contained HTML file (inline SVG + a few lines
of JavaScript, no CDN, opens offline).

Every file is written atomically (temporary name, then rename). Reading back:

- GraphML: ``nx.read_graphml(path, node_type=int)`` (node ids are token positions);
- JSON: ``read_node_link(path)`` = ``nx.node_link_graph(json.load(f), edges="edges")``.
"""
from __future__ import annotations

import html
import json
import math
import os

from ..errors import ParameterError
from ..io import atomic_path, write_text

FORMATS = ("graphml", "json", "dot", "png", "svg", "html")


def parse_formats(spec: str | None, default=FORMATS) -> tuple[str, ...]:
    """``"graphml,json"`` -> ``("graphml", "json")``; unknown names raise ``ValueError``."""
    if spec is None or spec == "":
        return tuple(default)
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if "all" in names:
        return FORMATS
    bad = [s for s in names if s not in FORMATS]
    if bad:
        raise ParameterError(f"unknown tree format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)} or 'all'")
    return tuple(dict.fromkeys(names))


def all_tokens(graph) -> list[str]:
    """All ``n`` tokens of the example (tree nodes and the tokens the tree did not reach)."""
    raw = graph.graph.get("tokens")
    if raw:
        return list(json.loads(raw))
    n = int(graph.graph.get("n_tokens", max(graph.nodes, default=-1) + 1))
    return [graph.nodes[i]["token"] if i in graph else "" for i in range(n)]


# --------------------------------------------------------------------------------- graph formats
def write_graphml(graph, path: str) -> str:
    import networkx as nx

    with atomic_path(path) as tmp:
        nx.write_graphml(graph, tmp)
    return path


def node_link(graph) -> dict:
    import networkx as nx

    return nx.node_link_data(graph, edges="edges")


def write_node_link(graph, path: str) -> str:
    return write_text(path, json.dumps(node_link(graph), indent=1, sort_keys=True) + "\n")


def read_node_link(path: str):
    import networkx as nx

    with open(path, encoding="utf-8") as f:
        return nx.node_link_graph(json.load(f), edges="edges")


def _dot_quote(value) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def to_dot(graph) -> str:
    """Graphviz DOT text (no pydot needed): nodes labelled ``token (position)``, ranks by layer."""
    lines = ["digraph attribution_tree {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb"];']
    for key, value in sorted(graph.graph.items()):
        if key in ("tokens",) or isinstance(value, (dict, list)):
            continue
        lines.append(f"  // {key} = {str(value)[:200].replace(chr(10), ' ')}")
    by_layer: dict[int, list[int]] = {}
    for node, data in graph.nodes(data=True):
        by_layer.setdefault(int(data.get("layer", 0)), []).append(node)
        attrs = {k: v for k, v in data.items()}
        attrs["label"] = f"{data.get('token', node)} ({node})"
        if data.get("is_root"):
            attrs["fillcolor"] = "#f6c85f"
        lines.append(f"  {node} [" + ", ".join(f"{k}={_dot_quote(v)}" for k, v in sorted(attrs.items())) + "];")
    for layer in sorted(by_layer, reverse=True):
        lines.append("  { rank=same; " + " ".join(str(n) for n in sorted(by_layer[layer])) + "; }")
    for i, j, data in graph.edges(data=True):
        attrs = dict(data)
        attrs["label"] = f"L{data.get('layer')} {data.get('score', 0):.2f}"
        attrs["penwidth"] = f"{1 + 2 * min(1.0, float(data.get('score', 0))):.2f}"
        lines.append(f"  {i} -> {j} [" + ", ".join(f"{k}={_dot_quote(v)}" for k, v in sorted(attrs.items())) + "];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_dot(graph, path: str) -> str:
    return write_text(path, to_dot(graph))


# --------------------------------------------------------------------------------- pictures
def _class(graph, key) -> str:
    value = graph.graph.get(key)
    try:
        names = json.loads(graph.graph.get("label_names") or "[]")
    except ValueError:
        names = []
    if names and isinstance(value, int) and 0 <= value < len(names):
        return f"{names[value]} ({value})"
    return str(value)


def _title(graph) -> str:
    g = graph.graph
    parts = []
    if g.get("example_id") is not None:
        parts.append(f"#{g['example_id']}")
    text = g.get("text")
    if text:
        text = text if len(text) <= 90 else text[:87] + "..."
        parts.append(repr(text))
    if g.get("predicted") is not None:
        conf = g.get("confidence")
        parts.append(f"pred {_class(graph, 'predicted')}" + (f" (p={conf:.2f})" if conf is not None else ""))
    if g.get("label") is not None:
        parts.append(f"gold {_class(graph, 'label')}")
    parts.append(f"τ={g.get('threshold')} root={g.get('root_mode')}")
    return "  ".join(parts)


#: above this many tokens the picture places only the tree's tokens (in sentence order) instead of
#: one column per token, so long inputs stay readable at a bounded width
COMPACT_ABOVE = 24
MAX_WIDTH_IN = 16.0


def _layout(graph, tokens):
    """x position per node (and per sentence token when drawn), column width in inches, compact flag."""
    n = len(tokens)
    compact = n > COMPACT_ABOVE
    if compact:
        order = sorted(graph.nodes)
        xs = {node: float(k) for k, node in enumerate(order)}
        columns = max(1, len(order))
    else:
        xs = {node: float(node) for node in graph.nodes}
        columns = max(1, n)
    longest = max((len(str(d.get("token", node))) for node, d in graph.nodes(data=True)), default=4)
    column_in = min(max(0.62, 0.085 * longest + 0.25), MAX_WIDTH_IN / columns) if columns else 0.7
    return xs, columns, column_in, compact


def _route(start, end, obstacles, scale, clearance):
    """The arc3 curvature (``rad``) and control point (inches) of the candidate curve that crosses the
    fewest obstacle boxes (ties: the straightest): straight first, then growing bends to either side."""
    (x1, y1), (x2, y2) = start, end
    sx, sy = scale
    a = (x1 * sx, y1 * sy)
    b = (x2 * sx, y2 * sy)
    best = None
    for rad in (0.0, 0.2, -0.2, 0.35, -0.35, 0.5, -0.5):
        # matplotlib's arc3: control point = midpoint + rad * (dy, -dx), in display (here: inch) units
        c = ((a[0] + b[0]) / 2 + rad * (b[1] - a[1]), (a[1] + b[1]) / 2 - rad * (b[0] - a[0]))
        hits = 0
        for ox, oy, half_w, half_h in obstacles:
            for t in (k / 24 for k in range(2, 23)):
                px = (1 - t) ** 2 * a[0] + 2 * (1 - t) * t * c[0] + t ** 2 * b[0]
                py = (1 - t) ** 2 * a[1] + 2 * (1 - t) * t * c[1] + t ** 2 * b[1]
                if abs(px - ox * sx) < half_w + clearance and abs(py - oy * sy) < half_h + clearance:
                    hits += 1
                    break
        if best is None or hits < best[0]:
            best = (hits, rad, c)
        if hits == 0:
            break
    return best[1], best[2]


def draw(graph, path: str, fmt: str | None = None, dpi: int = 120) -> str:
    """PNG or SVG picture: x = token position (or, for long inputs, the tree's tokens in sentence order),
    y = layer where the token joined the tree. Tokens sit in boxes sized to their text; arrows go from
    query to key, bent around boxes they would otherwise cross, with width and colour by the normalised
    score (colour bar); the score is written on each arrow. At most 16 inches wide."""
    import textwrap

    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    tokens = all_tokens(graph)
    top = int(graph.graph.get("top_layer", 0)) + 1
    xs, columns, column_in, compact = _layout(graph, tokens)
    row_in = 0.75
    width = min(MAX_WIDTH_IN, max(6.5, columns * column_in + 2.2))
    bottom_in = 0.3 if compact else 0.25 + 0.07 * max((len(t) for t in tokens), default=4)
    title = textwrap.fill(_title(graph), width=int(width * 11))
    title_in = 0.2 * (title.count("\n") + 1) + 0.55  # the title plus headroom for arcs bending upwards
    height = (top + 1) * row_in + bottom_in + title_in + 0.4
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((1.1 / width, (bottom_in + 0.25) / height, 1 - 1.9 / width,
                       1 - (bottom_in + 0.25 + title_in) / height))
    x_low, x_high = -0.6, columns - 0.4
    y_low, y_high = -0.6, top + 0.6
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(y_low, y_high)
    box = ax.get_position()
    scale = (width * box.width / (x_high - x_low), height * box.height / (y_high - y_low))  # inches per unit
    font = 8 if column_in >= 0.55 else 7
    label = {node: str(d.get("token", node)) for node, d in graph.nodes(data=True)}
    half = {node: ((0.045 * len(label[node]) + 0.12) * font / 8, 0.13) for node in graph.nodes}  # inches
    pos = _positions(graph, xs, half, scale)
    cmap = colormaps["Blues"]
    scores = [float(d.get("score", 0.0)) for _, _, d in graph.edges(data=True)]
    low = float(graph.graph.get("threshold", 0.0))
    norm = Normalize(vmin=low, vmax=max(scores + [low + 1e-6]))
    _draw_edges(ax, graph, pos, half, scale, norm, cmap)
    for node, d in graph.nodes(data=True):
        x, y = pos[node]
        colour = "#f6c85f" if d.get("is_root") else ("#e4e7eb" if d.get("is_special") else "#dbe9f6")
        ax.text(x, y, label[node], fontsize=font, ha="center", va="center", zorder=4,
                bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="#234", lw=0.8))
    _draw_axes(ax, graph, tokens, compact, top, (x_low, y_low))
    fig.text(1.1 / width, 1 - 0.12 / height, title, fontsize=9, ha="left", va="top")
    if scores:
        cax = fig.add_axes((1 - 0.62 / width, box.y0, 0.1 / width, box.height))
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
        bar.set_label("normalised score", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    with atomic_path(path, suffix="." + fmt) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def _positions(graph, xs: dict, half: dict, scale) -> dict:
    """``{node: (x, y)}``: x from the layout, y the layer the token joined at; a box that would overlap
    its left neighbour on the same row moves up by a third of a row."""
    pos = {node: (xs[node], float(d.get("layer", 0))) for node, d in graph.nodes(data=True)}
    by_row: dict = {}
    for node in sorted(graph.nodes, key=lambda k: xs[k]):
        by_row.setdefault(pos[node][1], []).append(node)
    for row in by_row.values():
        for left, right in zip(row, row[1:]):
            gap = (xs[right] - xs[left]) * scale[0]
            if gap < half[left][0] + half[right][0] + 0.04 and pos[left][1] == int(pos[left][1]):
                pos[right] = (pos[right][0], pos[right][1] + 0.33)
    return pos


def _draw_edges(ax, graph, pos: dict, half: dict, scale, norm, cmap) -> None:
    """One arrow per edge, query to key, bent around the boxes it would cross (``_route``), width and
    colour by the normalised score, the score written on the curve's midpoint."""
    from matplotlib.patches import FancyArrowPatch

    for i, j, d in graph.edges(data=True):
        score = float(d.get("score", 0.0))
        strength = min(1.0, max(0.0, norm(score)))
        obstacles = [(pos[k][0], pos[k][1], half[k][0], half[k][1]) for k in graph.nodes if k not in (i, j)]
        rad, control = _route(pos[i], pos[j], obstacles, scale, 0.04)
        colour = cmap(0.45 + 0.55 * strength)
        ax.add_patch(FancyArrowPatch(pos[i], pos[j], arrowstyle="-|>", mutation_scale=11, color=colour,
                                     lw=1.0 + 2.2 * strength, shrinkA=11, shrinkB=11, zorder=1, clip_on=False,
                                     connectionstyle=f"arc3,rad={rad}"))
        # the label sits on the curve's midpoint (the quadratic Bezier at t = 1/2)
        (ax0, ay0), (bx0, by0) = pos[i], pos[j]
        mx = (0.25 * ax0 * scale[0] + 0.5 * control[0] + 0.25 * bx0 * scale[0]) / scale[0]
        my = (0.25 * ay0 * scale[1] + 0.5 * control[1] + 0.25 * by0 * scale[1]) / scale[1]
        ax.text(mx, my, f"{score:.2f}", fontsize=7, color="#234", ha="center", va="center", zorder=3,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))


def _draw_axes(ax, graph, tokens: list, compact: bool, top: int, corner) -> None:
    """The sentence along the bottom (tree tokens in bold; a note instead for long inputs), the layer
    ticks on the left, no other frame."""
    x_low, y_low = corner
    if not compact:
        for x, token in enumerate(tokens):  # the whole sentence along the bottom, tree tokens in bold
            ax.text(x, y_low - 0.05, token, fontsize=7.5, rotation=50, ha="right", va="top", rotation_mode="anchor",
                    color="#111" if x in graph else "#888", fontweight="bold" if x in graph else "normal")
    else:
        ax.text(x_low, y_low - 0.1, f"{len(tokens)} tokens; only the {graph.number_of_nodes()} tokens of the tree "
                                    "are placed, in sentence order", fontsize=7.5, color="#555", va="top")
    ax.set_yticks(range(0, top + 1))
    ax.set_yticklabels([f"layer {l}" for l in range(top)] + ["root"], fontsize=8)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)


# --------------------------------------------------------------------------------- HTML
_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.2em;color:#222}}
h1{{font-size:1.05em;margin:0 0 .3em}} .meta{{color:#555;font-size:.85em;margin-bottom:.6em}}
svg text{{font-size:12px;pointer-events:none}} .node rect{{fill:#dbe9f6;stroke:#234;cursor:pointer}}
.node.root rect{{fill:#f6c85f}} .node.special rect{{fill:#e4e7eb}} .edge{{fill:none;stroke-opacity:.85}}
.dim{{opacity:.15}} .hl rect{{stroke:#d62728;stroke-width:2.5}} .edge.hl{{stroke:#d62728!important}}
.word{{fill:#999}} .word.in{{fill:#111;font-weight:bold}} #info{{font-size:.9em;min-height:1.4em;color:#333}}
table{{border-collapse:collapse;font-size:.85em;margin-top:.8em}} .scroll{{overflow-x:auto;max-width:100%}} td,th{{border:1px solid #ccc;padding:2px 6px}}
</style></head><body>
<h1>Attribution tree</h1><div class="meta">{meta}</div>
<div id="info">Click a token to highlight its path from the root and its subtree; click the background to reset.</div>
<div class="scroll">{svg}</div>
<table><tr><th>#</th><th>layer</th><th>from (query)</th><th>to (key)</th><th>score</th><th>|i-j|</th></tr>{rows}</table>
<script type="application/json" id="tree-data">{data}</script>
<script>
(function(){{
  var data = JSON.parse(document.getElementById('tree-data').textContent);
  var parent = {{}}, children = {{}};
  data.edges.forEach(function(e){{ parent[e.target] = e.source; (children[e.source] = children[e.source] || []).push(e.target); }});
  var svg = document.getElementById('tree-svg'), info = document.getElementById('info');
  function reset(){{ svg.querySelectorAll('.node,.edge').forEach(function(el){{ el.classList.remove('dim','hl'); }}); }}
  function mark(id){{ var el = svg.querySelector('[data-id="'+id+'"]'); if(el){{ el.classList.remove('dim'); el.classList.add('hl'); }} }}
  svg.addEventListener('click', function(ev){{
    var g = ev.target.closest('.node'); reset(); if(!g){{ return; }}
    svg.querySelectorAll('.node,.edge').forEach(function(el){{ el.classList.add('dim'); }});
    var id = +g.getAttribute('data-node'), node = id, path = [];
    mark('n'+node); while(parent[node] !== undefined){{ mark('e'+parent[node]+'-'+node); node = parent[node]; mark('n'+node); path.push(node); }}
    var stack = [id]; while(stack.length){{ var k = stack.pop(); (children[k]||[]).forEach(function(c){{ mark('e'+k+'-'+c); mark('n'+c); stack.push(c); }}); }}
    var d = data.nodes.filter(function(x){{ return x.id === id; }})[0];
    info.textContent = d.token + ' (position ' + id + ', joined at layer ' + d.layer + ', depth ' + d.depth + ')'
      + (path.length ? ' \\u2190 ' + path.map(function(p){{ return data.nodes.filter(function(x){{return x.id===p;}})[0].token; }}).join(' \\u2190 ') : '');
  }});
}})();
</script></body></html>
"""


def to_html(graph) -> str:
    """One self-contained HTML page: inline SVG (x = position, y = layer), tooltips, click to highlight."""
    tokens = all_tokens(graph)
    n = len(tokens)
    top = int(graph.graph.get("top_layer", 0)) + 1
    col, row, left, top_pad = 74, 70, 80, 30
    width = left + col * n + 20
    height = top_pad + row * (top + 1) + 90
    def xy(node):
        return left + col * node + col / 2, top_pad + row * (top - int(graph.nodes[node].get("layer", 0))) + 20
    esc = html.escape
    parts = [f'<svg id="tree-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#3b6ea8"/></marker></defs>']
    for l in range(top + 1):
        y = top_pad + row * (top - l) + 20
        parts.append(f'<line x1="{left - 10}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#eee"/>')
        parts.append(f'<text x="6" y="{y + 4}" fill="#777">{"root" if l == top else f"layer {l}"}</text>')
    for i, j, d in graph.edges(data=True):
        (x1, y1), (x2, y2) = xy(i), xy(j)
        score = float(d.get("score", 0.0))
        width_px = 1.2 + 2.5 * min(1.0, max(0.0, score - 0.3))
        if abs(y1 - y2) < 1e-6:
            mx, my = (x1 + x2) / 2, y1 - 28 - 4 * math.sqrt(abs(x2 - x1) / col)
        else:
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        dy = 16 if y2 > y1 else (-16 if y2 < y1 else 0)
        path = f"M{x1:.1f},{y1 + (dy if dy else -12):.1f} Q{mx:.1f},{my:.1f} {x2:.1f},{y2 - (dy if dy else 12):.1f}"
        tip = f"{graph.nodes[i]['token']} ({i}) \u2192 {graph.nodes[j]['token']} ({j}), layer {d.get('layer')}, " \
              f"score {score:.3f}, attribution {float(d.get('attribution', 0.0)):.4g}"
        parts.append(f'<path class="edge" data-id="e{i}-{j}" d="{path}" stroke="#3b6ea8" stroke-width="{width_px:.2f}" '
                     f'marker-end="url(#arrow)"><title>{esc(tip)}</title></path>')
    for node, d in graph.nodes(data=True):
        x, y = xy(node)
        classes = "node" + (" root" if d.get("is_root") else "") + (" special" if d.get("is_special") else "")
        label = str(d.get("token", node))
        short = label if len(label) <= 9 else label[:8] + "\u2026"
        tip = f"{label} (position {node}); joined at layer {d.get('layer')}; depth {d.get('depth')}"
        parts.append(f'<g class="{classes}" data-id="n{node}" data-node="{node}"><title>{esc(tip)}</title>'
                     f'<rect x="{x - col / 2 + 4:.1f}" y="{y - 13:.1f}" width="{col - 8}" height="26" rx="8"/>'
                     f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{esc(short)}</text></g>')
    base = top_pad + row * top + 20 + 40
    for x, token in enumerate(tokens):
        cls = "word in" if x in graph else "word"
        parts.append(f'<text class="{cls}" x="{left + col * x + col / 2:.1f}" y="{base}" text-anchor="end" '
                     f'transform="rotate(-35 {left + col * x + col / 2:.1f} {base})">{esc(token)}</text>')
    parts.append("</svg>")
    def cell(node):  # the token, and the original word holding it when that differs ("##able" in "unbelievable")
        token, word = graph.nodes[node]["token"], graph.nodes[node].get("word")
        return esc(token) + f" ({node})" + (f" <span class='muted'>in {esc(word)}</span>" if word and word != token else "")

    rows = "".join(
        f"<tr><td>{d.get('order', k)}</td><td>{d.get('layer')}</td><td>{cell(i)}</td>"
        f"<td>{cell(j)}</td><td>{float(d.get('score', 0)):.3f}</td><td>{d.get('distance')}</td></tr>"
        for k, (i, j, d) in enumerate(graph.edges(data=True)))
    data = {"nodes": [{"id": node, **{k: v for k, v in d.items()}} for node, d in graph.nodes(data=True)],
            "edges": [{"source": i, "target": j, **d} for i, j, d in graph.edges(data=True)]}
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return _HTML.format(title=esc(_title(graph)), meta=esc(_title(graph)), svg="".join(parts), rows=rows, data=payload)


def write_html(graph, path: str) -> str:
    return write_text(path, to_html(graph))


class TreeView:
    """A tree for Jupyter: ``_repr_html_`` is the interactive page of ``to_html`` in an ``<iframe srcdoc>``
    (its ids, styles and script stay separate from the notebook's; no server needed). ``show()``
    displays it, or writes a temporary page outside IPython."""

    def __init__(self, graph, height: int | None = None):
        self.graph = graph
        top = int(graph.graph.get("top_layer", 0)) + 1
        self.height = height or 260 + 70 * (top + 1) + 24 * graph.number_of_edges()

    def to_html(self, path: str | None = None) -> str:
        page = to_html(self.graph)
        if path is not None:
            write_text(path, page)
        return page

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(to_html(self.graph), quote=True)}" '
                f'style="width:100%;height:{self.height}px;border:1px solid #ddd" '
                'title="attribution tree"></iframe>')

    def show(self):
        from ..types import _show

        return _show(self)


def view(graph, height: int | None = None) -> TreeView:
    """``view(tree)`` in a notebook cell shows the interactive tree (see ``TreeView``)."""
    return TreeView(graph, height)


WRITERS = {"graphml": write_graphml, "json": write_node_link, "dot": write_dot,
           "png": lambda g, p: draw(g, p, "png"), "svg": lambda g, p: draw(g, p, "svg"), "html": write_html}


def export_tree(graph, stem: str, formats=FORMATS) -> dict[str, str]:
    """Write ``stem.<ext>`` for each format; returns ``{format: path}``."""
    out = {}
    for fmt in formats:
        if fmt not in WRITERS:
            raise ParameterError(f"unknown tree format {fmt!r}; choose from {', '.join(FORMATS)}")
        out[fmt] = WRITERS[fmt](graph, f"{stem}.{fmt}")
    return out
