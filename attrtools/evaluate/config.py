"""``EvaluateConfig``: the settings of the faithfulness evaluation, and their defaults (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ..ranges import check_ranges, option
from . import OPERATORS, PRESETS


@dataclass
class EvaluateConfig:
    """Settings of ``attrtools evaluate`` / ``evaluate_methods``; the defaults are the tool's.

    ``methods``: registered method names (None: every registered method; a seeded random
    attribution is always added); ``preset``: bins, eraser (1/5/10/20/50 %), ferret (10..100 %)
    or decompx (0..90 %) of the non-special tokens; ``operator``: how tokens are taken out,
    delete, mask or pad (None: the preset's own, mask for decompx, delete otherwise);
    ``method_params``: ``{method: {param: value}}``; ``method_limits``: ``{method: N}`` evaluates
    that method on the first N examples only; ``reference``: the method the Spearman column
    compares with (None: no column); ``seed``: of the random row; ``batch_size``: examples per
    attribution batch; ``max_length``: truncation in tokens (None: the engine's rule, ``models.max_input_length``); ``progress``: progress bars (None:
    when stderr is a terminal).

    Each field declares its valid values (``attrtools.ranges.option``); a value outside them raises a
    one-line ``ParameterError`` naming the field when the config is built (also through
    ``dataclasses.replace`` and the pipelines' keyword overrides).
    """

    methods: tuple | None = option(None, kind="str", sequence=True, optional=True)
    preset: str = option("decompx", kind="str", choices=PRESETS)
    operator: str | None = option(None, kind="str", choices=OPERATORS, optional=True)
    method_params: dict = option(kind="dict", values=True, optional=True, default_factory=dict, flag="--param")
    method_limits: dict = option(kind="int", low=1, values=True, optional=True, default_factory=dict,
                                 flag="--method-limit")
    reference: str | None = option("grad_input", kind="str", optional=True)
    seed: int = option(0, kind="int")
    batch_size: int = option(8, kind="int", low=1)
    max_length: int | None = option(None, kind="int", low=2, optional=True)
    progress: bool | None = option(None, kind="bool", optional=True)

    def __post_init__(self):
        check_ranges(self)  # one line naming the field, before anything loads (attrtools.ranges)

    def resolved_operator(self) -> str:
        return self.operator or ("mask" if self.preset == "decompx" else "delete")
