"""GlobEnc (Modarressi, Fayyaz, Yaghoobzadeh, Pilehvar; NAACL 2022, arXiv 2205.03286).

Norm-based token-to-token attribution of a whole post-LN encoder block, rolled out over layers.
Per layer, for receiver ``i`` and source ``j`` (official ``BertNormOutput``, all under no_grad):

    f_h(x_j)   = v_{h,j} W_O^h                       v includes b_V; W_O^h = head slice of W_O
    N          : Σ_h A_h[i,j] f_h(x_j)                              (Kobayashi et al. 2020)
    N_Res      : z_{i←j} = Σ_h A_h[i,j] f_h(x_j) + δ_ij x_i         (residual)
    N_ResLN    : g1_{i←j} = (z_{i←j} − mean_d z_{i←j}) / sqrt(Var(s1_i) + ε1) ⊙ γ1
    N_Enc      : g2_{i←j} = (g1_{i←j} − mean_d g1_{i←j}) / sqrt(Var(s2_i) + ε2) ⊙ γ2

``s1_i`` / ``s2_i`` are the *real* pre-LN1 / pre-LN2 vectors of token ``i`` (they contain b_O and
the FFN output); b_O, β1, β2 are not attributed; the FFN is skipped (its output is only in the
std of LN2). The matrix of the chosen ``variant`` is ``M^l[i,j] = ||·||₂`` (default ``"N_Enc"``,
i.e. GlobEnc). Aggregation as the official code: ``G^1 = M^1``, ``G^l = M^l · G^{l-1}`` with **no
identity and no row normalisation**. Output kind ``layer_matrix``: ``(L, n, n)`` of the
aggregated ``G^l``, so ``token_scores()`` = the [CLS] row of ``G^L`` (the paper's attribution).

Deviations (same numbers, less memory): heads are summed *before* the norm (the official code
builds ``(B, H, n, n, d)``; the sum over heads is linear, so the result is identical) and
receiver rows are processed in chunks of at most ``CHUNK_FLOATS`` (4M) floats, normalised in place,
and each layer's attention is released once its norms are taken, so memory is O(chunk) rather
than O(H·n²·d) (1.6 × result + model at 512 tokens on all-MiniLM-L6-v2, was 5.7 × with 32M-float
chunks and three live copies; docs/precision-and-state.md); padded
batches are allowed (official: batch 1); padding rows/columns are zero and cropped.
Post-LN encoders only (BERT, RoBERTa, ELECTRA, DistilBERT): the decomposition of a pre-LN block
(Llama) is a different formula, refused by ``check_model``. Class-agnostic, one forward pass.
"""
from __future__ import annotations

import torch

from ..capture import BlockRecorder, capture
from ..architecture import head_dim, layer_module, select_kept
from . import register
from .base import Batch, Method, require_post_ln, Choice

VARIANTS = ("N", "N_Res", "N_ResLN", "N_Enc")
BLOCK_PARTS = {"value": "out", "ln_attention": "in", "ln_ffn": "in"}  # what record_blocks keeps per layer


def record_blocks(model, batch: Batch):
    """One clean forward: ``(attentions, hidden_inputs, recorder)``; the recorder holds each layer's
    value-projection output and the inputs of its two LayerNorms (the real pre-LN states)."""
    with torch.no_grad(), BlockRecorder(model, BLOCK_PARTS) as rec, \
            capture(model, record="all", record_hidden=True) as cap:
        model(**batch.inputs)
    return cap.attention_list(), cap.hidden_inputs, rec


def _ln_linear(z, pre_ln, ln):
    """The linear part of LayerNorm applied to a summand ``z`` of the real input ``pre_ln``, in place
    (``z`` is overwritten and returned: one ``(B, c, n, d)`` chunk alive, not three)."""
    var = pre_ln.float().var(-1, unbiased=False, keepdim=True)  # (B, c, 1) per receiver
    scale = (var + ln.eps).rsqrt().unsqueeze(2)  # (B, c, 1, 1)
    return z.sub_(z.mean(-1, keepdim=True)).mul_(scale).mul_(ln.weight.float())


