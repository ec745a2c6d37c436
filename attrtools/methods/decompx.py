"""DecompX (Modarressi, Fayyaz, Aghazadeh, Yaghoobzadeh, Pilehvar; ACL 2023, "DecompX: Explaining
Transformers Decisions by Propagating Token Decomposition", arXiv 2306.02873).

Every hidden state is kept as a sum of per-input-token vectors, ``x_i = Σ_k x_{i<=k}`` (a tensor
``(n, n, d)`` per layer), starting from ``x^0_{i<=k} = δ_ik e_i`` (the embedding output), and the
decomposition is pushed through every component of a post-LN block and the classification head:

- attention: ``z_{i<=k} = Σ_h Σ_j A_h[i,j] x_{j<=k} W_V^h W_O^h + ω_{ik} b_Att``,
  ``b_Att = Σ_h b_V^h W_O^h + b_O`` (attention rows sum to 1);
- residual: ``z_{i<=k} + x_{i<=k}``;
- LayerNorm (Kobayashi): ``g(z_{i<=k}) = (z_{i<=k} − mean_d z_{i<=k}) / σ_i ⊙ γ + ω_{ik} β``, ``σ_i``
  the real std of token ``i``'s pre-LN state;
- FFN: ``ζ_{i<=k} = x_{i<=k} W_1 + ω_{ik} b_1``, activation by its zero-origin slope
  ``θ_i = act(ζ_i) / ζ_i`` (real pre-activation ``ζ_i = Σ_k ζ_{i<=k}``) applied elementwise to each part,
  then ``W_2`` and ``b_2`` the same way; residual; LN2;
- head: the first-token parts go through the pooler / pre-classifier (tanh, GELU or ReLU by the same
  zero-origin slope) and the classifier, giving ``y_{c<=k}`` with ``Σ_k y_{c<=k} = y_c``.

Bias decomposition "AbsDot": ``ω_{ik} = |b · p_{i<=k}| / Σ_k' |b · p_{i<=k'}|`` where ``p`` is the
decomposition the bias is added to. With biases included every step is exact, so the token scores
sum to the target logit (the invariant the tests check).

Output kind ``tokens``: ``y_{t<=k}`` for the target class ``t`` (default: predicted), signed.
Defaults of the official ``DecompXConfig`` (mohsenfayyaz/DecompX): include_biases, bias_decomp_type
"absdot", LN1/FFN/LN2 included, FFN_approx_type "GeLU_ZO", classifier with pooler, tanh "ZO".
Deviations: the slopes ``θ`` are read from the real forward (output of the FFN input projection and
input of the FFN output projection) instead of re-evaluating the activation, which makes the method
independent of the activation function (GELU, ReLU, tanh) and exact; where ``ζ = 0`` exactly the slope
is set to 0.5 (any value keeps the sum exact). The classifier-bias ω uses the dot product over the
class dimension. Each block is computed in passes of ``internal_batch_size`` tokens, exact: the
attention over source tokens (it mixes senders per source), the rest over receiver tokens (every
later step is per receiver), overwriting the decomposition, so an example holds one ``n² · d``
tensor plus ``chunk × n × d_ff`` buffers; the last block computes only the classifier's token. Post-LN encoders only; Llama is refused by ``check_model``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..adapters import adapter_for
from ..architecture import get_module, head_dim, layer_module
from . import register
from .decomposition import ln_params, real_sigma, trace_layers, value_output_weights
from .base import Batch, Method, UnsupportedArchitecture, require_post_ln, Choice, INTERNAL_BATCH

# The classification head is the adapter's ``classifier_head``: (first linear on the pooled token,
# classifier linear). The non-linearity between them is read from the real forward (zero-origin slope).


def _normalised(score: torch.Tensor) -> torch.Tensor:
    """``score / Σ_k score`` over the last axis; a row that sums to 0 spreads uniformly."""
    total = score.sum(-1, keepdim=True)
    uniform = torch.full_like(score, 1.0 / score.shape[-1])
    return torch.where(total > 0, score / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def absdot_weights(bias: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """``ω[..., k] = |b · p[..., k, :]| / Σ_k |b · p[..., k, :]|`` (parts: ``(..., n_k, d)``).

    A row whose parts are all orthogonal to ``b`` (or zero) spreads the bias uniformly."""
    return _normalised((parts @ bias).abs())


def add_bias(parts: torch.Tensor, bias, mode: str) -> torch.Tensor:
    if bias is None:
        return parts
    if mode == "absdot":
        weights = absdot_weights(bias, parts)
    elif mode == "uniform":
        weights = torch.full(parts.shape[:-1], 1.0 / parts.shape[-2], device=parts.device)
    else:
        raise ValueError(f"bias_decomp must be 'absdot' (official default) or 'uniform', got {mode!r}")
    return parts + weights.unsqueeze(-1) * bias


def ln_decompose(parts: torch.Tensor, pre: torch.Tensor, module, mode: str) -> torch.Tensor:
    """LayerNorm of a decomposed vector: parts ``(n_i, n_k, d)``, real pre-LN state ``pre (n_i, d)``."""
    gamma, beta, eps = ln_params(module)
    sigma = real_sigma(pre, eps).unsqueeze(1)  # (n_i, 1, 1)
    out = (parts - parts.mean(-1, keepdim=True)) / sigma
    if gamma is not None:
        out = out * gamma
    return add_bias(out, beta, mode)


def slope(pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Zero-origin slope ``act(ζ)/ζ`` from the real pre- and post-activation values."""
    safe = torch.where(pre == 0, torch.ones_like(pre), pre)
    return torch.where(pre == 0, torch.full_like(pre, 0.5), post / safe)


