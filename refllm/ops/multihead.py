"""Multi-head attention (Vaswani et al. 2017, "Attention Is All You Need", §3.2.2).

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O
    head_i             = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    Attention(q, k, v) = softmax(q k^T / sqrt(d) + M) v                        (§3.2.1, Eq. 1)

with W_i^Q: (c, d), W_i^K: (kdim, d), W_i^V: (vdim, d), W^O: (h d, c) and d = c / h. PyTorch stores
the transposes, stacked over heads: ``q_proj_weight`` (c, c) is [W_1^Q ... W_h^Q]^T, rows
``i*d:(i+1)*d`` belonging to head i (``in_proj_weight`` (3c, c) packs q, k and v weights when
kdim = vdim = c), ``out_proj_weight`` (c, c) is (W^O)^T; biases are added after each projection.

Semantics and signature: ``torch.nn.functional.multi_head_attention_forward`` as
``torch.nn.MultiheadAttention`` calls it (PyTorch 2.13), with the options spelled out:
``bias_k``/``bias_v`` (shape (1, 1, c)) append one learned key and value (after the projection)
to the s keys; ``add_zero_attn`` then appends a key and value of zeros to every head; both extend
the masks with a column that takes part. ``key_padding_mask`` (b, s) and ``attn_mask`` (t, s) or
(b*h, t, s) are bool with True = IGNORE (the opposite of SDPA's bool mask, where True = take part)
or additive float; they are added. Weights: (b, t, s') averaged over heads, (b, h, t, s') per
head, taken after dropout, as PyTorch. Layouts: (t, b, c), (b, t, c) with ``batch_first``, or
unbatched (t, c) whatever ``batch_first``; weights are always batch-first.

Notation map: PyTorch's embed_dim E is our c, num_heads our h, head_dim our d; L, S, N are our t,
s, b; Vaswani's d_model is c and d_k = d_v is d.

Deviation (from PyTorch): a query whose keys are all masked gets zeros (and zero weights), not NaN.
Deviation: ``is_causal`` is PyTorch's hint that ``attn_mask`` is the causal mask; PyTorch needs
``attn_mask`` with it and then uses either the mask or a causal mask depending on the path taken.
refllm checks the hint (``attn_mask`` must be the top-left causal mask, bool or 0/-inf float) and
always uses ``attn_mask``, so every path gives one result. Float masks must have query's dtype;
bad shapes and dtypes are ValueError/TypeError (PyTorch: AssertionError/RuntimeError); dropout
draws from ``generator`` through `refllm.ops._dropout` (PyTorch: the global generator, its own
kernel); ``dropout_p`` is applied as given (the module passes 0 in eval mode).
"""

from __future__ import annotations

import math

import torch
from einops import einsum, rearrange
from jaxtyping import Float
from torch import Tensor

from refllm._validation import require_choice
from refllm.ops._attention_args import SdpaArgs
from refllm.ops._dropout import draw_keep_mask
from refllm.ops._multihead_args import MhaArgs, check_mha_args
from refllm.ops.attention import attend
from refllm.ops.flash_attention import attend_tiled
from refllm.ops.masks import additive, combine, from_ignore, is_boolean

NEG_INF = float("-inf")


def _finish(a: MhaArgs, out: Tensor, weights: Tensor | None, batch_first: bool,
            average_attn_weights: bool) -> tuple[Tensor, Tensor | None]:
    """(b, t, c) output and (b, h, t, s') weights back to the caller's layout."""
    if weights is not None and average_attn_weights:
        weights = weights.mean(dim=1)  # (b, t, s')
    if a.unbatched:
        return out.squeeze(0), None if weights is None else weights.squeeze(0)
    return (out if batch_first else out.transpose(0, 1)), weights


# ----------------------------------------------------------------------------------------- naive


def _mask_term(a: MhaArgs, bi: int, hi: int, i: int, j: int, zero: Tensor) -> Tensor:
    """The additive mask of query i and key j in head hi of batch bi: 0, a float, or -inf."""
    term = zero
    if j >= a.key.shape[1]:  # bias_k or zero-attention key: always takes part
        return term
    entries = []  # MHA's convention: bool True = ignore, or additive
    if a.attn_mask is not None:
        entries.append(a.attn_mask[i, j] if a.attn_mask.ndim == 2 else
                       a.attn_mask[bi * a.h + hi, i, j])
    if a.key_padding_mask is not None:
        entries.append(a.key_padding_mask[bi, j])
    for m in entries:
        term = term + additive(from_ignore(m), zero.dtype)
    return term


