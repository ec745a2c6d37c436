"""``AuditConfig``: the settings of trigger extraction and the robustness audit, and their
defaults (torch- and TextAttack-free)."""
from __future__ import annotations

from ..ranges import (batch_size_field, max_length_field, option, progress_field, seed_field, steps_field,
                      tolerance_field, tool_config)

DEFAULT_RECIPES = ("deepwordbug", "pruthi", "input-reduction", "wir-delete", "wir-attribution")

#: the fields ``attrtools triggers`` takes (extraction and the per-class table); ``audit`` takes all
TRIGGER_FIELDS = ("num_train_examples", "steps", "tolerance", "pattern_threshold", "top2_ratio", "use_all", "top_k", "batch_size",
                  "max_length", "progress")


@tool_config
class AuditConfig:
    """Settings of ``attrtools triggers`` / ``attrtools audit`` (``attrtools.adversarial.run``).

    Trigger extraction follows Hao et al. 2021, §6 (official: 500 training examples, 64 steps,
    ``--if_all`` for ``use_all``); the audit runs TextAttack's recipes offline
    (``audit.ALL_RECIPES``). ``batch_size`` is the examples per attribution batch (as in every
    tool); ``query_batch_size`` the candidate texts per forward pass of TextAttack's goal function.
    Each field declares its option, help and valid values (``attrtools.ranges.option``); a value
    outside them raises a one-line ``ParameterError`` naming the field when the config is built.
    """

    recipes: tuple = option(DEFAULT_RECIPES, kind="str", sequence=True, aliases=("--recipe",),
                            help="Comma list of TextAttack recipes by their CLI names (textfooler, pwws, bae, "
                                 "bert-attack, a2t, textbugger, deepwordbug, pruthi, checklist, kuleshov, alzantot, "
                                 "faster-alzantot, iga, pso, clare, input-reduction, hotflip, leap, bad-characters) and "
                                 "attrtools' wir-delete, wir-attribution; 'all' for every one. Missing resources are "
                                 "reported before anything runs.")
    use_triggers: bool = option(True, kind="bool", flag="--no-triggers",
                                help="Skip the trigger attack and the per-class table.")
    num_train_examples: int = option(500, kind="int", low=1,
                                     help="Correctly classified training examples to extract patterns from "
                                          "(official: 500).")
    steps: int | str = steps_field(64, "the official trigger code")
    tolerance: float = tolerance_field()
    pattern_threshold: float = option(0.02, kind="float", low=0, help="Drop patterns with v1+v2 below this.")
    top2_ratio: float = option(0.2, kind="float", low=0, high=1, help="Keep the top-2 pair when v2/v1 >= this.")
    use_all: bool = option(False, kind="bool", help="Always keep the top-2 pair (official --if_all).")
    top_triggers: int = option(10, kind="int", low=1, help="Trigger candidates the search chooses from.")
    top_k: int = option(3, kind="int", low=1, help="Triggers evaluated in the per-class table.")
    max_inserted_words: int = option(4, kind="int", low=1, help="Constraint of the trigger attack.")
    rank_method: str = option("attattr", kind="str",
                              help="Attribution ranking the words for wir-attribution (any attrtools method, e.g. "
                                   "grad_input).")
    rank_steps: int | str = steps_field(20, "of the ranking (attattr only)")
    query_budget: int | None = option(None, kind="int", low=1, optional=True,
                                      help="TextAttack query budget per example (default: unlimited).")
    query_batch_size: int = option(32, kind="int", low=1,
                                   help="Candidate texts per forward pass of the attacked model (TextAttack's "
                                        "model_batch_size; results do not depend on it, larger helps on a GPU).")
    chunk_size: int = option(10, kind="int", low=1, help="Examples per Attacker run (resume granularity).")
    seed: int = seed_field(765, "TextAttack random seed.")
    batch_size: int = batch_size_field(8, "Examples per attribution batch (trigger extraction).",
                                       aliases=("--attribution-batch-size",))
    max_length: int | None = max_length_field()
    progress: bool | None = progress_field()
