"""Memory that fits the result: an up-front estimate of a method's peak memory for the batch about
to run, and the one rule the engine applies with it (``fit_batch``).

``estimate_bytes(method, model, length, batch, params)`` is an analytic estimate, in bytes, of what
one call of ``method`` keeps alive at its peak for ``batch`` examples padded to ``length`` tokens:
the forward activations (per layer ``n·(4d + d_ff)`` values), the recorded attention
(``L·H·n²``), the method's own working set and its result. Working sets, per example:

- ``raw``, ``rollout``, ``flow``: the attention twice (recorded and rolled out);
- gradient methods (``gradsam``, ``grad_input``, ``chefer_grad``, ``ig_embed``, ``chefer_lrp``):
  activations and attention kept for backward, and their gradients (×2); ``ig_embed`` runs its
  steps in passes of about 4096 tokens, like AttAttr;
- ``attattr``: a pass of ``internal_batch_size`` rows (default about 4096 tokens) through the model
  with gradient (activations and attention ×3);
- ``alti``, ``alti_logit``: receivers in chunks of 4M floats (``alti_matrix``), ×4 live copies;
- ``globenc``: its ``(c, n, d)`` receiver chunks of 4M floats (``methods.globenc.CHUNK_FLOATS``),
  ×2 (the chunk is normalised in place);
- ``decompx``: the ``(n, n, d)`` decomposition (one live copy, one example at a time) plus chunk
  buffers, about 5 × 4M floats (``methods.decompx._CHUNK_FLOATS``).

Values are fp32 (4 bytes). Measured against ``scripts/bench_method_memory.py`` (peak resident
memory added by the computation, MiniLM-size BERT, 512 tokens): ALTI 362 MB measured vs about
200 MB estimated, so read the estimate as within a factor of about 2; it is for planning, never for
a result.

The rule (``fit_batch``, called by ``Engine.attribute`` before the first batch): when the estimate
for a batch of the engine's batch size (or of all the job's inputs, if fewer) at its longest input exceeds 80 % of the memory available on the
model's device (``available_bytes``: free CUDA memory, or ``MemAvailable`` of ``/proc/meminfo``),
the batch is halved until it fits, and one ``MemoryEstimateWarning`` says so with the numbers; if a
single example does not fit, the warning gives the estimate and the available memory and the job
still starts (the engine's out-of-memory back-off remains the last word; the estimate can be off).
Where the available memory cannot be read, nothing is done.

Estimates before long jobs, one rule (``announce``): every engine job whose estimated peak for one
batch reaches ``ANNOUNCE_BYTES`` (1 GiB) prints one line with the estimate on stderr before it starts.
"""
from __future__ import annotations

from .architecture import num_layers_heads
from .models import model_device

FLOAT = 4  # bytes of an fp32 value
SHARE = 0.8  # fraction of the available memory a job may plan to use
ALTI_CHUNK = 1 << 22  # floats per receiver chunk (methods.decomposition.alti_matrix's default)
DECOMPX_CHUNK = 1 << 22  # floats per buffer of a receiver chunk (methods.decompx._CHUNK_FLOATS)
GLOBENC_CHUNK = 1 << 22  # floats per receiver chunk (methods.globenc.CHUNK_FLOATS)


class MemoryEstimateWarning(UserWarning):
    """The estimated peak memory of a job's batches exceeds what the device has available."""


def _sizes(model):
    config = model.config
    layers, heads = num_layers_heads(model)
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or 0)
    ffn = int(getattr(config, "intermediate_size", 0) or getattr(config, "hidden_dim", 0) or 4 * hidden)
    return layers, heads, hidden, ffn


