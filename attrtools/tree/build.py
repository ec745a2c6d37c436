"""The AttAttr attribution tree (Hao, Dong, Wei, Xu; AAAI 2021, §5 "Attribution tree").

The paper extracts, per layer, the *salient* token-to-token dependencies of an example's
self-attention attribution and assembles them, from the top layer down, into a tree rooted at
the top of the network: an edge ``i -> j`` at layer ``l`` means "query token ``i`` takes
information from key token ``j`` in layer ``l``". The spec is the official code
(YRdddream/attattr, ``examples/attribution_tree.py``), restated here and in docs/methods.md ("Attribution trees").

Algorithm (``build_tree``), for one example with AttAttr scores ``Attr^l_h`` (``L`` layers):

1. Heads summed: ``M^l = Σ_h Attr^l_h`` (``Attribution.layer_matrices()``), shape ``(L, n, n)``.
2. Per-layer normalisation by the largest entry *outside the [CLS] row*:
   ``P^l = M^l / |max_{i≠cls, j} M^l[i, j]|`` (the author, issue #9: "[CLS] is the root of the
   attribution tree so we only consider its interactions with other tokens in the last layer").
3. Threshold ``τ`` (0.4): an entry is salient iff ``P^l[i, j] > τ``.
4. Root. ``root="top"`` (the official code, **our default**): the top token maximises
   ``Σ_j S[i, j]`` over ``i ≠ cls``, where ``S = Σ_l M^l`` (all ``L`` layers, as in the code) with
   the diagonal, the negative entries and the [CLS] row set to 0. ``root="cls"`` (the paper and
   the author's description in issue #9: "[CLS] is the root ... we only consider its interactions
   with other tokens in the last layer"): the root is [CLS] itself.
5. Top layer ``t``: ``L-2`` in the code, which never uses the last layer index ``L-1``
   (``use_last_layer=True`` gives ``t = L-1``; the default ``None`` means False for ``root="top"``
   and True for ``root="cls"``, following the author's "in the last layer"): an edge
   ``root -> j`` for every ``j ≠ root`` with ``P^t[root, j] > τ``; these ``j`` become *leaves*, the
   root becomes *fixed* if it got a child. With ``root="cls"`` the root row is normalised by its
   own ``|max_{j≠cls} M^t[cls, j]|`` (the step-2 normaliser leaves that row out by construction).
6. For ``l = t-1 .. 0``, queries ``i ≠ cls`` ascending, keys ``j`` ascending, with
   ``P^l[i, j] > τ`` — the states are read and changed as the loop goes, exactly as in the code:
   skip if ``i`` is not in the tree or ``j`` is fixed or the edge exists or both are leaves or
   ``i`` is fixed and ``j`` a leaf; if ``i`` is a leaf and ``j`` new: edge ``i -> j``, ``i``
   becomes fixed, ``j`` a leaf; if ``i`` is fixed and ``j`` new: edge ``i -> j``, ``j`` a leaf.
   (So a node can only be reached once: the result is an arborescence rooted at the root.)

Why the code skips the last layer (our reading): in a [CLS]-pooled classifier only the [CLS] row
of the last layer reaches the output, so every other row of ``M^{L-1}`` is exactly 0 and the
step-2 normaliser of that layer is 0. With ``root="top"`` and ``use_last_layer=True`` the last
layer therefore adds no edge (a zero normaliser gives no salient entry); with ``root="cls"`` it
is the layer that holds [CLS]'s interactions, hence the own-row normaliser above.

Deviations from the official code (deliberate, all documented):

- **Heights.** The code's node heights are a plotting artefact (the root at 11/12, the root's
  children left at 0, children of fixed nodes at ``min(height_list)``). Here each node records
  ``layer``, the layer of the edge through which it joined (the root: ``t + 1``), ``height =
  layer / L`` (so the root is at 11/12 for BERT-base like in the code) and ``depth``, its hop
  count from the root. Pictures place a node at ``(position, layer)``.
- **Scores kept.** The code keeps no scores; every edge here carries ``layer``, ``score`` (the
  normalised ``P^l[i, j]``), ``attribution`` (the raw head-summed ``M^l[i, j]``) and ``distance``
  ``|i - j|``.
- **Strict threshold for every τ.** The code masks ``P * (P > τ)`` and then skips ``P < τ``, so
  for ``τ ≤ 0`` the zeroed entries pass; here an entry counts iff ``P > τ`` for every ``τ``
  (identical for the default 0.4 and any ``τ > 0``).
- **Degenerate layers.** A layer whose normaliser is 0 (or not finite) has no salient entries
  (the code would divide by zero). The top-token score is not divided by its max (a positive
  scale does not change the ranking); ties go to the highest position, as the code's
  ``argsort(...)[::-1]`` does for short rows.
- **Any L and any [CLS] position.** ``t`` is computed from ``L`` (not hard-coded 10), and the
  excluded row is ``cls_index`` (0 for encoders; an ``Attribution`` of a decoder classifier
  passes its pooled position, the last token). ``use_last_layer=False`` needs ``L ≥ 2``.
- The [CLS] row is never a query below the top layer (the code's ``i_token`` starts at 1);
  [CLS] can still be a key (a leaf), as in the code.
- Tokens not reached are left out of the graph (the code drops isolates before drawing).
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputDataError, ParameterError
from .config import DEFAULT_THRESHOLD

ROOTS = ("top", "cls")
NEW, LEAF, FIXED = -1, 0, 1  # the official code's fixed_list states


def _as_array(matrices) -> np.ndarray:
    if hasattr(matrices, "detach"):  # torch tensor, without importing torch here
        matrices = matrices.detach().cpu().double().numpy()
    array = np.asarray(matrices, dtype=np.float64)
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise ValueError(f"attribution tree needs (L, n, n) layer matrices, got shape {tuple(array.shape)}")
    if array.shape[2] < 2:
        raise InputDataError("attribution tree needs at least 2 tokens")
    if not np.all(np.isfinite(array)):
        raise ValueError("layer matrices contain NaN or infinite values")
    return array


def normalise_layers(matrices, cls_index: int = 0) -> np.ndarray:
    """``P^l = M^l / |max over rows ≠ cls_index of M^l|`` per layer (zeros where that max is 0)."""
    m = _as_array(matrices)
    keep = np.ones(m.shape[1], dtype=bool)
    keep[cls_index] = False
    denominators = np.abs(m[:, keep, :].reshape(m.shape[0], -1).max(-1))
    out = np.zeros_like(m)
    ok = denominators > 0
    out[ok] = m[ok] / denominators[ok, None, None]
    return out


def top_token(matrices, cls_index: int = 0) -> int:
    """The official root: the token (≠ [CLS]) with the largest positive off-diagonal row sum of ``Σ_l M^l``."""
    m = _as_array(matrices)
    s = m.sum(0)
    np.fill_diagonal(s, 0.0)
    s = np.where(s > 0, s, 0.0)
    s[cls_index] = 0.0
    totals = s.sum(-1)
    candidates = [i for i in range(len(totals)) if i != cls_index]
    best = max(totals[i] for i in candidates)
    return max(i for i in candidates if totals[i] == best)  # ties: highest position, like argsort()[::-1]


def build_tree(matrices, tokens: Sequence[str] | None = None, threshold: float = DEFAULT_THRESHOLD,
               root: str | int = "top", use_last_layer: bool | None = None, cls_index: int = 0,
               special_tokens_mask: Sequence[int] | None = None, graph_attributes: dict | None = None,
               words: Sequence[str | None] | None = None):
    """The attribution tree of one example as an ``nx.DiGraph`` (algorithm and deviations: module docstring).

    Args:
        matrices: ``(L, n, n)`` head-summed attribution (numpy array or torch tensor); row = query.
        tokens: the ``n`` token strings (default ``"t0", "t1", ...``).
        threshold: ``τ``; an entry is salient iff its normalised value is ``> τ``.
        root: ``"top"`` (official code, default), ``"cls"`` (the author's description), or a position.
        use_last_layer: start at layer ``L-1`` instead of the code's ``L-2``.
        cls_index: the [CLS]/pooled position excluded from the normaliser and from the queries below the top.
        special_tokens_mask: optional 0/1 per token, stored as the node attribute ``is_special``.
        words: optional per token the word of the original text holding it (``words.token_words``;
            None for special tokens), stored as the node attribute ``word`` (default: the token).
        graph_attributes: extra scalar graph attributes (example id, text, predicted class, ...).

    Node ids are token positions (int). Node attributes: ``token``, ``position``, ``layer``,
    ``height``, ``depth``, ``is_root``, ``fixed`` (it has children), ``is_special``. Edge
    attributes: ``layer``, ``score``, ``attribution``, ``distance``, ``order``. Graph attributes:
    ``root``, ``root_mode``, ``threshold``, ``use_last_layer``, ``num_layers``, ``top_layer``,
    ``n_tokens``, ``cls_index``, ``tokens`` (all ``n`` tokens as a JSON string) and ``graph_attributes``.
    """
    m = _as_array(matrices)
    num_layers, n, _ = m.shape
    cls_index = cls_index % n
    tokens = _check_tokens(tokens, special_tokens_mask, n)
    if use_last_layer is None:
        use_last_layer = root == "cls"
    if not use_last_layer and num_layers < 2:
        raise ParameterError("the official tree starts at layer L-2, which needs L >= 2 layers; "
                         "use use_last_layer=True (--use-last-layer) for a 1-layer model")
    threshold = float(threshold)
    top_layer = num_layers - 1 if use_last_layer else num_layers - 2
    root_index = _root_index(m, root, cls_index)
    salient = normalise_layers(m, cls_index)
    if root_index == cls_index:
        # The usual normaliser leaves the [CLS] row out (and is exactly 0 in the last layer of a
        # [CLS]-pooled classifier, whose other rows feed nothing): the root row is normalised by its own max.
        row = m[top_layer, root_index]
        others = np.delete(row, root_index)
        scale = abs(others.max()) if others.size else 0.0
        salient[top_layer, root_index] = row / scale if scale > 0 else 0.0
    state, joined, edges = _grow(salient > threshold, root_index, top_layer, cls_index)
    graph = _graph(m, salient, tokens, root_index, (state, joined, edges), words, special_tokens_mask)
    graph.graph.update({
        "root": root_index, "root_mode": root if isinstance(root, str) else "position",
        "threshold": threshold, "use_last_layer": bool(use_last_layer), "num_layers": num_layers,
        "top_layer": top_layer, "n_tokens": n, "cls_index": cls_index, "tokens": json.dumps(tokens),
    })
    for key, value in (graph_attributes or {}).items():
        if value is not None:
            graph.graph[key] = value
    return graph


def _check_tokens(tokens, special_tokens_mask, n: int) -> list[str]:
    """The ``n`` token strings (default ``t0, t1, ...``); ``ValueError`` when a list has another length."""
    tokens = [str(t) for t in tokens] if tokens is not None else [f"t{i}" for i in range(n)]
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} tokens for {n}x{n} matrices")
    if special_tokens_mask is not None and len(special_tokens_mask) != n:
        raise ValueError(f"special_tokens_mask has {len(special_tokens_mask)} entries for {n} tokens")
    return tokens


def _root_index(m, root, cls_index: int) -> int:
    """The root position: ``top`` (official), ``cls``, or a position (``ParameterError`` otherwise)."""
    n = m.shape[-1]
    if root == "top":
        return top_token(m, cls_index)
    if root == "cls":
        return cls_index
    if isinstance(root, (int, np.integer)) and not isinstance(root, bool) and -n <= root < n:
        return int(root) % n
    raise ParameterError(f"root must be 'top', 'cls' or a token position in [0, {n}), got {root!r}")


def _grow(mask, root_index: int, top_layer: int, cls_index: int):
    """The official assembly, top layer down: the root's salient tokens at ``top_layer``, then at each
    lower layer every new token a joined (non-[CLS]) token depends on is attached below it. Returns
    ``(state per token, layer each node joined at, edges (i, j, layer) in the order added)``."""
    n = mask.shape[-1]
    state = [NEW] * n
    joined = {root_index: top_layer + 1}
    edges: list[tuple[int, int, int]] = []  # (i, j, layer), in the order the code adds them
    seen: set[tuple[int, int]] = set()

    state[root_index] = LEAF
    for j in np.flatnonzero(mask[top_layer, root_index]):
        j = int(j)
        if j == root_index:
            continue
        state[j] = LEAF
        state[root_index] = FIXED
        joined[j] = top_layer
        edges.append((root_index, j, top_layer))
        seen.add((root_index, j))

    for layer in range(top_layer - 1, -1, -1):
        for i in range(n):
            if i == cls_index or state[i] == NEW:
                continue
            for j in np.flatnonzero(mask[layer, i]):
                j = int(j)
                if state[j] == FIXED or (i, j) in seen:
                    continue
                if state[j] == LEAF:  # (leaf, leaf) and (fixed, leaf) are both skipped
                    continue
                # j is new: attach it below i
                if state[i] == LEAF:
                    state[i] = FIXED
                state[j] = LEAF
                joined[j] = layer
                edges.append((i, j, layer))
                seen.add((i, j))
    return state, joined, edges


def _graph(m, salient, tokens, root_index: int, grown, words, special_tokens_mask):
    """The ``nx.DiGraph`` of the tree ``grown`` by ``_grow`` with its node and edge attributes (see
    ``build_tree``)."""
    import networkx as nx

    state, joined, edges = grown
    num_layers = m.shape[0]
    graph = nx.DiGraph()
    depth = {root_index: 0}
    for i, j, _ in edges:
        depth[j] = depth[i] + 1
    for node in sorted(joined):
        graph.add_node(node, token=tokens[node], position=node, layer=joined[node],
                       word=str(words[node]) if words is not None and words[node] is not None else tokens[node],
                       height=joined[node] / num_layers, depth=depth[node], is_root=node == root_index,
                       fixed=state[node] == FIXED,
                       is_special=bool(special_tokens_mask[node]) if special_tokens_mask is not None else False)
    for order, (i, j, layer) in enumerate(edges):
        graph.add_edge(i, j, layer=layer, score=float(salient[layer, i, j]), attribution=float(m[layer, i, j]),
                       distance=abs(i - j), order=order)
    return graph


def tree_from_attribution(attribution, threshold: float = DEFAULT_THRESHOLD, root: str | int = "top",
                          use_last_layer: bool | None = None):
    """``build_tree`` on an ``Attribution`` (AttAttr ``matrix`` payload: heads summed; or a ``layer_matrix``).

    The example's text, id, predicted/target/gold class and method parameters become graph attributes.
    """
    cls_index = attribution.pool_row()
    probs = attribution.probs or []
    attributes = {
        "example_id": attribution.example_id, "text": attribution.text, "text_pair": attribution.text_pair,
        "method": attribution.method, "predicted": attribution.predicted, "target": attribution.target,
        "label": attribution.label,
        "confidence": float(probs[attribution.predicted]) if 0 <= attribution.predicted < len(probs) else None,
        "steps": attribution.params.get("steps"),
        "label_names": json.dumps(list(getattr(attribution, "label_names", None) or [])),
    }
    from ..words import token_words

    return build_tree(attribution.layer_matrices(), attribution.tokens, threshold=threshold, root=root,
                      use_last_layer=use_last_layer, cls_index=cls_index,
                      special_tokens_mask=attribution.special_tokens_mask or None, graph_attributes=attributes,
                      words=token_words(attribution))


def build_trees(engine, examples: Iterable, threshold: float = DEFAULT_THRESHOLD, root: str | int = "top",
                use_last_layer: bool | None = None, steps: int | str = "auto", target="pred", **params):
    """Trees for many examples through an ``attrtools.engine.Engine`` (AttAttr, cached like every tool).

    Returns ``(trees, attributions)``, both in input order. ``target`` defaults to the predicted
    class (the official tree protocol); ``steps`` is the IG step count (the code's tree uses 64).
    The attributions have their heads summed (``reduce="heads_sum"``, attrtools.reduction: what the
    tree reads, and what the cache then stores); pass ``reduce=None`` for the per-head matrices.
    """
    params.setdefault("reduce", "heads_sum")  # the tree reads heads summed: L·n² numbers cached, not L·H·n²
    attributions = engine.attribute(list(examples), method="attattr", target=target, steps=steps, **params)
    trees = [tree_from_attribution(a, threshold=threshold, root=root, use_last_layer=use_last_layer)
             for a in attributions]
    return trees, attributions
