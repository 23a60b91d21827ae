"""Tiled scaled dot-product attention with O(t·d) memory: the online softmax of FlashAttention-2.

Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning",
Algorithm 1 (forward) and Algorithm 2 (backward); Dao et al. 2022 ("FlashAttention") for the idea;
Milakov and Gimelshein 2018 for the online softmax. Per batch and head, query tile Q_i (rows i),
key/value tiles K_j, V_j in turn, starting from m = -inf, l = 0, O~ = 0:

    S_ij  = Q_i K_j^T * scale + M_ij                   (bq, bk)   M: mask, 0 / -inf / additive
    m_new = max(m, rowmax(S_ij))
    P~_ij = exp(S_ij - m_new)
    l     = exp(m - m_new) l  + rowsum(P~_ij)
    O~    = exp(m - m_new) O~ + P~_ij V_j
    O_i   = O~ / l,     L_i = m + log(l)               (the row's log-sum-exp: all that is kept)

Backward, recomputing the probabilities tile by tile from L (never the t×s matrix):

    D_i   = rowsum(dO_i ∘ O_i)
    P_ij  = exp(S_ij - L_i)
    dV_j += P_ij^T dO_i,     dP_ij = dO_i V_j^T,     dS_ij = P_ij ∘ (dP_ij - D_i)
    dQ_i += dS_ij K_j * scale,   dK_j += dS_ij^T Q_i * scale,   dM_ij = dS_ij

Memory: the output O (t, e), L (t,) and, in the backward, dQ, dK, dV; beyond them one (bq, bk)
tile of scores per head at a time. Causal tiles that lie wholly in the future are skipped (about
half the work), tiles wholly in the past need no mask. Under GQA the r = h / g query heads of a
group share K_j, V_j, and their dK, dV are summed over the group.

Signature and semantics: `refllm.ops.scaled_dot_product_attention` (checked by the same
``check_sdpa_args``), plus keyword-only tile sizes ``block_q`` and ``block_k``. The naive reference
is `refllm.ops.scaled_dot_product_attention_naive`.

Deviation (from refllm's SDPA): ``dropout_p`` must be 0 (ValueError otherwise); ``generator`` is
accepted and unused. The backward is not itself differentiable (no double backward; PyTorch's
flash kernel has none either). Fully masked rows give zeros and zero gradients (L = -inf), as in
refllm's SDPA. An additive float ``attn_mask`` that requires grad gets dS summed to its shape.
Deviation (from FlashAttention's kernels): the running sums accumulate in the inputs' dtype (the
CUDA kernels use float32 accumulators for bfloat16/float16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd.function import once_differentiable

from refllm._validation import require_int, require_real
from refllm.ops._attention_args import SdpaArgs, causal_offset, check_sdpa_args
from refllm.ops.masks import apply as apply_mask
from refllm.ops.masks import causal_allowed

NEG_INF = float("-inf")
BLOCK_Q, BLOCK_K = 256, 256  # chosen by measurement (docs/ops/flash_attention.md)


@dataclass(frozen=True)
class _Plan:
    """The tiling: sizes, the causal offset (None without is_causal) and the mask's full shape."""

    t: int
    s: int
    bq: int
    bk: int
    offset: int | None
    scale: float
    full: tuple[int, ...]  # (*batch, h, t, s): what attn_mask broadcasts to
    heads: tuple[int, int, int]  # (n, g, r): flattened batch, key/value heads, heads per group

    def query_tiles(self):
        return ((i0, min(i0 + self.bq, self.t)) for i0 in range(0, self.t, self.bq))

    def key_tiles(self, i0: int, i1: int):
        """Key tiles that query rows i0..i1-1 can see (causal: none wholly in their future)."""
        last = self.s if self.offset is None else min(self.s, i1 + self.offset)  # keys < last
        return ((j0, min(j0 + self.bk, self.s)) for j0 in range(0, max(last, 0), self.bk))


def _mask_tile(p: _Plan, mask: Tensor, i0: int, i1: int, j0: int, j1: int) -> Tensor:
    """attn_mask's (i0:i1, j0:j1) tile as (n, g, r, bq, bk); only the tile is copied."""
    return mask.expand(p.full)[..., i0:i1, j0:j1].reshape(*p.heads, i1 - i0, j1 - j0)


