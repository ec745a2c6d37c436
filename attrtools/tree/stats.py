"""Dataset-level statistics of attribution trees (Hao et al. 2021, §5: "interaction distance" per layer).

For a set of trees (``nx.DiGraph`` from ``build_tree``):

- per layer ``l``: the number of tree edges at ``l``, edges per tree, and the **mean interaction
  distance** ``mean |i − j|`` over those edges (the paper's analysis of how far apart the tokens
  that interact in each layer are), plus its median and the mean normalised score;
- the most frequent **dependency patterns**: (query token, key token) pairs of tree edges,
  counted over the dataset (with the layers they occur in and their mean distance);
- per tree: nodes, edges, **depth** (longest root-to-leaf path in edges), root token, and the
  predicted/gold class.

Outputs (``TreeStatistics.write(dir)``): ``layer_stats.csv``, ``patterns.csv`` (all edges),
``patterns_words.csv`` (edges touching no special token such as [CLS]/[SEP], keyed on the words of
the original text holding the tokens: ``attrtools.words``), ``trees.csv``,
``edges.csv``, ``tree_stats.json`` and ``layer_stats.png`` (edges per layer and mean distance per layer).
"""
from __future__ import annotations

import csv
import io
import os
from collections import Counter, defaultdict

from ..io import atomic_path, write_json, write_text


def _csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def tree_depth(graph) -> int:
    """Longest root-to-node path, in edges (0 for a root without children)."""
    import networkx as nx

    root = graph.graph.get("root")
    if root is None or root not in graph:
        return nx.dag_longest_path_length(graph) if graph.number_of_nodes() else 0
    lengths = nx.single_source_shortest_path_length(graph, root)  # a tree: the one path is the shortest
    return max(lengths.values())