def layer_vectors(model, layer: int, attention, hidden, rec, rows: slice, upto: str = "N_Enc"):
    """Decomposition vectors of receivers ``rows`` of one layer: ``(B, c, n, d)`` for the variant
    ``upto`` ("N": Σ_h A f; "N_Res": + residual; "N_ResLN": g1; "N_Enc": g2)."""
    value = rec.outputs[layer, "value"].float()  # (B, n, H*d_h)
    B, n, _ = value.shape
    attention = select_kept(model, layer, attention)  # pruned model: the heads present
    heads = attention.shape[1]
    value = value.view(B, n, heads, head_dim(model)).transpose(1, 2)  # (B, H, n, d_h)
    w_o = layer_module(model, layer, "output").weight.float()  # (d, H*d_h)
    w_o = w_o.view(w_o.shape[0], heads, head_dim(model))
    transformed = torch.einsum("bhjv,dhv->bhjd", value, w_o)  # (B, H, n, d)
    z = torch.einsum("bhij,bhjd->bijd", attention[:, :, rows].float(), transformed)  # (B, c, n, d)
    if upto == "N":
        return z
    idx = torch.arange(rows.start, rows.stop, device=z.device)
    z[:, idx - rows.start, idx] += hidden[:, rows].float()
    if upto == "N_Res":
        return z
    z = _ln_linear(z, rec.inputs[layer, "ln_attention"][:, rows], layer_module(model, layer, "ln_attention"))
    if upto == "N_ResLN":
        return z
    return _ln_linear(z, rec.inputs[layer, "ln_ffn"][:, rows], layer_module(model, layer, "ln_ffn"))


CHUNK_FLOATS = 1 << 22  # floats of one (B, c, n, d) receiver chunk: 16 MB in fp32 (memory.GLOBENC_CHUNK)


def layer_norm_matrices(model, batch: Batch, variant: str = "N_Enc", max_elements: int = CHUNK_FLOATS):
    """Per layer ``(B, n, n)`` norms of the variant's vectors (not aggregated); receivers in chunks of
    at most ``max_elements`` floats of ``(B, c, n, d)`` vectors (at least one row; any chunk size gives
    the same numbers: every receiver row is computed on its own)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    attentions, hidden, rec = record_blocks(model, batch)
    B, n = batch.size, batch.max_length
    d = hidden[0].shape[-1]
    chunk = max(1, min(n, max_elements // max(1, B * n * d)))
    out = []
    with torch.no_grad():
        for l in range(len(attentions)):
            attention, attentions[l] = attentions[l], None  # released once its layer is done
            m = torch.empty(B, n, n, device=attention.device)
            for start in range(0, n, chunk):
                rows = slice(start, min(n, start + chunk))
                m[:, rows] = layer_vectors(model, l, attention, hidden[l], rec, rows, variant).norm(dim=-1)
            out.append(m)
            del attention
    return out


@register
class GlobEnc(Method):
    name = "globenc"
    title = "GlobEnc (norm-based encoder-layer attribution, rolled out)"
    paper = ("Modarressi, Fayyaz, Yaghoobzadeh, Pilehvar. GlobEnc: Quantifying Global Token Attribution by "
             "Incorporating the Whole Encoder Layer in Transformers. NAACL 2022")
    kind = "layer_matrix"
    signed = False
    target = "none"
    defaults = {"variant": "N_Enc"}
    schema = {"variant": Choice(*VARIANTS)}
    invariant = "sum_j g1_(i<-j) + beta1 + g1(b_O) equals the real LN1 output; all entries >= 0"

    def check_model(self, model):
        super().check_model(model)
        require_post_ln(model, "globenc")

    def compute(self, model, batch: Batch, units=None, **params):
        params = self.params(**params)
        layers = layer_norm_matrices(model, batch, params["variant"])
        out = []
        for b, n in enumerate(batch.lengths):
            joint, stacked = None, []
            for m in layers:
                m = m[b, :n, :n]
                joint = m if joint is None else m @ joint
                stacked.append(joint)
            out.append(torch.stack(stacked))
        return out
