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
        parts.append(f"pred {g['predicted']}" + (f" (p={conf:.2f})" if conf is not None else ""))
    if g.get("label") is not None:
        parts.append(f"gold {g['label']}")
    parts.append(f"τ={g.get('threshold')} root={g.get('root_mode')}")
    return "  ".join(parts)


def draw(graph, path: str, fmt: str | None = None, dpi: int = 120) -> str:
    """PNG or SVG picture: x = token position, y = layer; edge colour and width = normalised score."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib import colormaps
    from matplotlib.patches import FancyArrowPatch

    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    tokens = all_tokens(graph)
    n = len(tokens)
    top = int(graph.graph.get("top_layer", 0)) + 1
    fig = Figure(figsize=(min(40.0, max(8.0, 0.7 * n + 2.0)), min(16.0, 2.0 + 0.45 * (top + 2))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["Blues"]
    scores = [float(d.get("score", 0.0)) for _, _, d in graph.edges(data=True)]
    high = max(scores, default=1.0)
    low = float(graph.graph.get("threshold", 0.0))
    span = max(high - low, 1e-9)
    pos = {node: (node, int(d.get("layer", 0))) for node, d in graph.nodes(data=True)}
    for i, j, d in graph.edges(data=True):
        strength = min(1.0, max(0.0, (float(d.get("score", 0.0)) - low) / span))
        same_row = pos[i][1] == pos[j][1]
        ax.add_patch(FancyArrowPatch(pos[i], pos[j], arrowstyle="-|>", mutation_scale=12,
                                     color=cmap(0.45 + 0.55 * strength), lw=1.0 + 2.0 * strength,
                                     shrinkA=11, shrinkB=11, zorder=1,
                                     connectionstyle="arc3,rad=0.35" if same_row else "arc3,rad=0.0"))
        mx, my = (pos[i][0] + pos[j][0]) / 2, (pos[i][1] + pos[j][1]) / 2 + (0.22 if same_row else 0)
        ax.text(mx, my, f"{d.get('score', 0):.2f}", fontsize=6, color="#555", ha="center", va="center", zorder=3)
    for node, d in graph.nodes(data=True):
        x, y = pos[node]
        color = "#f6c85f" if d.get("is_root") else ("#cfd8e3" if d.get("is_special") else "#9ecae1")
        ax.scatter([x], [y], s=420, c=color, edgecolors="#234", linewidths=0.8, zorder=2)
        ax.text(x, y, str(d.get("token", node)), fontsize=8, ha="center", va="center", zorder=4)
    for x, token in enumerate(tokens):  # the whole sentence along the bottom, tree tokens in bold
        ax.text(x, -0.9, token, fontsize=8, rotation=60, ha="right", va="top",
                color="#111" if x in graph else "#999", fontweight="bold" if x in graph else "normal")
    ax.set_xlim(-0.8, n - 0.2)
    ax.set_ylim(-1.0, top + 0.6)
    ax.set_yticks(range(0, top + 1))
    ax.set_yticklabels([f"layer {l}" for l in range(top)] + ["root"])
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(_title(graph), fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix="." + fmt) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


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
table{{border-collapse:collapse;font-size:.85em;margin-top:.8em}} td,th{{border:1px solid #ccc;padding:2px 6px}}
</style></head><body>
<h1>Attribution tree</h1><div class="meta">{meta}</div>
<div id="info">Click a token to highlight its path from the root and its subtree; click the background to reset.</div>
{svg}
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
    rows = "".join(
        f"<tr><td>{d.get('order', k)}</td><td>{d.get('layer')}</td><td>{esc(graph.nodes[i]['token'])} ({i})</td>"
        f"<td>{esc(graph.nodes[j]['token'])} ({j})</td><td>{float(d.get('score', 0)):.3f}</td><td>{d.get('distance')}</td></tr>"
        for k, (i, j, d) in enumerate(graph.edges(data=True)))
    data = {"nodes": [{"id": node, **{k: v for k, v in d.items()}} for node, d in graph.nodes(data=True)],
            "edges": [{"source": i, "target": j, **d} for i, j, d in graph.edges(data=True)]}
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return _HTML.format(title=esc(_title(graph)), meta=esc(_title(graph)), svg="".join(parts), rows=rows, data=payload)


def write_html(graph, path: str) -> str:
    return write_text(path, to_html(graph))


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