def estimate_bytes(method: str, model, length: int, batch: int = 1, params: dict | None = None) -> int:
    """Estimated peak bytes of one call of ``method`` on ``batch`` examples of ``length`` tokens (the
    formulas of the module docstring; within a factor of about 2)."""
    params = params or {}
    L, H, d, f = _sizes(model)
    n, b = int(length), int(batch)
    activations = n * L * (4 * d + f)  # per example
    attention = L * H * n * n
    result = {"attattr": L * H * n * n, "raw": L * H * n * n, "rollout": L * n * n, "alti": L * n * n,
              "globenc": L * n * n}.get(method, n)
    if method in ("raw", "rollout", "flow"):
        extra = attention
    elif method == "attattr":
        rows = params.get("internal_batch_size") or max(1, 4096 // max(n, 1))
        return FLOAT * (b * (activations + attention + result) + 3 * rows * (activations + attention))
    elif method == "ig_embed":
        rows = max(1, 4096 // max(n, 1))
        return FLOAT * (b * (activations + attention + result) + 2 * rows * (activations + attention))
    elif method in ("alti", "alti_logit"):
        extra = 4 * min(ALTI_CHUNK, n * n * d) // max(b, 1) + H * n * d
    elif method == "globenc":
        extra = 2 * min(GLOBENC_CHUNK, n * n * d) // max(b, 1) + H * n * d
    elif method == "decompx":
        extra = (n * n * d + 5 * min(DECOMPX_CHUNK, n * n * max(f, d))) // max(b, 1)
    else:  # gradient methods and LRP: activations and attention kept for backward, and their gradients
        extra = activations + 2 * attention
    return FLOAT * b * (activations + attention + extra + result)


def available_bytes(model) -> int | None:
    """Memory available to the model's device now: free CUDA memory for a CUDA model, the host's
    ``MemAvailable`` otherwise; None where it cannot be read."""
    device = model_device(model)
    try:
        import torch

        if getattr(device, "type", str(device)) == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
    except (RuntimeError, AssertionError, ImportError):
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _gb(value: int) -> str:
    return f"{value / 1e9:.2f} GB" if value >= 1e8 else f"{value / 1e6:.0f} MB"


ANNOUNCE_BYTES = 1 << 30  # a job whose estimated peak per batch reaches this says so before it starts


def announce(method: str, model, lengths, batch_size: int, params: dict | None = None,
             seen: dict | None = None, stream=None) -> str | None:
    """The one rule for estimates before long jobs: when the estimated peak memory of one batch of
    ``batch_size`` inputs at the longest of ``lengths`` reaches ``ANNOUNCE_BYTES``, print one line
    with the estimate (and the memory available) to ``stream`` (default stderr) before any work, and
    return it; None otherwise. ``seen`` (``method -> bytes`` announced; ``Engine`` keeps one per engine,
    so the windows of a stream and repeated calls print one line per new, larger peak). Called by
    ``Engine._prepare`` for every job (``attribute``, ``stream``, distributed) once its inputs are
    tokenized. Only memory is estimated; the progress bar gives the time left once the job runs."""
    if not lengths:
        return None
    longest, batch_size = max(lengths), max(1, min(int(batch_size), len(lengths)))  # a batch holds at most the job
    need = estimate_bytes(method, model, longest, batch_size, params)
    if need < ANNOUNCE_BYTES or (seen is not None and seen.get(method, 0) >= need):
        return None
    if seen is not None:
        seen[method] = need
    available = available_bytes(model)
    line = (f"{method}: estimated peak memory {_gb(need)} per batch of {batch_size} at {longest} tokens "
            f"({len(lengths)} input(s); {_gb(available) + ' available' if available else 'available memory unknown'}"
            f"; an estimate within a factor of about 2, docs/precision-and-state.md)")
    import sys

    print(line, file=stream or sys.stderr, flush=True)
    return line


def fit_batch(method: str, model, lengths, batch_size: int, params: dict | None = None,
              available: int | None = None) -> int:
    """The batch size a job of inputs with ``lengths`` tokens should use, from ``batch_size`` (the
    rule of the module docstring); warns once (``MemoryEstimateWarning``) when it lowers the batch
    or when one example is estimated not to fit. ``available``: bytes (default: ``available_bytes``)."""
    if not lengths:
        return batch_size
    if available is None:
        available = available_bytes(model)
        if available is None:
            return batch_size
    budget = int(available * SHARE)
    longest = max(lengths)
    size = max(1, int(batch_size))
    held = lambda size: min(size, len(lengths))  # noqa: E731  (a batch holds at most the job's inputs)
    first = estimate_bytes(method, model, longest, held(size), params)
    while size > 1 and estimate_bytes(method, model, longest, held(size), params) > budget:
        size //= 2
    need = estimate_bytes(method, model, longest, held(size), params)
    from .notices import warn

    if need > budget:
        warn(f"{method}: estimated peak memory {_gb(need)} for one input of {longest} tokens exceeds "
             f"{int(SHARE * 100)} % of the {_gb(available)} available; it may run out of memory (shorter inputs: "
             f"--max-length; or a method with a smaller working set, see docs/precision-and-state.md)",
             MemoryEstimateWarning)
    elif size < batch_size:
        warn(f"{method}: estimated peak memory {_gb(first)} for batches of {batch_size} at {longest} tokens "
             f"exceeds {int(SHARE * 100)} % of the {_gb(available)} available: batch size lowered to {size} "
             f"(estimate {_gb(need)})", MemoryEstimateWarning)
    return size


__all__ = ["ANNOUNCE_BYTES", "MemoryEstimateWarning", "announce", "available_bytes", "estimate_bytes", "fit_batch",
           "trim_heap"]


_LIBC: list = []


def trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``) between batches of a streamed
    job: batches of varying shapes fragment the heap, and without this the resident size of a long
    job creeps up with the number of batches although nothing is kept. A no-op off glibc."""
    if not _LIBC:
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else None
            _LIBC.append(libc if libc is not None and hasattr(libc, "malloc_trim") else None)
        except OSError:
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0].malloc_trim(0)