def linear_parts(parts, module, mode):
    """A Linear applied to a decomposition: weight to every part, bias split by ``mode``."""
    out = F.linear(parts, module.weight.float())
    return add_bias(out, module.bias.float() if module.bias is not None else None, mode)


@torch.no_grad()
def decompx_decompose(model, batch: Batch, bias_decomp: str = "absdot", internal_batch_size=None,
                      all_rows: bool = True):
    """Per example ``(last_hidden_parts (n, n, d), logit_parts (n, C), trace)``; exact sums:
    ``Σ_k last_hidden_parts[i, k] = hidden state of token i after the last block`` and
    ``Σ_k logit_parts[k] = logits``.

    ``internal_batch_size``: receiver tokens per pass (None: as many as keep the per-pass buffers
    near ``_CHUNK_FLOATS`` floats). ``all_rows=False`` computes only receiver 0 in the last block (all
    the classifier reads), and ``last_hidden_parts`` is then ``(1, n, d)``. Memory per example: the
    decomposition, ``n² · d`` floats, overwritten block by block, plus the per-pass buffers; time
    ``O(L · n² · d · (n + d_ff))``."""
    adapter = adapter_for(model)
    first_name, classifier_name = adapter.classifier_head
    first, classifier = get_module(model, first_name), get_module(model, classifier_name)
    trace = trace_layers(model, batch.inputs, extra={"pre": (first, "out"), "post": (classifier, "in")})
    num_layers = len(trace.hidden_in)
    results = []
    for b, n in enumerate(batch.lengths):
        x = trace.hidden_in[0][b, :n]
        parts = x.new_zeros((n, n, x.shape[-1]))  # (n_i, n_k, d): x^0_{i<=k} = δ_ik e_i, built in place
        parts[torch.arange(n), torch.arange(n)] = x
        for l in range(num_layers):
            receivers = n if all_rows or l < num_layers - 1 else 1
            parts = _block(model, trace, l, b, n, parts, bias_decomp, internal_batch_size, receivers)
        cls = parts[0]  # (n_k, d): the classifier reads the first token (all adapters here pool position 0)
        pre = linear_parts(cls, first, bias_decomp)  # (n_k, d)
        theta = slope(trace.head["pre"][b], trace.head["post"][b])
        logits = linear_parts(pre * theta, classifier, bias_decomp)  # (n_k, C)
        results.append((parts, logits))
    return results, trace


# Floats one buffer of a chunk may take (16 MiB in fp32; a chunk has about five live).
_CHUNK_FLOATS = 1 << 22


def _attention_residual(parts, attn, w_v, w_o, b_att, heads, d_h, mode, step, out):
    """Attention plus residual of a block, written into ``out (r, n_k, d)`` (``out`` may be ``parts``
    itself: each pass reads its sources' columns before writing them), in passes over the sources
    ``k`` (the attention mixes the senders ``j`` of one source, so source columns are independent).
    Returns the weights ``ω (r, n_k)`` that split ``b_Att`` (AbsDot: from ``|b_Att · attention part|``,
    normalised over the sources of each receiver once every pass is done)."""
    r, n = out.shape[0], parts.shape[1]
    if mode not in ("absdot", "uniform"):
        raise ValueError(f"bias_decomp must be 'absdot' (official default) or 'uniform', got {mode!r}")
    score = parts.new_zeros((r, n)) if mode == "absdot" else None
    for start in range(0, n, step):
        cols = slice(start, min(start + step, n))
        c = cols.stop - cols.start
        value = F.linear(parts[:, cols], w_v).view(n, c, heads, d_h).permute(2, 0, 1, 3)  # (H, n_j, c, d_h)
        mixed = torch.matmul(attn[:, :r], value.reshape(heads, n, c * d_h)).view(heads, r, c, d_h)
        del value
        attended = F.linear(mixed.permute(1, 2, 0, 3).reshape(r, c, heads * d_h), w_o)  # (r, c, d)
        del mixed
        if score is not None:
            score[:, cols] = (attended @ b_att).abs()
        out[:, cols] = attended + parts[:r, cols]
    return _normalised(score) if score is not None else parts.new_full((r, n), 1.0 / n)


