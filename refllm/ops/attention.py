"""Scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need", §3.2.1, Eq. 1).

    Attention(Q, K, V) = softmax(Q K^T * scale + M) V,        scale = 1 / sqrt(d) by default

per batch and head, with Q: (t, d), K: (s, d), V: (s, e) and M: (t, s) the mask (0 where a key takes
part, -inf where it does not; an additive float mask is added as is). Dropout (Srivastava et al.
2014) is applied to the weights softmax(...) before they multiply V. Grouped-query attention
(Ainslie et al. 2023, "GQA", §2.2): g key/value heads each serve h / g consecutive query heads
(``repeat_interleave`` of the key/value heads, as PyTorch's ``enable_gqa``).

Notation map: Vaswani's d_k is our d and d_v our e; PyTorch's docs write L, S, E, Ev, H_q, H_kv for
our t, s, d, e, h, g. Signature and semantics: `torch.nn.functional.scaled_dot_product_attention`,
plus keyword-only ``causal_alignment`` and ``generator``.

Deviation (from the paper): a query whose keys are all masked out (a row of M that is all -inf)
gets zeros and zero gradients, not NaN; PyTorch 2.13's math backend does the same.
Deviation (from PyTorch): leading batch dims of query, key and value must be equal (PyTorch
broadcasts them); a float ``attn_mask`` must have query's dtype; ``dropout_p`` must lie in [0, 1)
(PyTorch accepts 1.0); ``is_causal=True`` with ``attn_mask`` is an error on every path (PyTorch's
default CPU path ignores the mask); t, s and d must be >= 1; dropout draws from ``generator``.
Causal masks align top-left as PyTorch (query i sees keys j <= i, even when t != s);
``causal_alignment="bottom_right"`` aligns the last query with the last key (j <= i + s - t).

The weights returned by the ``*_with_weights`` functions are taken *after* dropout (scaled by
1 / (1 - p)), as ``torch.nn.functional.multi_head_attention_forward`` returns them.
"""

from __future__ import annotations

import torch
from einops import einsum, repeat
from jaxtyping import Float
from torch import Tensor

from refllm.ops._attention_args import SdpaArgs, causal_offset, check_sdpa_args
from refllm.ops._attention_softmax import masked_softmax
from refllm.ops._dropout import apply_keep_mask, draw_keep_mask
from refllm.ops.masks import apply as apply_mask
from refllm.ops.masks import causal_allowed, is_boolean
from refllm.ops.softmax import softmax_naive

NEG_INF = float("-inf")

# ----------------------------------------------------------------------------------------- naive


def scaled_dot_product_attention_with_weights_naive(
    query: Float[Tensor, "... h t d"], key: Float[Tensor, "... g s d"],
    value: Float[Tensor, "... g s e"], attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False, *,
    causal_alignment: str = "top_left", generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, "... h t e"], Float[Tensor, "... h t s"]]:
    """Attention and its weights, by explicit loops over batch, head, query and key."""
    a = check_sdpa_args(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                        causal_alignment, generator)
    full = (*query.shape[:-2], a.t, a.s)  # (..., h, t, s)
    keep = draw_keep_mask(full, float(dropout_p), generator=generator, device=query.device)
    q = query.reshape(-1, a.h, a.t, query.shape[-1])  # (b, h, t, d), all batch dims as one b
    k = key.reshape(q.shape[0], -1, a.s, key.shape[-1])  # (b, g, s, d)
    v = value.reshape(q.shape[0], -1, a.s, value.shape[-1])  # (b, g, s, e)
    mask = None if attn_mask is None else attn_mask.expand(full).reshape(q.shape[0], a.h, a.t, a.s)
    keep = None if keep is None else keep.reshape(q.shape[0], a.h, a.t, a.s)
    offset = causal_offset(a.t, a.s, causal_alignment) if is_causal else None
    outs, weights = [], []
    for bi in range(q.shape[0]):
        for hi in range(a.h):
            kv = hi // a.r  # the key/value head that serves query head hi
            for i in range(a.t):
                scores = []
                for j in range(a.s):
                    score = torch.dot(q[bi, hi, i], k[bi, kv, j]) * a.scale
                    if offset is not None and j > i + offset:
                        score = score * 0 + NEG_INF  # causal: key j lies in query i's future
                    elif mask is not None and mask.dtype == torch.bool and not mask[bi, hi, i, j]:
                        score = score * 0 + NEG_INF  # boolean mask: False = does not take part
                    elif mask is not None and mask.dtype != torch.bool:
                        score = score + mask[bi, hi, i, j]  # additive float mask
                    scores.append(score)
                probs = softmax_naive(torch.stack(scores))
                if keep is not None:
                    probs = torch.stack([apply_keep_mask(probs[j], keep[bi, hi, i, j], dropout_p)
                                         for j in range(a.s)])
                out = probs[0] * v[bi, kv, 0]
                for j in range(1, a.s):
                    out = out + probs[j] * v[bi, kv, j]
                outs.append(out)
                weights.append(probs)
    out = torch.stack(outs).reshape(*query.shape[:-1], value.shape[-1])
    return out, torch.stack(weights).reshape(full)