def _head_attention_naive(a: MhaArgs, bi: int, hi: int, keep, dropout_p: float):
    """head_i of batch bi by loops over queries and keys: (t, d) and its (t, s') weights."""
    d = a.query.shape[-1] // a.h
    rows = slice(hi * d, (hi + 1) * d)  # head hi's rows of each projection weight

    def bias(b_x: Tensor | None) -> Tensor | int:
        return 0 if b_x is None else b_x[rows]

    q = a.query[bi] @ a.w_q[rows].T + bias(a.b_q)  # (t, d) = Q W_i^Q
    k = a.key[bi] @ a.w_k[rows].T + bias(a.b_k)  # (s, d) = K W_i^K
    v = a.value[bi] @ a.w_v[rows].T + bias(a.b_v)  # (s, d) = V W_i^V
    if a.bias_k is not None and a.bias_v is not None:
        k, v = torch.cat([k, a.bias_k[rows][None]]), torch.cat([v, a.bias_v[rows][None]])
    if a.zero_attn:
        k, v = torch.cat([k, torch.zeros_like(k[:1])]), torch.cat([v, torch.zeros_like(v[:1])])
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    outs, weights = [], []
    for i in range(q.shape[0]):
        scores = [torch.dot(q[i], k[j]) / math.sqrt(d) + _mask_term(a, bi, hi, i, j, zero)
                  for j in range(k.shape[0])]
        m = max(float(x.detach()) for x in scores)
        if m == NEG_INF:  # every key masked: no mass anywhere (refllm's convention)
            probs = [zero for _ in scores]
        else:
            exps = [torch.exp(x - m) for x in scores]
            total = sum(exps[1:], exps[0])
            probs = [e / total for e in exps]
        if keep is not None:
            probs = [p * keep[bi, hi, i, j] / (1.0 - dropout_p) for j, p in enumerate(probs)]
        out = sum((p * v[j] for j, p in enumerate(probs[1:], 1)), probs[0] * v[0])
        outs.append(out)
        weights.append(torch.stack(probs))
    return torch.stack(outs), torch.stack(weights)


def multi_head_attention_naive(
    query: Float[Tensor, "... t c"], key: Float[Tensor, "... s kdim"],
    value: Float[Tensor, "... s vdim"],
    num_heads: int, *, in_proj_weight: Tensor | None = None, in_proj_bias: Tensor | None = None,
    q_proj_weight: Tensor | None = None, k_proj_weight: Tensor | None = None,
    v_proj_weight: Tensor | None = None, bias_k: Tensor | None = None,
    bias_v: Tensor | None = None, add_zero_attn: bool = False, out_proj_weight: Tensor,
    out_proj_bias: Tensor | None = None, key_padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None, need_weights: bool = True, average_attn_weights: bool = True,
    is_causal: bool = False, dropout_p: float = 0.0, generator: torch.Generator | None = None,
    batch_first: bool = False,
) -> tuple[Float[Tensor, "... t c"], Float[Tensor, "... t s"] | None]:
    """Multi-head attention head by head, by explicit loops (the ground truth; float64, small)."""
    weights = dict(in_proj_weight=in_proj_weight, in_proj_bias=in_proj_bias,
                   q_proj_weight=q_proj_weight, k_proj_weight=k_proj_weight,
                   v_proj_weight=v_proj_weight, bias_k=bias_k, bias_v=bias_v,
                   out_proj_weight=out_proj_weight, out_proj_bias=out_proj_bias)
    a = check_mha_args(query, key, value, num_heads, weights, key_padding_mask, attn_mask,
                       is_causal, dropout_p, generator, batch_first, need_weights,
                       average_attn_weights, add_zero_attn)
    (b, t, _), s = a.query.shape, a.key.shape[1] + (a.bias_k is not None) + a.zero_attn
    keep = draw_keep_mask((b, a.h, t, s), float(dropout_p), generator=generator,
                          device=a.query.device)
    outs, probs = [], []
    for bi in range(b):
        heads = [_head_attention_naive(a, bi, hi, keep, float(dropout_p)) for hi in range(a.h)]
        concat = torch.cat([o for o, _ in heads], dim=-1)  # (t, h d)
        out = concat @ out_proj_weight.T  # Concat(head_1..head_h) W^O
        outs.append(out if out_proj_bias is None else out + out_proj_bias)
        probs.append(torch.stack([p for _, p in heads]))  # (h, t, s')
    return _finish(a, torch.stack(outs), torch.stack(probs) if need_weights else None,
                   batch_first, average_attn_weights)


# ------------------------------------------------------------------------------------------ fast

BACKENDS = ("fast", "flash")


def _check_backend(backend: object, need_weights: bool) -> None:
    require_choice("backend", backend, BACKENDS)
    if backend == "flash" and need_weights:
        raise ValueError("backend='flash' computes no attention weights; pass need_weights=False "
                         "(or use backend='fast')")



def _sdpa_mask(a: MhaArgs, n_extra: int) -> Tensor | None:
    """Both masks as one SDPA mask (b or 1, h or 1, t, s + n_extra); extra keys take part."""
    b, h = a.query.shape[0], a.h
    masks = []  # in SDPA's convention (True = take part), broadcast to (b, h, t, s)
    if a.attn_mask is not None:
        am = from_ignore(a.attn_mask)
        masks.append(am[None, None] if am.ndim == 2 else rearrange(am, "(b h) t s -> b h t s", h=h))
    if a.key_padding_mask is not None:
        masks.append(rearrange(from_ignore(a.key_padding_mask), "b s -> b 1 1 s"))
    total = combine(masks, a.query.dtype)
    if total is None:
        return None
    if is_boolean(total):
        return torch.nn.functional.pad(total, (0, n_extra), value=True)
    return torch.nn.functional.pad(total, (0, n_extra), value=0.0).expand(b, h, -1, -1)