def _block(model, trace, l, b, n, parts, mode, chunk, receivers):
    """One post-LN block on the decomposition ``parts (n_i, n_k, d)``; returns its first ``receivers``
    rows ``(receivers, n_k, d)``, written over ``parts`` when all rows are asked for, so an example
    holds one ``n² · d`` tensor plus chunk buffers. Attention and residual run in passes over sources
    ``k`` (``_attention_residual``); the rest in passes over receivers ``i``: the AbsDot weights
    normalise over the sources of one receiver, and LayerNorm and the FFN act per receiver. Both
    orders give the unchunked result up to fp32 round-off."""
    w_v, b_v, w_o, b_o, heads = value_output_weights(model, l)
    b_att = F.linear(b_v, w_o) + b_o  # b_Att = Σ_h b_V^h W_O^h + b_O
    ln1, ln2 = layer_module(model, l, "ln_attention"), layer_module(model, l, "ln_ffn")
    ffn_in, ffn_out = layer_module(model, l, "ffn_in"), layer_module(model, l, "ffn_out")
    theta = slope(trace.ffn_pre[l][b, :n], trace.ffn_act[l][b, :n])  # (n_i, d_ff)
    d = parts.shape[-1]
    # Tokens per pass: d-wide buffers of at most _CHUNK_FLOATS, the d_ff-wide FFN in sub-passes.
    step = chunk or max(1, _CHUNK_FLOATS // max(1, n * d))
    ffn_step = chunk or max(1, _CHUNK_FLOATS // max(1, n * ffn_in.out_features))
    out = parts if receivers == n else parts.new_empty((receivers,) + tuple(parts.shape[1:]))
    omega = _attention_residual(parts, trace.attentions[l][b, :, :n, :n], w_v, w_o, b_att, heads,
                                head_dim(model), mode, step, out)
    for start in range(0, receivers, step):
        rows = slice(start, min(start + step, receivers))
        c = rows.stop - rows.start
        z = out[rows] + omega[rows].unsqueeze(-1) * b_att  # attention + residual + its bias share
        h1 = ln_decompose(z, trace.ln1_in[l][b, rows], ln1, mode)
        for sub in range(0, c, ffn_step):
            part = slice(sub, min(sub + ffn_step, c))
            zeta = linear_parts(h1[part], ffn_in, mode)  # (c', n_k, d_ff)
            theta_part = theta[rows.start + part.start:rows.start + part.stop].unsqueeze(1)
            z[part] = linear_parts(zeta * theta_part, ffn_out, mode) + h1[part]  # FFN + residual
        out[rows] = ln_decompose(z, trace.ln2_in[l][b, rows], ln2, mode)
    return out


@register
class DecompX(Method):
    name = "decompx"
    title = "DecompX (token decomposition propagated through the whole model)"
    paper = ("Modarressi, Fayyaz, Aghazadeh, Yaghoobzadeh, Pilehvar. DecompX: Explaining Transformers "
             "Decisions by Propagating Token Decomposition. ACL 2023")
    kind = "tokens"
    target = "logit"
    defaults = {"bias_decomp": "absdot", "internal_batch_size": None}
    schema = {"bias_decomp": Choice("absdot", "uniform"), "internal_batch_size": INTERNAL_BATCH}
    invariant = "Σ_k y_{t<=k} = logit of the target class (biases included)"

    def check_model(self, model):
        super().check_model(model)
        require_post_ln(model, "DecompX")
        adapter = adapter_for(model)
        if adapter.classifier_head is None or len(adapter.classifier_head) != 2 or adapter.pooling != "first":
            raise UnsupportedArchitecture(
                f"DecompX needs a two-linear classification head on token 0; model_type {adapter.model_type!r} "
                "has none in its adapter")

    @torch.no_grad()
    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        self.check_model(model)
        if batch.targets is None:
            raise ValueError("DecompX needs target classes")
        results, _ = decompx_decompose(model, batch, params["bias_decomp"], params["internal_batch_size"],
                                        all_rows=False)
        return [logits[:, int(batch.targets[b])].contiguous() for b, (_, logits) in enumerate(results)]
