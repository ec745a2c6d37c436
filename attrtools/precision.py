"""Precision, one rule: which dtype each part of an attribution is computed in.

Users hand over models in bf16 or fp16 (how most GPU users load them). The rule:

- **the model's forward and backward passes run in the model's own dtype** (:func:`model_dtype`):
  that is the function being explained, and upcasting a large model would double its memory;
  every tensor a method feeds *into* the model (an IG-scaled attention, a scaled context, an
  interpolated embedding) is cast to that dtype by :func:`to_model` (autograd flows through the
  cast, so the integration variable itself stays fp32);
- **everything a method sums or decomposes runs in fp32** (:data:`ACCUMULATE`, :func:`accumulate`):
  the integrated-gradient sums of AttAttr and ``ig_embed`` (a Riemann or Gauss-Legendre sum of
  20-60 gradients loses 2-3 significant digits in bf16), the LayerNorm / residual decompositions
  of GlobEnc, ALTI, DecompX and Chefer's LRP (variances and per-token norms of vectors of width d),
  the rollout / flow products and the target probability (``softmax`` in fp32). Methods upcast
  the captured activations and weights with :func:`accumulate` before that arithmetic.

The dtype a result was computed in is recorded in every ``Attribution`` (``params["_compute_dtype"]``,
saved and loaded with it, from :func:`describe`) so a reduced-precision result can always be told
from an fp32 one; the cache keys already differ because the model fingerprint hashes each
parameter's dtype. The deviation of each method on bf16/fp16 copies of tiny models against fp32 is
measured by ``tests/test_precision.py`` and tabulated in ``docs/precision-and-state.md``.
"""
from __future__ import annotations

import torch
from torch import nn

#: The dtype of sums, decompositions and everything a method stores.
ACCUMULATE = torch.float32


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype the model computes in: that of its first floating-point parameter
    (fp32 for a model without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def to_model(tensor: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``tensor`` cast to the model's dtype (:func:`model_dtype`), for a value a method feeds into
    the model's own modules; a no-op when it already has it. Differentiable: a gradient with
    respect to an fp32 leaf flows back through the cast in fp32."""
    dtype = model_dtype(model)
    return tensor if tensor.dtype == dtype or not tensor.is_floating_point() else tensor.to(dtype)


def accumulate(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in the accumulation dtype (:data:`ACCUMULATE`, fp32), for sums and decompositions."""
    return tensor if tensor.dtype == ACCUMULATE else tensor.to(ACCUMULATE)


def describe(model: nn.Module) -> str:
    """The compute dtype recorded in each ``Attribution`` (``params["_compute_dtype"]``): the model's
    dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``); the sums and decompositions are fp32
    in every case (the rule above)."""
    return str(model_dtype(model)).replace("torch.", "")


__all__ = ["ACCUMULATE", "accumulate", "describe", "model_dtype", "to_model"]
