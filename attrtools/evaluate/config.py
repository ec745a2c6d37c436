"""``EvaluateConfig``: the settings of the faithfulness evaluation, and their defaults (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    """

    methods: tuple | None = None
    preset: str = "decompx"
    operator: str | None = None
    method_params: dict = field(default_factory=dict)
    method_limits: dict = field(default_factory=dict)
    reference: str | None = "grad_input"
    seed: int = 0
    batch_size: int = 8
    max_length: int | None = None
    progress: bool | None = None

    def resolved_operator(self) -> str:
        return self.operator or ("mask" if self.preset == "decompx" else "delete")
