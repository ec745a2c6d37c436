"""Trigger insertion as a TextAttack transformation, and the constraint that bounds it.

``TriggerInsertion`` inserts the words of one extracted pattern (``triggers.Pattern``) at their
relative positions (the official rule, ``triggers.insertion_slots``, over the whitespace-separated
chunks of the text, so only at word boundaries: ``triggers.insert_at_word_boundaries``), one candidate text per
pattern not yet applied to the text. It subclasses ``WordSwap`` because TextAttack's searches check
the transformation type (GreedyWordSwapWIR refuses plain ``Transformation`` subclasses); it
overrides ``_get_transformations`` since it inserts rather than swaps. It needs at least one
modifiable word index (so ``RepeatModification`` etc. still apply: an exhausted text gets no
candidates).

``MaxInsertedWords``: at most ``k`` more words than the original text.
"""
from __future__ import annotations

from ..errors import ParameterError
from .textattack_compat import load_textattack
from .triggers import Pattern, insert_at_word_boundaries

ta = load_textattack()

APPLIED = "attrtools_triggers"


class TriggerInsertion(ta.transformations.WordSwap):
    """Insert an attribution-derived trigger (one candidate per pattern)."""

    def __init__(self, patterns: list[Pattern]):
        super().__init__()
        if not patterns:
            raise ParameterError("TriggerInsertion needs at least one pattern")
        self.patterns = list(patterns)

    def _get_transformations(self, current_text, indices_to_modify):
        if not indices_to_modify:
            return []
        applied = current_text.attack_attrs.get(APPLIED, ())
        per_input = current_text.words_per_input
        out = []
        for pid, pattern in enumerate(self.patterns):
            if pid in applied:
                continue
            new_words = []
            texts = list(current_text._text_input.values())
            for s, words in enumerate(per_input):
                trig = [(w.word, w.relative) for w in pattern.words if w.segment == s]
                new_words += insert_at_word_boundaries(texts[s], words, trig) if trig and words else list(words)
            if new_words == current_text.words:
                continue
            text = current_text.generate_new_attacked_text(new_words)
            text.attack_attrs[APPLIED] = tuple(applied) + (pid,)
            out.append(text)
        return out

    def extra_repr_keys(self):
        return []

    def __repr__(self):
        return f"TriggerInsertion({len(self.patterns)} patterns)"


class MaxInsertedWords(ta.constraints.Constraint):
    """Reject texts holding more than ``max_words`` words beyond the original."""

    def __init__(self, max_words: int = 4, compare_against_original: bool = True):
        super().__init__(compare_against_original)
        self.max_words = max_words

    def _check_constraint(self, transformed_text, reference_text):
        return len(transformed_text.words) - len(reference_text.words) <= self.max_words

    def extra_repr_keys(self):
        return ["max_words"] + super().extra_repr_keys()


def build_trigger_attack(model_wrapper, patterns: list[Pattern], max_inserted_words: int = 4,
                         beam_width: int = 1, query_budget: int | None = None):
    """``Attack``: UntargetedClassification, TriggerInsertion, MaxInsertedWords + RepeatModification,
    greedy (beam_width 1) or beam search over the trigger candidates."""
    goal = ta.goal_functions.UntargetedClassification(model_wrapper, query_budget=query_budget or float("inf"))
    constraints = [ta.constraints.pre_transformation.RepeatModification(), MaxInsertedWords(max_inserted_words)]
    search = ta.search_methods.GreedySearch() if beam_width == 1 else ta.search_methods.BeamSearch(beam_width)
    return ta.Attack(goal, constraints, TriggerInsertion(patterns), search)
