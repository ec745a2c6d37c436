"""``AuditConfig``: the settings of trigger extraction and the robustness audit, and their
defaults (torch- and TextAttack-free)."""
from __future__ import annotations

from dataclasses import dataclass

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
    """

    recipes: tuple = DEFAULT_RECIPES
    use_triggers: bool = True
    num_train_examples: int = 500
    steps: int | str = "auto"
    pattern_threshold: float = 0.02
    top2_ratio: float = 0.2
    use_all: bool = False
    top_triggers: int = 10
    top_k: int = 3
    max_inserted_words: int = 4
    rank_method: str = "attattr"
    rank_steps: int | str = "auto"
    query_budget: int | None = None
    query_batch_size: int = 32
    chunk_size: int = 10
    seed: int = 765
    batch_size: int = 8
    max_length: int | None = None
    progress: bool | None = None
