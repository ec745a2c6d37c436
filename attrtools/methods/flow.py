"""Attention flow (Abnar & Zuidema, ACL 2020, "Quantifying Attention Flow in Transformers").

The layers form a DAG with ``(L+1)·n`` nodes (node ``(l, i)``: token i after l layers); an edge
from ``(l, i)`` to ``(l-1, j)`` has capacity ``Ã^l[i, j]`` with ``Ã^l = (mean_h A^l + I)/rowsum``
(the rollout matrices). The score of input token ``j`` is the maximum flow from the pooling node
``(L, p)`` ([CLS] for encoders, the last real token for decoders) to the input node ``(0, j)``;
the vector is then divided by its sum, as in the official ``compute_flows``.

Solvers: ``solver="scipy"`` (default: ``scipy.sparse.csgraph.maximum_flow`` on capacities
scaled by ``scale`` = 1e9 and rounded to integers, within scipy's int32 capacities since every
capacity is at most 1; the rounding moves a flow by at most 5e-10 per edge of its minimum cut,
and the scores equal networkx's to 1e-6, tested) or ``"networkx"`` (the official solver:
``nx.maximum_flow_value`` with ``edmonds_karp``; about 17x slower, kept for reproducing it).
Output kind ``tokens``: only the pooling row is computed (the official code solves
every node of every layer, ``n²·L`` max-flows; the pooling row is what every paper reports).
Cost: ``n`` max-flow solves per example over a graph of ``L·n²`` edges; class-agnostic.

Long inputs are capped, before anything runs (``check_lengths``, called by the engine on the
whole job): the cost grows about as ``n^3.5`` (networkx: 5 s at 16 tokens, about a minute at 32 on
one contended CPU core; scipy: 3 s at 128 tokens, so about two minutes per example at 512). An
input longer than ``max_tokens`` (default :data:`MAX_TOKENS` per solver) is refused in one line
naming its length, the cap and the ways out (``solver="scipy"``, a shorter ``--max-length``,
``rollout``, or a larger ``max_tokens``). ``max_tokens`` never changes a result, so cache keys
leave it out (``engine.VOLATILE_PARAMS``).
"""
from __future__ import annotations

import numpy as np
import torch

from . import register
from ..errors import ParameterError
from .base import Batch, Method, Choice, Float, Int
from .shared import pool_rows, residual_attention


#: Default longest input per solver (tokens): a few minutes per example at most on one CPU core.
MAX_TOKENS = {"networkx": 48, "scipy": 256}


def _flow_networkx(capacities: np.ndarray, source_row: int) -> np.ndarray:
    import networkx as nx
    from networkx.algorithms.flow import edmonds_karp

    layers, n, _ = capacities.shape
    graph = nx.DiGraph()
    for l in range(layers, 0, -1):  # edges from layer l (upper) to layer l-1
        cap = capacities[l - 1]
        for i in range(n):
            for j in range(n):
                if cap[i, j] > 0:
                    graph.add_edge((l, i), (l - 1, j), capacity=float(cap[i, j]))
    source = (layers, source_row)
    flows = np.zeros(n)
    for j in range(n):
        if graph.has_node((0, j)) and graph.has_node(source):
            flows[j] = nx.maximum_flow_value(graph, source, (0, j), flow_func=edmonds_karp)
    return flows


def _flow_scipy(capacities: np.ndarray, source_row: int, scale: float) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    layers, n, _ = capacities.shape
    size = (layers + 1) * n
    rows, cols, vals = [], [], []
    for l in range(layers, 0, -1):
        scaled = np.rint(capacities[l - 1] * scale).astype(np.int64)
        i, j = np.nonzero(scaled)
        rows.append(l * n + i)
        cols.append((l - 1) * n + j)
        vals.append(scaled[i, j])
    graph = csr_matrix((np.concatenate(vals).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(size, size))
    source = layers * n + source_row
    return np.array([maximum_flow(graph, source, j).flow_value / scale for j in range(n)])


def flow_values(capacities: torch.Tensor, source_row: int, solver: str = "scipy", scale: float = 1e9):
    """Unnormalised max-flow from the top node ``source_row`` to each input token: ``(n,)``."""
    caps = capacities.detach().cpu().double().numpy()
    if solver == "networkx":
        values = _flow_networkx(caps, source_row)
    elif solver == "scipy":
        if scale * 1.0 > 2 ** 31 - 1:
            raise ValueError("scale too large for scipy's int32 capacities")
        values = _flow_scipy(caps, source_row, scale)
    else:
        raise ValueError(f"solver must be 'networkx' or 'scipy', got {solver!r}")
    return torch.tensor(values, dtype=torch.float32)


@register
class AttentionFlow(Method):
    name = "flow"
    title = "Attention flow"
    paper = "Abnar, Zuidema. Quantifying Attention Flow in Transformers. ACL 2020"
    kind = "tokens"
    signed = False
    target = "none"
    defaults = {"solver": "scipy", "scale": 1e9, "max_tokens": None}
    schema = {"solver": Choice("networkx", "scipy"), "scale": Float(above=0), "max_tokens": Int(min=1, none=True)}
    invariant = "each input's flow <= min cut capacities (<= 1); normalised vector sums to 1; solvers agree"

    def check_lengths(self, model, lengths, **params):
        """Refuse (``ParameterError``, one line) a job holding an input longer than the solver's cap
        (``max_tokens``, default :data:`MAX_TOKENS`), before any of it runs."""
        params = self.params(**params)
        cap = params["max_tokens"] or MAX_TOKENS[params["solver"]]
        longest = max(lengths, default=0)
        if longest > cap:
            other = "" if params["solver"] == "scipy" else \
                f"solver='scipy' (up to {MAX_TOKENS['scipy']} tokens by default, much faster), "
            raise ParameterError(
                f"flow: an input of {longest} tokens exceeds the cap of {cap} tokens for solver "
                f"{params['solver']!r} ({longest} max-flow solves over {longest}² edges per layer; the cost grows "
                f"about as n^3.5); use {other}a shorter --max-length, the rollout method, or raise max_tokens")

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        self.check_lengths(model, batch.lengths, **params)
        out = []
        rows = pool_rows(model, batch.lengths, batch.inputs["input_ids"])
        for caps, row in zip(residual_attention(model, batch), rows):
            values = flow_values(caps, row, params["solver"], params["scale"])
            total = values.sum()
            out.append((values / total if total > 0 else values).to(caps.device))
        return out