def multi_head_attention(
    query: Float[Tensor, "... t c"], key: Float[Tensor, "... s kdim"],
    value: Float[Tensor, "... s vdim"],
    num_heads: int, *, in_proj_weight: Tensor | None = None, in_proj_bias: Tensor | None = None,
    q_proj_weight: Tensor | None = None, k_proj_weight: Tensor | None = None,
    v_proj_weight: Tensor | None = None, bias_k: Tensor | None = None,
    bias_v: Tensor | None = None, add_zero_attn: bool = False, out_proj_weight: Tensor,
    out_proj_bias: Tensor | None = None, key_padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None, need_weights: bool = True, average_attn_weights: bool = True,
    is_causal: bool = False, dropout_p: float = 0.0, generator: torch.Generator | None = None,
    batch_first: bool = False, backend: str = "fast",
) -> tuple[Float[Tensor, "... t c"], Float[Tensor, "... t s"] | None]:
    """Multi-head attention, vectorised with einops on refllm's fast SDPA (see the module docs).

    ``backend="flash"`` runs the heads through `refllm.ops.flash_attention` (tiled, O(t·d)
    memory) instead; it returns no weights, so it needs ``need_weights=False`` and
    ``dropout_p=0``.

    Shapes: query (t, b, c) [(b, t, c) if batch_first; (t, c) unbatched], key (s, b, kdim), value
    (s, b, vdim); returns the output shaped as query and the weights (b, t, s') averaged or
    (b, h, t, s') per head (batch axis dropped if unbatched), or None; s' = s + extra keys.

    >>> import torch
    >>> x = torch.randn(3, 2, 4, dtype=torch.float64)  # (t, b, c)
    >>> w_in, w_out = torch.randn(12, 4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    >>> out, weights = multi_head_attention(x, x, x, 2, in_proj_weight=w_in, out_proj_weight=w_out)
    >>> tuple(out.shape), tuple(weights.shape)
    ((3, 2, 4), (2, 3, 3))
    """
    weights = dict(in_proj_weight=in_proj_weight, in_proj_bias=in_proj_bias,
                   q_proj_weight=q_proj_weight, k_proj_weight=k_proj_weight,
                   v_proj_weight=v_proj_weight, bias_k=bias_k, bias_v=bias_v,
                   out_proj_weight=out_proj_weight, out_proj_bias=out_proj_bias)
    a = check_mha_args(query, key, value, num_heads, weights, key_padding_mask, attn_mask,
                       is_causal, dropout_p, generator, batch_first, need_weights,
                       average_attn_weights, add_zero_attn)
    _check_backend(backend, need_weights)
    b = a.query.shape[0]
    q = einsum(a.query, a.w_q, "b t c, o c -> b t o")  # o = h d
    k = einsum(a.key, a.w_k, "b s c, o c -> b s o")
    v = einsum(a.value, a.w_v, "b s c, o c -> b s o")
    if a.b_q is not None and a.b_k is not None and a.b_v is not None:
        q, k, v = q + a.b_q, k + a.b_k, v + a.b_v
    if a.bias_k is not None and a.bias_v is not None:  # one learned key/value after the s keys
        k = torch.cat([k, a.bias_k.expand(b, 1, -1)], dim=1)
        v = torch.cat([v, a.bias_v.expand(b, 1, -1)], dim=1)
    q, k, v = (rearrange(x, "b t (h d) -> b h t d", h=a.h) for x in (q, k, v))
    if a.zero_attn:  # one key/value of zeros appended to every head
        k = torch.cat([k, k.new_zeros(*k.shape[:2], 1, k.shape[-1])], dim=2)
        v = torch.cat([v, v.new_zeros(*v.shape[:2], 1, v.shape[-1])], dim=2)
    mask = _sdpa_mask(a, k.shape[2] - a.key.shape[1])
    # the heads' attention on arguments check_mha_args validated (each tensor checked once)
    checked = SdpaArgs(t=q.shape[2], s=k.shape[2], h=a.h, r=1, scale=1.0 / math.sqrt(q.shape[3]))
    if backend == "flash":
        out, probs = attend_tiled(q, k, v, mask, False, False, checked), None
    else:
        out, probs = attend(q, k, v, mask, float(dropout_p), False, checked, generator=generator)
        probs = probs if need_weights else None
    out = rearrange(out, "b h t d -> b t (h d)")  # Concat(head_1, ..., head_h)
    out = einsum(out, out_proj_weight, "b t o, c o -> b t c")  # ... W^O
    if out_proj_bias is not None:
        out = out + out_proj_bias
    return _finish(a, out, probs, batch_first, average_attn_weights)


__all__ = ["multi_head_attention", "multi_head_attention_naive"]
