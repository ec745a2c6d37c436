"""Core value types: an input `Example` and an `Attribution` result.

`Attribution` payload kinds (docs/architecture.md):

- ``matrix``: per layer, per head, token x token, shape ``(L, H, n, n)`` (AttAttr, raw attention);
- ``layer_matrix``: per layer token x token, ``(L, n, n)`` (GlobEnc, ALTI, rollout);
- ``tokens``: one score per token, ``(n,)`` (Grad-SAM, Chefer, gradient x input).

Row ``i`` of a token x token matrix is the query (receiver), column ``j`` the key (source).
Files are safetensors with the metadata as JSON in the header; never pickle.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, asdict
from typing import Any

KINDS = ("matrix", "layer_matrix", "tokens")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Example:
    """One classifier input: a text, an optional second segment, an optional gold label."""

    text: str
    text_pair: str | None = None
    label: int | None = None
    id: str | None = None

    @classmethod
    def coerce(cls, obj: Any) -> "Example":
        """One input as an ``Example``, by the one rule of ``attrtools.inputs.coerce`` (a string, a
        ``(text, text_pair)`` tuple, a dict with ``text`` or guessed columns); ``InputTypeError`` (an
        ``InputDataError`` and a ``TypeError``) for anything else."""
        if isinstance(obj, Example):
            return obj
        from .inputs import coerce

        return coerce(obj)


@dataclass(repr=False)  # the dataclass repr would print every score: see __repr__
class Attribution:
    """The attribution of one example by one method.

    ``scores`` is a float tensor whose layout is given by ``kind`` (see module docstring), cropped
    to the example's own ``n`` tokens (special tokens included, no padding).
    """

    tokens: list[str]
    input_ids: list[int]
    scores: Any  # torch.Tensor; typed loosely so this module imports without torch
    kind: str
    method: str
    params: dict
    target: int | None
    predicted: int
    probs: list[float]
    label: int | None = None
    text: str | None = None
    text_pair: str | None = None
    example_id: str | None = None
    segment_ids: list[int] = field(default_factory=list)
    special_tokens_mask: list[int] = field(default_factory=list)
    # Integrated-gradients methods: how far ``sum(scores)`` is from ``F(x) - F(baseline)``, per
    # layer for AttAttr (lists ``sum``, ``delta``, ``gap``, ``relative_gap``, ``units``, and
    # ``worst_relative_gap`` / ``worst_unit``); None for methods without a completeness property.
    completeness: dict | None = None
    original_length: int | None = None  # tokens before truncation, None if the input was not truncated
    label_names: list[str] = field(default_factory=list)  # class names in id order ([] when generic)
    # the token the classifier reads: 0 = first ([CLS]/<s>); for decoders its index by the model's own
    # last-non-pad rule (architecture.pool_positions); -1 (the last token) in files written before that
    pool_position: int = 0
    # problem_type="multi_label_classification": ``probs`` are a sigmoid per label (attrtools.heads)
    multi_label: bool = False
    # per token [segment, start, end] in the original text (None: special token); [] without a fast
    # tokenizer. What ``word_scores`` aligns with (attrtools.words).
    token_offsets: list = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown attribution kind {self.kind!r}; expected one of {KINDS}")

    # ----------------------------------------------------------------------------- views
    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    def head_importance(self):
        """``(L, H)`` importance of each head: max over all (i, j) of its matrix (Hao et al. 2021, Sec. 4).

        Only defined for ``matrix`` payloads."""
        if self.kind != "matrix" or self.params.get("reduce") == "heads_sum":
            raise ValueError(f"head_importance needs a per-head 'matrix' payload, this one is {self.kind!r}"
                             f"{' with heads summed' if self.kind == 'matrix' else ''}")
        L, H = self.scores.shape[:2]
        return self.scores.reshape(L, H, -1).amax(-1)

    def layer_matrices(self):
        """``(L, n, n)``: heads summed for ``matrix`` (as the AttAttr tree does), as is for ``layer_matrix``."""
        self._check_token_level()
        if self.kind == "matrix":
            return self.scores.sum(1)
        if self.kind == "layer_matrix":
            return self.scores
        raise ValueError("a 'tokens' payload has no token x token matrices")

    def token_scores(self):
        """``(n,)`` one score per token.

        - ``tokens``: the payload itself;
        - ``layer_matrix`` (aggregated methods such as GlobEnc or rollout): the first-token row of
          the last layer, i.e. what the classification position draws from every input token;
        - ``matrix`` (AttAttr, raw attention): heads and layers summed, then summed over query
          rows, i.e. the total attribution flowing out of each key token.
        """
        if self.kind == "tokens":
            return self.scores
        self._check_token_level()
        if self.kind == "layer_matrix":
            return self.scores[-1, self._pool_row()]
        return self.scores.sum((0, 1)).sum(0)

    def _check_token_level(self) -> None:
        """Refuse token-level views of a payload reduced to one number per head (``reduce="head_max"``,
        attrtools.reduction)."""
        if (self.params or {}).get("reduce") == "head_max":
            raise ValueError("this payload keeps one number per head (reduce='head_max'): no token x token matrices")

    def word_scores(self, agg: str = "sum"):
        """``list[words.WordScore]``: ``token_scores()`` aggregated over the words of the original
        text (``agg``: ``"sum"``, ``"max"`` or ``"mean"`` of each word's tokens), special tokens
        excluded; what a word is: ``attrtools.words`` (docs/words.md). Raises
        ``words.WordAlignmentError`` without token offsets (slow tokenizer, old file)."""
        from .words import attribution_word_scores

        return attribution_word_scores(self, agg)

    @property
    def predicted_labels(self) -> list[int]:
        """The predicted labels: those whose probability is above 0.5 for a multi-label head (a
        sigmoid per label), ``[predicted]`` for a single-label head, ``[]`` for a regression head (no
        probabilities stored) (``attrtools.heads``)."""
        from .heads import MULTI_LABEL, predicted_labels

        if self.multi_label:
            return predicted_labels(self.probs, MULTI_LABEL)
        return [self.predicted] if self.probs else []

    def pool_row(self) -> int:
        """Index of the token the classifier reads (``pool_position`` resolved against ``n``)."""
        return self.pool_position if self.pool_position >= 0 else self.n_tokens + self.pool_position

    _pool_row = pool_row  # the old private name

    # ----------------------------------------------------------------------------- display
    def __repr__(self) -> str:
        """One line: method, example, target and prediction, payload kind and shape, tokens, and the
        worst IG completeness gap (relative) when the method has one; never the scores themselves."""
        shape = tuple(getattr(self.scores, "shape", ()))
        parts = [f"method={self.method!r}"]
        if self.example_id is not None:
            parts.append(f"example={self.example_id!r}")
        parts += [f"target={self.target}", f"predicted={self.predicted}", f"kind={self.kind!r}",
                  f"shape={shape}", f"tokens={self.n_tokens}"]
        if self.original_length is not None:
            parts.append(f"truncated_from={self.original_length}")
        gap = (self.completeness or {}).get("worst_relative_gap")
        if gap is not None:
            parts.append(f"completeness_gap={gap:.3g}")
        return f"Attribution({', '.join(parts)})"

    def to_html(self, path: str | os.PathLike | None = None) -> str:
        """A self-contained HTML page: token heat-map with its colour scale, and for ``matrix`` /
        ``layer_matrix`` payloads the interactive layer/head view. Written atomically to ``path``
        when given; returns the HTML."""
        from .report import attribution_page

        page = attribution_page(self)
        if path is not None:
            from .io import write_text

            write_text(os.fspath(path), page)
        return page

    def _repr_html_(self) -> str:
        """Jupyter: the same views as ``to_html`` (no server; scripts inline, and a static picture of
        the summed map where they do not run: untrusted notebooks, previews)."""
        from .report import attribution_html

        return attribution_html(self)

    def show(self):
        """Display in Jupyter/IPython; elsewhere write a temporary HTML file and return its path."""
        return _show(self)

    # ----------------------------------------------------------------------------- export (docs/export.md)
    def plot(self, view: str = "tokens", **options):
        """A matplotlib figure (``.save(path)``: PNG/SVG/PDF by suffix): ``view`` "tokens" (heat-map;
        ``level="token"|"word"``), "heads" (layer × head importance) or "matrix" (one n × n map;
        ``layer``/``head``, default the sums). See ``attrtools.report.plots``."""
        from .report.plots import attribution_figure

        return attribution_figure(self, view, **options)

    def to_ferret(self, explainer: str | None = None):
        """ferret's ``Explanation`` of this attribution (see ``attrtools.export.to_ferret``)."""
        from .export import to_ferret

        return to_ferret(self, explainer)

    def to_bertviz(self):
        """``(attention, tokens)`` for bertviz's ``head_view`` / ``model_view`` (``attrtools.export``)."""
        from .export import to_bertviz

        return to_bertviz(self)

    # ----------------------------------------------------------------------------- I/O
    def metadata(self) -> dict:
        meta = asdict(self)
        meta.pop("scores")
        meta["format_version"] = FORMAT_VERSION
        return meta

    def save(self, path: str | os.PathLike) -> str:
        """Write one safetensors file (atomically: temporary name, then rename)."""
        from safetensors.torch import save_file

        from .io import atomic_path

        path = os.fspath(path)
        meta = {"attrtools": json.dumps(self.metadata(), sort_keys=True)}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({"scores": self.scores.detach().cpu().contiguous()}, tmp, metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Attribution":
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("attrtools")
            if raw is None:
                raise ValueError(f"{path} is not an attrtools attribution file (no 'attrtools' metadata)")
            scores = f.get_tensor("scores")
        meta = json.loads(raw)
        if "pool_position" not in meta:  # written before pool_position was a field: it rode in params
            meta["pool_position"] = (meta.get("params") or {}).pop("_pool_position", 0)
        version = meta.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"{path} has attribution format {version}, this attrtools reads {FORMAT_VERSION}")
        return cls(scores=scores, **meta)


class Attributions(list):
    """A list of ``Attribution`` that shows as one summary table in Jupyter (text, prediction, top
    tokens and a small heat-map per row); ``to_html(path)`` writes the same as a page."""

    def __repr__(self) -> str:
        """The first few results, one ``Attribution`` repr a line (never the scores)."""
        shown = [f"  {a!r}," for a in self[:5]]
        more = [f"  ... and {len(self) - 5} more"] if len(self) > 5 else []
        return "Attributions([\n" + "\n".join(shown + more) + "\n])" if self else "Attributions([])"

    def _report(self):
        from .report import summary_report

        return summary_report(self)

    def _repr_html_(self) -> str:
        return self._report()._repr_html_()

    def to_html(self, path: str | os.PathLike | None = None) -> str:
        page = self._report().to_html()
        if path is not None:
            from .io import write_text

            write_text(os.fspath(path), page)
        return page

    def show(self):
        return _show(self)

    def plot(self, view: str = "tokens", **options):
        """A matplotlib figure of the list: "tokens" (every heat-map stacked on one scale) or "heads"
        (mean layer × head importance). See ``attrtools.report.plots``."""
        from .report.plots import attributions_figure

        return attributions_figure(self, view, **options)

    def to_dataframe(self, level: str = "token"):
        """A pandas DataFrame, one row per token (the columns of ``token_scores.csv``) or per word."""
        from .export import to_dataframe

        return to_dataframe(self, level)

    def stack(self, pad: float = 0.0, view: str = "tokens"):
        """``(values, mask, lengths)``: one padded tensor of the list (see ``attrtools.export.stack``)."""
        from .export import stack

        return stack(self, pad, view)


def _show(obj):
    """IPython's ``display`` when a shell is running, else a temporary HTML file (path returned)."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(HTML(obj._repr_html_()))
        return None
    import tempfile

    handle, path = tempfile.mkstemp(prefix="attrtools-", suffix=".html")
    os.close(handle)
    obj.to_html(path)
    print(f"attrtools: view written to {path}")
    return path