def scaled_dot_product_attention_naive(
    query: Float[Tensor, "... h t d"], key: Float[Tensor, "... g s d"],
    value: Float[Tensor, "... g s e"], attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False, *,
    causal_alignment: str = "top_left", generator: torch.Generator | None = None,
) -> Float[Tensor, "... h t e"]:
    """Scaled dot-product attention by explicit loops (the ground truth: float64, small sizes)."""
    return scaled_dot_product_attention_with_weights_naive(
        query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
        causal_alignment=causal_alignment, generator=generator)[0]


# ------------------------------------------------------------------------------------------ fast


def scaled_dot_product_attention_with_weights(
    query: Float[Tensor, "... h t d"], key: Float[Tensor, "... g s d"],
    value: Float[Tensor, "... g s e"], attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False, *,
    causal_alignment: str = "top_left", generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, "... h t e"], Float[Tensor, "... h t s"]]:
    """Attention and its weights (after dropout), vectorised; equal to the naive version.

    >>> import torch
    >>> q = k = torch.eye(2, dtype=torch.float64)
    >>> v = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    >>> out, probs = scaled_dot_product_attention_with_weights(q, k, v, is_causal=True)
    >>> out.squeeze(-1).tolist()[0], probs[0].tolist()
    (1.0, [1.0, 0.0])
    """
    a = check_sdpa_args(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                        causal_alignment, generator)
    return attend(query, key, value, attn_mask, dropout_p, is_causal, a,
                  causal_alignment=causal_alignment, generator=generator)


def attend(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None,
           dropout_p: float, is_causal: bool, a: SdpaArgs, *, causal_alignment: str = "top_left",
           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """`scaled_dot_product_attention_with_weights` on arguments already checked (``a`` is what
    `check_sdpa_args` returned, or the equivalent a caller that checked them built): for callers
    such as multi-head attention, so that a tensor is validated once, at the public function."""
    if a.r > 1:  # GQA: each of the g key/value heads serves r consecutive query heads
        key = repeat(key, "... g s d -> ... (g r) s d", r=a.r)
        value = repeat(value, "... g s e -> ... (g r) s e", r=a.r)
    scores = einsum(query * a.scale, key, "... t d, ... s d -> ... t s")
    allowed = None  # bool, broadcast to scores; False -> -inf (masked inside the softmax)
    if is_causal:
        allowed = causal_allowed(a.t, a.s, causal_offset(a.t, a.s, causal_alignment),
                                 device=query.device)
    elif is_boolean(attn_mask):
        allowed = attn_mask
    else:
        scores = apply_mask(scores, attn_mask)  # additive (or None)
    probs = masked_softmax(scores, allowed)  # softmax(scores masked), one (t, s) matrix kept
    keep = draw_keep_mask(tuple(scores.shape), float(dropout_p), generator=generator,
                          device=query.device)
    probs = apply_keep_mask(probs, keep, dropout_p)
    return einsum(probs, value, "... t s, ... s e -> ... t e"), probs


def scaled_dot_product_attention(
    query: Float[Tensor, "... h t d"], key: Float[Tensor, "... g s d"],
    value: Float[Tensor, "... g s e"], attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False, *,
    causal_alignment: str = "top_left", generator: torch.Generator | None = None,
) -> Float[Tensor, "... h t e"]:
    """Scaled dot-product attention with PyTorch's signature; vectorised (see the module docs)."""
    return scaled_dot_product_attention_with_weights(
        query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
        causal_alignment=causal_alignment, generator=generator)[0]


__all__ = [
    "scaled_dot_product_attention", "scaled_dot_product_attention_naive",
    "scaled_dot_product_attention_with_weights", "scaled_dot_product_attention_with_weights_naive",
]
