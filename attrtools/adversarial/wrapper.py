"""A TextAttack ``ModelWrapper`` around a model loaded with ``attrtools.load_model``.

TextAttack's ``HuggingFaceModelWrapper`` pads every query to ``tokenizer.model_max_length``
(512 for MiniLM/BERT: about 5x slower on SST-2); this wrapper pads each batch to its longest
input (the engine's collation), truncates by the engine's rule (``models.max_input_length``, or a
``max_length`` override), runs under ``torch.no_grad`` and keeps
the model in eval mode, also for ``get_grad`` (TextAttack switches to train mode there, i.e.
dropout on; we keep results deterministic). Tokens are the engine's tokens, so word/token
alignment matches the attributions.
"""
from __future__ import annotations

import torch

from ..engine import Engine
from ..types import Example
from .textattack_compat import load_textattack

ta = load_textattack()


def _example(text_input) -> Example:
    if isinstance(text_input, str):
        return Example(text_input)
    if isinstance(text_input, (tuple, list)) and len(text_input) == 1:
        return Example(text_input[0])
    if isinstance(text_input, (tuple, list)) and len(text_input) == 2:
        return Example(text_input[0], text_input[1])
    raise TypeError(f"cannot use {type(text_input).__name__} as a classifier input")


class AttrtoolsModelWrapper(ta.models.wrappers.ModelWrapper):
    """TextAttack model wrapper: each list of candidates TextAttack sends (up to its
    ``model_batch_size``) runs as length-sorted batches of ``batch_size``, each padded to its own
    longest input, on the model's device. ``head_mask`` ``(L, H)``: heads with 0 are masked in
    every forward (a pruned variant of the model, through ``capture``)."""

    def __init__(self, model, tokenizer, batch_size: int = 32, max_length: int | None = None, head_mask=None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.head_mask = head_mask
        self.engine = Engine(model, tokenizer, batch_size=batch_size, max_length=max_length, progress=False)
        self.num_forward_inputs = 0  # every text the model was run on (TextAttack counts its own queries)

    def _scope(self):
        import contextlib

        if self.head_mask is None:
            return contextlib.nullcontext()
        from ..capture import capture
        from ..models import model_device

        return capture(self.model, head_mask=self.head_mask.to(model_device(self.model)))

    def __call__(self, text_input_list, **kwargs):
        self.num_forward_inputs += len(text_input_list)
        with self._scope():
            return self.engine.logits([_example(t) for t in text_input_list])

    def get_grad(self, text_input):
        """Gradient of the loss (w.r.t. the predicted class) on the input word embeddings, ``(n, d)``."""
        enc = self.engine.encode(_example(text_input))
        inputs = self.engine.collate([enc])
        embeddings = self.model.get_input_embeddings()
        grads = []
        handle = embeddings.register_full_backward_hook(lambda m, gin, gout: grads.append(gout[0]))
        try:
            self.model.zero_grad(set_to_none=True)
            with self._scope():
                logits = self.model(**inputs).logits
            loss = torch.nn.functional.cross_entropy(logits, logits.argmax(-1))
            loss.backward()
        finally:
            handle.remove()
            self.model.zero_grad(set_to_none=True)
        return {"ids": enc.input_ids, "gradient": grads[0][0].detach().cpu().numpy()}

    def _tokenize(self, inputs):
        return [self.engine.encode(_example(t)).tokens for t in inputs]

