"""The method interface and the batch every method receives.

A method is one small class: its name, paper, output kind, target convention, default params,
and ``compute(model, batch, **params)``, which returns one tensor per example cropped to that
example's length. Methods whose work splits by layer (AttAttr) declare ``units`` so the engine
can cache and resume per (example, layer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import ParameterError, UnsupportedArchitecture  # noqa: F401  (re-exported: the old import paths)
from ..heads import is_multi_label, probabilities
from ..errors import OneOutputError  # noqa: F401  (re-exported: raised by target_score)


@dataclass
class Batch:
    """A padded batch of tokenized examples (right padding), ready for ``model(**inputs)``.

    ``targets[b]``: the class whose score is explained (already resolved from predicted/gold);
    ``logits``: clean-input logits (B, C), computed by the engine with no gradient.
    """

    inputs: dict
    lengths: list[int]
    targets: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    labels: list = field(default_factory=list)
    info: list = field(default_factory=list)  # per example: a dict a method may fill (e.g. completeness)

    def __post_init__(self):
        if not self.info:
            self.info = [{} for _ in self.lengths]

    @property
    def size(self) -> int:
        return len(self.lengths)

    @property
    def max_length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    def select(self, rows) -> dict:
        """Model inputs for the given rows (a LongTensor of row indices, repeats allowed)."""
        return {name: value[rows] for name, value in self.inputs.items()}


_NUMBER = (int, float)


@dataclass(frozen=True)
class Param:
    """The schema of one method parameter: its type (``"int"``, ``"float"``, ``"choice"``,
    ``"bool"``), inclusive bounds, the allowed values of a choice, and whether ``None`` (the
    method's own default) is allowed. Build with ``Int``, ``Float``, ``Choice``, ``Bool``."""

    type: str
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    none: bool = False
    above: float | None = None  # exclusive lower bound (floats)

    def describe(self) -> str:
        if self.type == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {"int": "an integer", "float": "a finite number", "bool": "true or false"}[self.type]
            if self.min is not None and self.max is not None:
                text += f" from {self.min} to {self.max}"
            elif self.min is not None:
                text += f" >= {self.min}"
            if self.above is not None:
                text += f" > {self.above}"
            if self.max is not None and self.min is None:
                text += f" <= {self.max}"
        return text + (" (or null for the default)" if self.none else "")

    def valid(self, value) -> bool:
        if value is None:
            return self.none
        if self.type == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if self.type == "bool":
            return type(value) is bool
        if isinstance(value, bool) or not isinstance(value, _NUMBER):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        if self.type == "float" and not math.isfinite(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max) and \
            (self.above is None or value > self.above)


def Int(min=None, max=None, none=False) -> Param:
    return Param("int", min=min, max=max, none=none)


def Float(min=None, max=None, above=None, none=False) -> Param:
    return Param("float", min=min, max=max, above=above, none=none)


def Choice(*choices, none=False) -> Param:
    return Param("choice", choices=tuple(choices), none=none)


def Bool(none=False) -> Param:
    return Param("bool", none=none)


TARGET_KIND = Choice("prob", "logit")
INTERNAL_BATCH = Int(min=1, none=True)  # rows per pass; None = the method's own default


#: Parameter spellings of the peers, accepted as aliases where the method has the parameter: Captum's
#: ``IntegratedGradients.attribute(n_steps=...)`` and inseq's ``n_steps`` are attrtools' ``steps``.
PARAMETER_ALIASES = {"n_steps": "steps"}


class Method:
    """Base class. Subclasses set the class attributes and implement ``compute``.

    ``defaults`` and ``schema`` together declare the parameters: every default has a ``Param``
    in ``schema`` (type, range, choices), and ``params(**given)`` checks every value against it,
    so nothing is computed (or cached) with a value that cannot be right."""

    name: ClassVar[str]
    title: ClassVar[str]  # human name
    paper: ClassVar[str]  # citation
    kind: ClassVar[str]  # "matrix" | "layer_matrix" | "tokens"
    # What the explanation is of: "prob", "logit" (of the target class) or "none" (class-agnostic).
    # A method with a ``target_kind`` parameter declares its default there only; ``target`` follows it.
    target: ClassVar[str]
    defaults: ClassVar[dict] = {}
    schema: ClassVar[dict] = {}  # name -> Param, one per default
    invariant: ClassVar[str] = ""  # the property the tests check, one line
    signed: ClassVar[bool] = True  # False: non-negative shares (drawn with a sequential colour map from 0)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("defaults", {}).get("target_kind")
        if kind is not None:
            if "target" in cls.__dict__ and cls.__dict__["target"] != kind:
                raise TypeError(f"{cls.__name__}: target {cls.__dict__['target']!r} contradicts target_kind {kind!r}")
            cls.target = kind

    def params(self, **given) -> dict:
        """The defaults updated with ``given``, every value checked against ``schema``; raises
        ``ParameterError`` (one line naming the method and the parameter)."""
        given = dict(given)
        reduce = given.pop("reduce", None)  # attrtools.reduction: a declared reduction of the payload
        for alias, name in PARAMETER_ALIASES.items():  # the peers' spellings (Captum, inseq: n_steps)
            if alias in given and name in self.defaults:
                if name in given:
                    raise ParameterError(f"method {self.name!r}: give {name!r} or its alias {alias!r}, not both")
                given[name] = given.pop(alias)
        unknown = set(given) - set(self.defaults)
        if unknown:
            from ..errors import did_you_mean

            takes = ", ".join(sorted(self.defaults)) or "no parameters"
            raise ParameterError(
                f"method {self.name!r} got unknown parameter(s) {', '.join(sorted(unknown))}; it takes {takes}"
                f"{did_you_mean(sorted(unknown), self.defaults)}")
        merged = dict(self.defaults)
        merged.update(given)
        for name, value in merged.items():
            spec = self.schema.get(name)
            if spec is not None and not spec.valid(value):
                shown = repr(value)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise ParameterError(f"method {self.name!r}: parameter {name!r} must be {spec.describe()}, got {shown}")
        self.check_params(merged)
        if reduce is not None:  # only when asked: the keys of unreduced results stay as they were
            from ..reduction import check

            check(self.kind, self.name, reduce)
            merged["reduce"] = reduce
        return merged

    def check_params(self, params: dict) -> None:
        """Checks across parameters (raise ``ParameterError``); each value alone is already valid."""

    def needs_target(self, params: dict) -> bool:
        return self.target != "none"

    def units(self, model, params: dict) -> list[int] | None:
        """Independent pieces of the payload along dim 0 (e.g. layers), or None for one piece."""
        return None

    def check_model(self, model) -> None:
        """Raise a clear error if this method cannot run on ``model``'s architecture.

        The base check asks the model's adapter (``adapters.Adapter.refuses``); methods with their own
        requirements extend it (and call ``super().check_model``)."""
        from ..adapters import adapter_for

        reason = adapter_for(model).refusal(self.name)
        if reason:
            raise UnsupportedArchitecture(
                f"{self.name} does not apply to model_type {adapter_for(model).model_type!r}: {reason}")

    def compute(self, model, batch: Batch, units: list[int] | None = None, **params) -> list[torch.Tensor]:
        """The attribution payload of every example of ``batch``; called by the engine only.

        Args:
            model: a classifier from ``attrtools.load_model`` (eval mode; parameters are not
                trained: methods take gradients with respect to activations only).
            batch: ``Batch`` of ``B`` right-padded examples: ``inputs`` (``input_ids`` and
                ``attention_mask`` ``(B, n_max)``, ``token_type_ids`` when the model uses them),
                ``lengths`` (real tokens per example), ``targets`` ``(B,)`` class indices already
                resolved from "pred"/"gold" (None when ``target == "none"``) and the clean
                ``logits`` ``(B, C)``.
            units: for methods that declare ``units`` (AttAttr: layers), the units to compute,
                in order; None: all of them.
            **params: the parameters, already merged with ``defaults`` and checked against
                ``schema`` by ``params()``.

        Returns one float tensor per example, cropped to its own ``n = lengths[b]`` tokens, in
        the layout of ``kind``: ``matrix`` ``(L, H, n, n)``, ``layer_matrix`` ``(L, n, n)``,
        ``tokens`` ``(n,)`` (with ``units``: the unit axis first, one entry per unit given).
        Units of the scores are the method's own (probability or logit differences for
        gradient methods, attention mass or norms for decompositions); see each method's module.

        Raises ``UnsupportedArchitecture`` (from ``check_model``) when the method does not apply
        to the model; the engine's out-of-memory back-off relies on a ``RuntimeError`` from torch
        propagating unchanged. Sources: the ``paper`` of each method.
        """
        raise NotImplementedError

    def is_signed(self, params: dict) -> bool:
        """Whether scores computed with ``params`` can be negative (a diverging colour map around 0)
        or are non-negative shares (a sequential one from 0). Methods with an ``aggregate``
        parameter over the hidden dimension (gradient x input, IG) are signed when they sum and
        unsigned when they take the L2 norm; otherwise the class's ``signed``."""
        aggregate = params.get("aggregate", self.defaults.get("aggregate"))
        if aggregate is not None:
            return aggregate == "sum"
        return self.signed

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "paper": self.paper, "kind": self.kind,
                "target": self.target, "defaults": dict(self.defaults), "invariant": self.invariant,
                "schema": {name: spec.describe() for name, spec in self.schema.items()},
                "signed": self.signed}