def _scores(p: _Plan, q_i: Tensor, k: Tensor, mask: Tensor | None, i0: int, i1: int, j0: int,
            j1: int) -> Tensor:
    """S_ij = (Q_i * scale) K_j^T + M_ij, a fresh (n, g, r, bq, bk) tensor (q_i pre-scaled)."""
    scores = q_i @ k[..., j0:j1, :].transpose(-1, -2)
    if p.offset is not None and j1 - 1 > i0 + p.offset:  # the tile crosses the causal diagonal
        causal = causal_allowed(i1 - i0, j1 - j0, p.offset, i0=i0, j0=j0, device=q_i.device)
        apply_mask(scores, causal, inplace=True)
    elif mask is not None:
        apply_mask(scores, _mask_tile(p, mask, i0, i1, j0, j1), inplace=True)
    return scores


def _forward_rows(p: _Plan, q_i: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, i0: int,
                  i1: int) -> tuple[Tensor, Tensor]:
    """Algorithm 1's inner loop for one query tile: O_i (n, g, r, bq, e) and L_i (..., bq, 1)."""
    m = q_i.new_full((*q_i.shape[:-1], 1), NEG_INF)  # running row maximum
    l = q_i.new_zeros(m.shape)  # running row sum of exp(S - m)  # noqa: E741
    acc = q_i.new_zeros((*q_i.shape[:-1], v.shape[-1]))  # running unnormalised output O~
    for j0, j1 in p.key_tiles(i0, i1):
        scores = _scores(p, q_i, k, mask, i0, i1, j0, j1)
        m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
        shift = torch.where(m_new == NEG_INF, 0.0, m_new)  # no key seen yet: exp(-inf - 0) = 0
        probs = scores.sub_(shift).exp_()  # P~_ij
        alpha = (m - shift).exp_()  # exp(m_old - m_new); 0 while m_old = -inf
        l = l.mul_(alpha).add_(probs.sum(-1, keepdim=True))  # noqa: E741
        acc = acc.mul_(alpha).add_(probs @ v[..., j0:j1, :])
        m = m_new
    seen = l > 0  # False: the row saw no key (fully masked): O = 0, L = -inf
    out = acc.div_(torch.where(seen, l, 1.0))
    lse = torch.where(seen, m + torch.where(seen, l, 1.0).log(), NEG_INF)
    return out, lse


def _sum_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``x`` over the dims along which ``shape`` was broadcast to x's shape."""
    x = x.sum(dim=tuple(range(x.ndim - len(shape)))) if x.ndim > len(shape) else x
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(dim=dims, keepdim=True) if dims else x


def _add_mask_grad(p: _Plan, dmask: Tensor, ds: Tensor, i0: int, i1: int, j0: int,
                   j1: int) -> None:
    """dM += dS for the tile, summed over the dims along which attn_mask was broadcast."""
    rows = slice(0, 1) if dmask.shape[-2] == 1 else slice(i0, i1)
    cols = slice(0, 1) if dmask.shape[-1] == 1 else slice(j0, j1)
    target = dmask[..., rows, cols]
    target += _sum_to(ds.reshape(*p.full[:-2], i1 - i0, j1 - j0), tuple(target.shape))


def _backward_rows(p: _Plan, ctx_tensors: tuple[Tensor, ...], grads: tuple[Tensor, ...],
                   i0: int, i1: int) -> None:
    """Algorithm 2 for one query tile: writes dQ_i, adds into dK, dV (and dM where asked)."""
    qs, k, v, mask, do, lse, delta = ctx_tensors
    dq, dk, dv, dmask = grads
    q_i, do_i, delta_i = qs[..., i0:i1, :], do[..., i0:i1, :], delta[..., i0:i1, :]
    shift = lse[..., i0:i1, :]
    shift = torch.where(shift == NEG_INF, 0.0, shift)  # fully masked rows: S = -inf, P = 0
    dq_i = torch.zeros_like(q_i)
    for j0, j1 in p.key_tiles(i0, i1):
        k_j, v_j = k[..., j0:j1, :], v[..., j0:j1, :]
        probs = _scores(p, q_i, k, mask, i0, i1, j0, j1).sub_(shift).exp_()  # P_ij
        dv[..., j0:j1, :] += (probs.transpose(-1, -2) @ do_i).sum(2, keepdim=True)  # over r
        ds = (do_i @ v_j.transpose(-1, -2)).sub_(delta_i).mul_(probs)  # P ∘ (dP - D)
        dq_i += ds @ k_j
        dk[..., j0:j1, :] += (ds.transpose(-1, -2) @ q_i).sum(2, keepdim=True)  # q_i has scale
        if dmask is not None:
            _add_mask_grad(p, dmask, ds, i0, i1, j0, j1)
    dq[..., i0:i1, :] = dq_i.mul_(p.scale)


