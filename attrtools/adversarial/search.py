"""Word-importance ranking from cached attributions instead of leave-one-out queries.

TextAttack's ``GreedyWordSwapWIR`` ranks the words of the input before its greedy swaps by
querying the model once per word (``"unk"``: the word replaced by [UNK]; ``"delete"``: the word
deleted) — ``len(words)`` goal-function queries per example before the first swap. ``AttributionWIR``
ranks them by an attribution computed through the ``Engine`` (so it comes from the shared cache
when present): the word score is the sum of its tokens' ``Attribution.token_scores()`` for the
predicted class (AttAttr: attribution flowing out of each token, summed over layers, heads and
query rows; ``grad_input``: gradient x input), highest first. It spends **no** goal-function
queries on ranking; the attribution's own cost (forward/backward passes) is counted apart in
``stats`` and reported next to the queries, so the comparison stays honest.

Beyond the paper (AttAttr §6 uses fixed trigger insertion, no search).
"""
from __future__ import annotations

import numpy as np

from ..engine import Engine
from ..types import Example
from .textattack_compat import load_textattack
from .wrapper import _example

ta = load_textattack()


class AttributionWIR(ta.search_methods.GreedyWordSwapWIR):
    """``GreedyWordSwapWIR`` whose word order comes from an attrtools attribution."""

    def __init__(self, model, tokenizer, method: str = "attattr", cache=None, max_length: int | None = None,
                 batch_size: int = 8, **params):
        super().__init__(wir_method="attribution")
        self.engine = Engine(model, tokenizer, cache=cache, batch_size=batch_size, max_length=max_length,
                             progress=False)
        self.method = method
        self.params = params
        self._scores: dict = {}
        self.stats = {"ranked": 0, "attributions_computed": 0}

    def _key(self, text_input):
        e = _example(text_input)
        return (e.text, e.text_pair)

    def prefetch(self, examples):
        """Compute (or load from the cache) the attributions of many inputs in one batched call."""
        todo = [Example.coerce(e) for e in examples]
        todo = [e for e in todo if (e.text, e.text_pair) not in self._scores]
        if not todo:
            return
        before = self.engine.stats["computed"]
        for e, att in zip(todo, self.engine.attribute(todo, self.method, target="pred", **self.params)):
            self._scores[(e.text, e.text_pair)] = att.token_scores().float().cpu().numpy()
        self.stats["attributions_computed"] += self.engine.stats["computed"] - before

    def token_scores(self, text_input) -> np.ndarray:
        key = self._key(text_input)
        if key not in self._scores:
            self.prefetch([Example(*key)])
        return self._scores[key]

    def _get_index_order(self, initial_text, max_len=-1):
        len_text, indices = self.get_indices_to_order(initial_text)
        indices = list(indices)
        scores = self.token_scores(initial_text.tokenizer_input)
        alignment = initial_text.align_with_model_tokens(self.get_victim_model())
        word_scores = np.array([
            float(sum(scores[t] for t in alignment[i] if t < len(scores))) if alignment.get(i) else -np.inf
            for i in indices
        ])
        self.stats["ranked"] += 1
        order = np.array(indices)[np.argsort(-word_scores, kind="stable")] if indices else np.array([], dtype=int)
        return order, False

    @property
    def is_black_box(self):
        return False  # needs the model itself (gradients), like TextAttack's "gradient" ranking

    def extra_repr_keys(self):
        return ["method"]