def require_post_ln(model, method: str) -> None:
    """GlobEnc and DecompX decompose LayerNorm *after* the residual (post-LN blocks); no published
    extension of either covers pre-LN blocks, so pre-LN models are refused, naming what works there."""
    from ..adapters import adapter_for

    adapter = adapter_for(model)
    if adapter.pre_norm:
        instead = "alti (pre-LN ALTI)" + (" and alti_logit (its logit variant)" if adapter.pooling == "last_non_pad"
                                          else "")
        raise UnsupportedArchitecture(
            f"{method} decomposes post-LayerNorm encoder blocks (BERT-like encoders, DistilBERT); "
            f"model_type {adapter.model_type!r} is pre-LN (its norms sit before attention and FFN), and no published "
            f"extension of {method} to pre-LN blocks exists; {instead} explain this model")


def crop(tensor: torch.Tensor, length: int, dims: tuple[int, ...]) -> torch.Tensor:
    """Crop the given token dims of one example's payload to its real length."""
    index = [slice(None)] * tensor.dim()
    for d in dims:
        index[d] = slice(0, length)
    return tensor[tuple(index)].contiguous()


def target_score(logits: torch.Tensor, targets: torch.Tensor, kind: str, head=None) -> torch.Tensor:
    """(B,) the scalar that is explained: class probability (AttAttr) or logit (Chefer, Grad-SAM).

    ``head``: the model (or its config), whose head kind decides what a probability is
    (``attrtools.heads.probabilities``: softmax for single-label heads, a sigmoid per label for
    ``problem_type="multi_label_classification"``); None: single-label.
    A model with one output (``num_labels=1``: a regressor or a single-logit scorer) has no class
    probability (the softmax over one output is constantly 1, whose attribution is all zeros), so
    ``kind="prob"`` raises ``OneOutputError`` there; ``kind="logit"`` explains the raw output."""
    if kind in ("prob", "probability") and logits.shape[-1] == 1 and not (head is not None and is_multi_label(head)):
        raise OneOutputError(
            "this model has a single output (num_labels=1): its softmax probability is always 1 and every "
            "attribution of it would be 0; explain the raw output instead (target_kind='logit', e.g. "
            "--param target_kind=logit)")
    if kind in ("prob", "probability"):
        probs = probabilities(logits, head if head is not None else _SINGLE_LABEL, "the target probability")
        return probs.gather(1, targets.view(-1, 1)).squeeze(1)
    if kind == "logit":
        return logits.float().gather(1, targets.view(-1, 1)).squeeze(1)
    raise ValueError(f"target_kind must be 'prob' or 'logit', got {kind!r}")


class _SingleLabel:  # the head assumed when target_score is given none
    problem_type = "single_label_classification"
    num_labels = 2


_SINGLE_LABEL = _SingleLabel()


def completeness_record(attributed: float, delta: float) -> dict:
    """How far an integrated-gradients result is from completeness (``sum = F(x) - F(baseline)``).

    ``gap = |sum - delta|``; ``relative_gap = gap / max(|delta|, 1e-3)`` (the floor keeps layers or
    inputs whose delta is ~0 from reporting huge ratios of rounding noise)."""
    gap = abs(attributed - delta)
    return {"sum": float(attributed), "delta": float(delta), "gap": float(gap),
            "relative_gap": float(gap / max(abs(delta), 1e-3))}


class frozen_parameters:
    """Context: no parameter requires grad (methods differentiate w.r.t. activations only)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self.saved:
            p.requires_grad_(False)
        return self.model

    def __exit__(self, *exc):
        for p, flag in self.saved:
            p.requires_grad_(flag)
        return False