class TreeStatistics:
    """Accumulates trees one at a time (``add``) and summarises them (``layer_rows``, ``pattern_rows``, ...)."""

    def __init__(self, skip_special: bool = False):
        self.skip_special = skip_special  # leave [CLS]/[SEP] edges out of the pattern counts
        self.trees: list[dict] = []
        self.edges: list[dict] = []
        self.num_layers = 0

    def add(self, graph, index: int | None = None) -> None:
        g = graph.graph
        index = len(self.trees) if index is None else index
        self.num_layers = max(self.num_layers, int(g.get("num_layers", 0)))
        root = g.get("root")
        self.trees.append({
            "index": index, "example_id": g.get("example_id", ""), "n_tokens": g.get("n_tokens"),
            "nodes": graph.number_of_nodes(), "edges": graph.number_of_edges(), "depth": tree_depth(graph),
            "root": root, "root_token": graph.nodes[root]["token"] if root in graph else "",
            "predicted": g.get("predicted", ""), "label": g.get("label", ""), "text": g.get("text", ""),
        })
        for i, j, d in graph.edges(data=True):
            self.edges.append({
                "index": index, "example_id": g.get("example_id", ""), "layer": int(d["layer"]),
                "source": i, "target": j, "source_token": graph.nodes[i]["token"], "target_token": graph.nodes[j]["token"],
                "source_word": graph.nodes[i].get("word", graph.nodes[i]["token"]),
                "target_word": graph.nodes[j].get("word", graph.nodes[j]["token"]),
                "distance": int(d["distance"]), "score": float(d["score"]), "attribution": float(d["attribution"]),
                "special": bool(graph.nodes[i].get("is_special") or graph.nodes[j].get("is_special")),
            })

    def extend(self, graphs) -> "TreeStatistics":
        for graph in graphs:
            self.add(graph)
        return self

    # ------------------------------------------------------------------------------ summaries
    def layer_rows(self) -> list[dict]:
        count = max(1, len(self.trees))
        by_layer: dict[int, list[dict]] = defaultdict(list)
        for e in self.edges:
            by_layer[e["layer"]].append(e)
        rows = []
        for layer in range(self.num_layers):
            edges = by_layer.get(layer, [])
            distances = sorted(e["distance"] for e in edges)
            rows.append({
                "layer": layer, "edges": len(edges), "edges_per_tree": round(len(edges) / count, 6),
                "trees_with_edges": len({e["index"] for e in edges}),
                "mean_distance": round(sum(distances) / len(distances), 6) if distances else "",
                "median_distance": _median(distances) if distances else "",
                "mean_score": round(sum(e["score"] for e in edges) / len(edges), 6) if edges else "",
            })
        return rows

    def pattern_rows(self, top: int = 50, skip_special: bool | None = None, by: str = "token") -> list[dict]:
        """The most frequent (query, key) pairs of tree edges, keyed on their tokens (``by="token"``:
        columns ``source_token``/``target_token``) or on the original-text words holding them
        (``by="word"``: ``source_word``/``target_word``; "unbelievable", not "##able")."""
        skip_special = self.skip_special if skip_special is None else skip_special
        counts: Counter = Counter()
        layers: dict[tuple, Counter] = defaultdict(Counter)
        distance: dict[tuple, int] = defaultdict(int)
        trees: dict[tuple, set] = defaultdict(set)
        for e in self.edges:
            if skip_special and e["special"]:
                continue
            key = (e.get(f"source_{by}", e["source_token"]), e.get(f"target_{by}", e["target_token"]))
            counts[key] += 1
            layers[key][e["layer"]] += 1
            distance[key] += e["distance"]
            trees[key].add(e["index"])
        rows = []
        for (src, dst), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
            rows.append({f"source_{by}": src, f"target_{by}": dst, "count": c, "trees": len(trees[(src, dst)]),
                         "mean_distance": round(distance[(src, dst)] / c, 6),
                         "layers": " ".join(f"{l}:{k}" for l, k in sorted(layers[(src, dst)].items()))})
        return rows

    def summary(self) -> dict:
        count = len(self.trees)
        depths = [t["depth"] for t in self.trees]
        distances = [e["distance"] for e in self.edges]
        return {
            "trees": count,
            "edges": len(self.edges),
            "mean_edges_per_tree": round(len(self.edges) / count, 6) if count else 0.0,
            "mean_nodes_per_tree": round(sum(t["nodes"] for t in self.trees) / count, 6) if count else 0.0,
            "mean_depth": round(sum(depths) / count, 6) if count else 0.0,
            "max_depth": max(depths, default=0),
            "depth_histogram": {str(k): v for k, v in sorted(Counter(depths).items())},
            "mean_distance": round(sum(distances) / len(distances), 6) if distances else None,
            "root_tokens": dict(Counter(t["root_token"] for t in self.trees).most_common(10)),
            "layers": {str(r["layer"]): {"edges": r["edges"], "mean_distance": r["mean_distance"]}
                       for r in self.layer_rows()},
        }

    # ------------------------------------------------------------------------------ files
    def write(self, directory: str, top_patterns: int = 50, plot: bool = True) -> dict[str, str]:
        os.makedirs(directory, exist_ok=True)
        out = {
            "layer_stats": write_text(os.path.join(directory, "layer_stats.csv"), _csv(self.layer_rows(), [
                "layer", "edges", "edges_per_tree", "trees_with_edges", "mean_distance", "median_distance",
                "mean_score"])),
            "patterns": write_text(os.path.join(directory, "patterns.csv"), _csv(self.pattern_rows(top_patterns), [
                "source_token", "target_token", "count", "trees", "mean_distance", "layers"])),
            "patterns_words": write_text(os.path.join(directory, "patterns_words.csv"), _csv(
                self.pattern_rows(top_patterns, skip_special=True, by="word"),
                ["source_word", "target_word", "count", "trees", "mean_distance", "layers"])),
            "trees": write_text(os.path.join(directory, "trees.csv"), _csv(self.trees, [
                "index", "example_id", "n_tokens", "nodes", "edges", "depth", "root", "root_token", "predicted",
                "label", "text"])),
            "edges": write_text(os.path.join(directory, "edges.csv"), _csv(self.edges, [
                "index", "example_id", "layer", "source", "target", "source_token", "target_token", "source_word",
                "target_word", "distance", "score", "attribution"])),
            "summary": write_json(os.path.join(directory, "tree_stats.json"), self.summary()),
        }
        if plot and self.num_layers:
            out["plot"] = self.plot(os.path.join(directory, "layer_stats.png"))
        return out

    def plot(self, path: str) -> str:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = self.layer_rows()
        layers = [r["layer"] for r in rows]
        fig = Figure(figsize=(9, 3.6))
        FigureCanvasAgg(fig)
        left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        left.bar(layers, [r["edges_per_tree"] for r in rows], color="#3b6ea8")
        left.set_xlabel("layer")
        left.set_ylabel("tree edges per example")
        left.set_title("edges per layer")
        points = [(r["layer"], r["mean_distance"]) for r in rows if r["mean_distance"] != ""]
        if points:
            right.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#d62728")
        right.set_xlabel("layer")
        right.set_ylabel("mean |i - j|")
        right.set_title("interaction distance per layer")
        for ax in (left, right):
            ax.set_xticks(layers)
        fig.suptitle(f"attribution trees: {len(self.trees)} examples, {len(self.edges)} edges", fontsize=10)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        return path


def _median(values: list[int]) -> float:
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
