"""Word-importance ranking from cached attributions instead of leave-one-out queries.

TextAttack's ``GreedyWordSwapWIR`` ranks the words of the input before its greedy swaps by
querying the model once per word (``"unk"``: the word replaced by [UNK]; ``"delete"``: the word
deleted) — ``len(words)`` goal-function queries per example before the first swap. ``AttributionWIR``
ranks them by an attribution computed through the ``Engine`` (so it comes from the shared cache
when present): the word score is the sum of its tokens' ``Attribution.token_scores()`` for the
predicted class (AttAttr: attribution flowing out of each token, summed over layers, heads and
query rows; ``grad_input``: gradient x input), highest first. Tokens are placed in TextAttack's
words by the one word alignment (``attrtools.words``: the fast tokenizer's character offsets into
the original text), so words the tokenizer normalises ("naïve" under an uncased WordPiece, ``Ġ``/
``▁`` word starts) are scored like any other; only words cut off by truncation have no score (they
rank last, counted in ``stats["unscored_words"]``). It spends **no** goal-function
queries on ranking; the attribution's own cost (forward/backward passes) is counted apart in
``stats`` and reported next to the queries, so the comparison stays honest.

Beyond the paper (AttAttr §6 uses fixed trigger insertion, no search).
"""
from __future__ import annotations

import numpy as np

from ..engine import Engine
from ..types import Example
from ..words import WordAlignmentError, locate, span_scores
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
        self.stats = {"ranked": 0, "attributions_computed": 0, "words_ranked": 0, "unscored_words": 0}
        if not getattr(tokenizer, "is_fast", False):
            raise WordAlignmentError(f"wir-attribution places tokens in words by character offsets, which "
                                     f"{type(tokenizer).__name__} (a slow tokenizer) has none of: use a fast one")

    def _key(self, text_input):
        e = _example(text_input)
        return (e.text, e.text_pair)

    def prefetch(self, examples):
        """Compute (or load from the cache) the attributions of many inputs in one batched call."""
        todo = [Example.coerce(e) for e in examples]
        todo = [e for e in todo if (e.text, e.text_pair) not in self._scores]
        if not todo:
            return
        results = self.engine.attribute(todo, self.method, target="pred", **self.params)
        for e, att in zip(todo, results):
            self._scores[(e.text, e.text_pair)] = (att.token_scores().float().cpu().numpy(), att.token_offsets)
        self.stats["attributions_computed"] += results.stats.computed

    def token_scores(self, text_input) -> np.ndarray:
        """``(n,)`` token scores of one input (cached per text)."""
        return self._attribution(text_input)[0]

    def _attribution(self, text_input):
        key = self._key(text_input)
        if key not in self._scores:
            self.prefetch([Example(*key)])
        return self._scores[key]

    def word_scores(self, attacked_text) -> np.ndarray:
        """One score per word of ``attacked_text.words`` (all inputs, in order): the sum of its
        tokens' scores (``words.span_scores`` over TextAttack's words located in each input's
        original text); ``-inf`` for a word no token reaches (truncated)."""
        texts = list(attacked_text._text_input.values())
        values, offsets = self._attribution(attacked_text.tokenizer_input)
        spans = [locate(text, seg_words) for text, seg_words in zip(texts, attacked_text.words_per_input)]
        per_segment = span_scores(values, offsets, texts, spans, "sum")
        flat = [-np.inf if s is None else s for seg in per_segment for s in seg]
        self.stats["words_ranked"] += len(flat)
        self.stats["unscored_words"] += sum(s is None for seg in per_segment for s in seg)
        return np.array(flat, dtype=float)

    def _get_index_order(self, initial_text, max_len=-1):
        len_text, indices = self.get_indices_to_order(initial_text)
        indices = list(indices)
        all_scores = self.word_scores(initial_text)
        word_scores = np.array([all_scores[i] for i in indices], dtype=float)
        self.stats["ranked"] += 1
        order = np.array(indices)[np.argsort(-word_scores, kind="stable")] if indices else np.array([], dtype=int)
        return order, False

    @property
    def is_black_box(self):
        return False  # needs the model itself (gradients), like TextAttack's "gradient" ranking

    def extra_repr_keys(self):
        return ["method"]
