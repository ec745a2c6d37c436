"""``EvaluateConfig``: the settings of the faithfulness evaluation, and their defaults (torch-free)."""
from __future__ import annotations

from ..ranges import batch_size_field, max_length_field, option, progress_field, seed_field, tool_config
from . import OPERATORS, PRESETS


@tool_config
class EvaluateConfig:
    """Settings of ``attrtools evaluate`` (``attrtools.evaluate.run``); the defaults are the tool's.
    Each field declares its option, help and valid values (``attrtools.ranges.option``); a value
    outside them raises a one-line ``ParameterError`` naming the field when the config is built
    (also through ``dataclasses.replace`` and keyword overrides).
    """

    methods: tuple | None = option(None, kind="str", sequence=True, optional=True, cli_default="all",
                                   help="Comma-separated method names, or 'all' (every registered method). A seeded "
                                        "random attribution is always added.")
    preset: str = option("decompx", kind="str", choices=PRESETS,
                         help="Bins: eraser 1/5/10/20/50 %, ferret 10..100 %, decompx 0..90 % of non-special tokens.")
    operator: str | None = option(None, kind="str", choices=OPERATORS, optional=True,
                                  help="How tokens are taken out (default: the preset's own: mask for decompx, "
                                       "delete otherwise).")
    method_params: dict = option(kind="dict", values=True, optional=True, default_factory=dict, flag="--param",
                                 multiple=True, metavar="METHOD:KEY=VALUE",
                                 help="Method parameter, e.g. --param attattr:steps=20 (repeatable; KEY=VALUE applies "
                                      "to all).")
    method_limits: dict = option(kind="int", low=1, values=True, optional=True, default_factory=dict,
                                 flag="--method-limit", multiple=True, metavar="METHOD=N",
                                 help="Evaluate METHOD on the first N examples only (slow methods such as flow); "
                                      "repeatable.")
    reference: str | None = option("grad_input", kind="str", optional=True,
                                   help="Method for the Spearman agreement column ('none' to skip).")
    seed: int = seed_field(0, "Seed of the random-attribution row.")
    batch_size: int = batch_size_field(8)
    max_length: int | None = max_length_field()
    progress: bool | None = progress_field()

    def resolved_operator(self) -> str:
        return self.operator or ("mask" if self.preset == "decompx" else "delete")
