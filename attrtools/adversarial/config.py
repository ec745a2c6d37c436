"""``AuditConfig``: the settings of trigger extraction and the robustness audit, and their
defaults (torch- and TextAttack-free)."""
from __future__ import annotations

from dataclasses import dataclass

from ..ranges import check_ranges, option

DEFAULT_RECIPES = ("deepwordbug", "pruthi", "input-reduction", "wir-delete", "wir-attribution")


@dataclass
class AuditConfig:
    """Settings of ``attrtools triggers`` / ``attrtools audit`` (``run_full_audit``).

    Trigger extraction (Hao et al. 2021, §6): ``num_train_examples`` correctly classified training
    examples (official: 500), ``steps`` AttAttr integration ("auto": converged to 1e-3, the default; or m official left-Riemann steps, 64 in the official trigger code),
    patterns with v1+v2 below ``pattern_threshold`` dropped, the top-2 pair kept when
    v2/v1 >= ``top2_ratio`` (always with ``use_all``, official ``--if_all``), ``batch_size``
    examples per attribution batch, ``max_length`` tokens (None: the engine's truncation rule,
    ``models.max_input_length``; the official code used 128).
    Audit: ``recipes`` (TextAttack recipes run offline, see ``audit.ALL_RECIPES``),
    ``use_triggers`` (the trigger attack and the per-class table), ``top_triggers`` candidates the
    trigger search chooses from, ``top_k`` triggers in the per-class table, ``max_inserted_words``
    (constraint of the trigger attack), ``rank_method`` / ``rank_steps`` (the attribution ranking
    words for wir-attribution), ``query_budget`` per example (None: unlimited),
    ``query_batch_size`` candidate texts per model call of TextAttack's goal function (one padded
    forward pass each; results do not depend on it), ``chunk_size``
    examples per Attacker run (resume granularity), ``seed`` (TextAttack's), ``progress`` bars
    (None: when stderr is a terminal).

    Each field declares its valid values (``attrtools.ranges.option``); a value outside them raises a
    one-line ``ParameterError`` naming the field when the config is built (also through
    ``dataclasses.replace`` and the pipelines' keyword overrides).
    """

    recipes: tuple = option(DEFAULT_RECIPES, kind="str", sequence=True)
    use_triggers: bool = option(True, kind="bool", flag="--no-triggers")
    num_train_examples: int = option(500, kind="int", low=1)
    steps: int | str = option("auto", kind="int", low=1, choices=("auto",))
    pattern_threshold: float = option(0.02, kind="float", low=0)
    top2_ratio: float = option(0.2, kind="float", low=0, high=1)
    use_all: bool = option(False, kind="bool")
    top_triggers: int = option(10, kind="int", low=1)
    top_k: int = option(3, kind="int", low=1)
    max_inserted_words: int = option(4, kind="int", low=1)
    rank_method: str = option("attattr", kind="str")
    rank_steps: int | str = option("auto", kind="int", low=1, choices=("auto",))
    query_budget: int | None = option(None, kind="int", low=1, optional=True)
    # audit's --batch-size; triggers' --batch-size is batch_size: no single flag for either
    query_batch_size: int = option(32, kind="int", low=1, flag=None)
    chunk_size: int = option(10, kind="int", low=1)
    seed: int = option(765, kind="int")
    batch_size: int = option(8, kind="int", low=1, flag=None)
    max_length: int | None = option(None, kind="int", low=2, optional=True)
    progress: bool | None = option(None, kind="bool", optional=True)

    def __post_init__(self):
        check_ranges(self)  # one line naming the field, before anything loads (attrtools.ranges)
