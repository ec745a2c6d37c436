"""Precision, one rule: which dtype each part of an attribution is computed in.

Users hand over models in bf16 or fp16 (how most GPU users load them). The rule:

- **the model's forward and backward passes run in the model's own dtype** (:func:`model_dtype`),
  except for the methods of :data:`FORWARD_IN_FP32` (measured unsafe: Chefer's LRP), which read the
  weights in fp32 for their computation (:func:`forward_dtype`);
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

A payload computed on a reduced-precision model that holds NaN or infinite values (an fp16
overflow) is refused in one line (:func:`check_finite`, ``PrecisionError``), never returned or cached.

The dtype a result was computed in is recorded in every ``Attribution`` (``params["_compute_dtype"]``,
saved and loaded with it, from :func:`describe`) so a reduced-precision result can always be told
from an fp32 one; the cache keys already differ because the model fingerprint hashes each
parameter's dtype. The deviation of each method on bf16/fp16 copies of tiny models against fp32 is
measured by ``tests/test_precision.py`` and tabulated in ``docs/precision-and-state.md``.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .errors import AttrtoolsError

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


#: Methods whose *forward* is unsafe in reduced precision, each with the measured reason: for these
#: the model's floating parameters and buffers are read in fp32 for the method's computation
#: (:func:`forward_dtype`). Chefer's LRP divides every relevance by the layer's own pre-activations
#: (``x W``, ``a + b``) recorded in the forward; in bf16 those ratios amplify rounding, and on a
#: tiny BERT its token ranking fell to Spearman 0.17 against fp32 (relative error 0.92), while an
#: fp32 forward over the same bf16-rounded weights gives Spearman 1.0 (error 0.011).
FORWARD_IN_FP32 = {"chefer_lrp": "LRP divides by the recorded pre-activations (bf16: Spearman 0.17 vs fp32)"}


def forward_in_fp32(model: nn.Module, method: str) -> bool:
    """Whether ``method`` runs its forward on ``model`` with fp32 weights: a reduced-precision model
    and a method of :data:`FORWARD_IN_FP32`."""
    return method in FORWARD_IN_FP32 and model_dtype(model) != ACCUMULATE


@contextlib.contextmanager
def forward_dtype(model: nn.Module, method: str):
    """For the block, the dtype rule of ``method`` on ``model``: a method of :data:`FORWARD_IN_FP32`
    on a bf16/fp16 model sees every floating parameter and buffer in fp32 (each tensor's ``.data``
    swapped for an fp32 copy, the same ``Parameter`` objects, so hooks, optimizers and tied weights
    keep their identity); afterwards each tensor gets back its original storage, bit for bit (also
    when the block raises). Costs one fp32 copy of the model's weights while it runs. Any other
    method or an fp32 model: nothing changes."""
    if not forward_in_fp32(model, method):
        yield
        return
    seen, saved = set(), []
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.dtype != ACCUMULATE and id(t) not in seen:
            seen.add(id(t))
            saved.append((t, t.data))
    try:
        for t, data in saved:
            t.data = data.to(ACCUMULATE)
        yield
    finally:
        for t, data in saved:
            t.data = data


class PrecisionError(AttrtoolsError, ArithmeticError):
    """A method's result on a reduced-precision model is not finite (an fp16 overflow): refused."""


def check_finite(payloads, model: nn.Module, method: str) -> None:
    """Refuse (``PrecisionError``, one line) the payloads of ``method`` computed on a bf16/fp16
    ``model`` when any value is NaN or infinite: fp16's range (±65504) overflows in some gradients
    (AttAttr on a tiny fp16 MPNet gave NaN in 88 of 484 entries of layer 0). Never a silent wrong
    number: the error says to load the model in float32 or bfloat16 (fp32's range). fp32 models are
    not checked here."""
    dtype = model_dtype(model)
    if dtype == ACCUMULATE:
        return
    bad = sum(int((~torch.isfinite(p)).sum()) for p in payloads)
    if bad:
        total = sum(p.numel() for p in payloads)
        name = str(dtype).replace("torch.", "")
        raise PrecisionError(
            f"{method} on this {name} model gave {bad} non-finite value(s) of {total} ({name} overflow); load the "
            f"model in float32 or bfloat16 (load_model(..., dtype=...), or model.to(torch.float32))")


def describe(model: nn.Module, method: str | None = None) -> str:
    """The compute dtype recorded in each ``Attribution`` (``params["_compute_dtype"]``): the dtype
    name the method's forward ran in (``"float32"``, ``"bfloat16"``, ``"float16"``): the model's,
    or ``"float32"`` for a method of :data:`FORWARD_IN_FP32`. Sums and decompositions are fp32 in
    every case (the rule above)."""
    dtype = ACCUMULATE if method is not None and forward_in_fp32(model, method) else model_dtype(model)
    return str(dtype).replace("torch.", "")




def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N of a 1-D tensor, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    values, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # 0-based rank of each distinct value's first copy
    return (first.double() + (counts.double() + 1) / 2)[inverse]


def deviation(reduced: torch.Tensor, reference: torch.Tensor) -> dict:
    """How far a reduced-precision result is from its fp32 reference (same shape).

    Returns ``{"spearman": ρ, "relative_error": ‖r − f‖₂ / ‖f‖₂}`` over all entries (fp64
    arithmetic; ties take their average rank, so the zeros of a causal or padded payload do not
    count as disagreement). ρ is 1.0 when both are constant and equal. ``ValueError`` on a shape
    mismatch."""
    if tuple(reduced.shape) != tuple(reference.shape):
        raise ValueError(f"shapes differ: {tuple(reduced.shape)} vs {tuple(reference.shape)}")
    a, b = reduced.detach().double().flatten().cpu(), reference.detach().double().flatten().cpu()
    norm = float(b.norm())
    relative = float((a - b).norm()) / norm if norm > 0 else float((a - b).norm())
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    rho = float((ra @ rb) / denom) if denom > 0 else (1.0 if torch.equal(a, b) else 0.0)
    return {"spearman": rho, "relative_error": relative}


__all__ = ["ACCUMULATE", "FORWARD_IN_FP32", "PrecisionError", "accumulate", "check_finite", "describe", "deviation",
           "forward_dtype", "forward_in_fp32", "model_dtype", "to_model"]