class _FlashAttention(torch.autograd.Function):
    """O = softmax(Q K^T * scale + M) V on (n, g, r, t, d) inputs; saves only O and L."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: _Plan) -> Tensor:
        qs = q * p.scale
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        lse = q.new_empty((*q.shape[:-1], 1))
        for i0, i1 in p.query_tiles():
            out[..., i0:i1, :], lse[..., i0:i1, :] = _forward_rows(
                p, qs[..., i0:i1, :], k, v, mask, i0, i1)
        ctx.save_for_backward(q, k, v, mask, out, lse)
        ctx.plan = p
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        q, k, v, mask, out, lse = ctx.saved_tensors
        p: _Plan = ctx.plan
        delta = (grad_out * out).sum(-1, keepdim=True)  # D = rowsum(dO ∘ O)
        wants_dmask = mask is not None and ctx.needs_input_grad[3]
        grads = (torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v),
                 torch.zeros_like(mask) if wants_dmask else None)
        tensors = (q * p.scale, k, v, mask, grad_out, lse, delta)
        for i0, i1 in p.query_tiles():
            _backward_rows(p, tensors, grads, i0, i1)  # type: ignore[arg-type]  # None: no mask
        return *grads, None


def flash_attention(
    query: Float[Tensor, "... h t d"], key: Float[Tensor, "... g s d"],
    value: Float[Tensor, "... g s e"], attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False, *,
    causal_alignment: str = "top_left", generator: torch.Generator | None = None,
    block_q: int = BLOCK_Q, block_k: int = BLOCK_K,
) -> Float[Tensor, "... h t e"]:
    """Scaled dot-product attention by tiles (FlashAttention-2), O(t·d) memory; see module docs.

    >>> import torch
    >>> q = k = torch.eye(2, dtype=torch.float64)
    >>> v = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    >>> flash_attention(q, k, v, is_causal=True, block_q=1, block_k=1).squeeze(-1).tolist()[0]
    1.0
    """
    a = check_sdpa_args(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                        causal_alignment, generator)
    bq, bk = require_int("block_q", block_q, low=1), require_int("block_k", block_k, low=1)
    if require_real("dropout_p", dropout_p) != 0.0:
        raise ValueError(f"flash_attention supports dropout_p=0 only, got {dropout_p!r}; use "
                         "refllm.ops.scaled_dot_product_attention for attention dropout")
    return attend_tiled(query, key, value, attn_mask, is_causal, enable_gqa, a,
                        causal_alignment=causal_alignment, block_q=bq, block_k=bk)


def attend_tiled(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None,
                 is_causal: bool, enable_gqa: bool, a: SdpaArgs, *,
                 causal_alignment: str = "top_left", block_q: int = BLOCK_Q,
                 block_k: int = BLOCK_K) -> Tensor:
    """`flash_attention` on arguments already checked (``a`` as from `check_sdpa_args`; no
    dropout), for callers that validated them once at their own public function."""
    bq, bk = block_q, block_k
    lead = query.shape[:-3] if enable_gqa else query.shape[:-2]  # dims that index (b, h) pairs
    n, g, r = math.prod(lead), (a.h // a.r if enable_gqa else 1), (a.r if enable_gqa else 1)
    d, e = query.shape[-1], value.shape[-1]
    plan = _Plan(t=a.t, s=a.s, bq=bq, bk=bk, scale=a.scale,
                 offset=causal_offset(a.t, a.s, causal_alignment) if is_causal else None,
                 full=(*query.shape[:-2], a.t, a.s), heads=(n, g, r))
    out = _FlashAttention.apply(query.reshape(n, g, r, a.t, d), key.reshape(n, g, 1, a.s, d),
                                value.reshape(n, g, 1, a.s, e), attn_mask, plan)
    return out.reshape(*query.shape[:-1], e)


__all__ = ["flash_attention"]
