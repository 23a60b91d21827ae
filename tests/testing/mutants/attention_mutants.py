"""Planted bugs in scaled dot-product attention, each in a plausible user kernel.

    out = softmax(q k^T * scale + mask) v        (Vaswani et al. 2017, §3.2.1, Eq. 1)

Every function here has the signature of ``torch.nn.functional.scaled_dot_product_attention``.
Two correct kernels come first (``eager_attention``: the textbook math; ``flash_attention``: a
blockwise forward with an online softmax, FlashAttention-2, Dao 2023, Algorithm 1; and
``attention_with_custom_backward``: a hand-written backward, FlashAttention-2 §3.1.2), then the
mutants, each ONE bug away from one of them. The small helpers (``_bias``, ``_softmax_rows``,
``_repeat_kv``) are correct and shared; a mutant that needs one of them wrong spells its own.

Axes (docs/glossary.md): b batch, h query heads, g key/value heads, t queries, s keys, d query/key
width, e value width.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")
BLOCK = 2  # key block of the blockwise kernels: small, so that s = 1..6 spans several blocks


# ----------------------------------------------------------------------------- correct helpers
def _scale(query: torch.Tensor, scale: float | None) -> float:
    return query.size(-1) ** -0.5 if scale is None else scale  # 1 / sqrt(d): the query width


def _repeat_kv(query, key, value, enable_gqa):
    """Grouped-query attention: query head i reads key/value head i // (h / g)."""
    if not enable_gqa or key.dim() < 3 or key.size(-3) == query.size(-3):
        return key, value
    r = query.size(-3) // key.size(-3)
    return key.repeat_interleave(r, dim=-3), value.repeat_interleave(r, dim=-3)


def _bias(attn_mask, is_causal, t, s, dtype):
    """Additive bias (..., t, s): 0 where a key takes part, -inf where it is masked."""
    if is_causal:  # top-left aligned: query i sees keys 0..i (PyTorch's convention)
        keep = torch.ones(t, s, dtype=torch.bool).tril()
        return torch.zeros(t, s, dtype=dtype).masked_fill(~keep, NEG_INF)
    if attn_mask is None:
        return torch.zeros(t, s, dtype=dtype)
    if attn_mask.dtype == torch.bool:  # SDPA: True = takes part
        return torch.zeros(attn_mask.shape, dtype=dtype).masked_fill(~attn_mask, NEG_INF)
    return attn_mask


def _softmax_rows(scores):
    """Softmax over keys; a row with every key masked gives zeros (and zero gradients)."""
    dead = torch.isneginf(scores).all(-1, keepdim=True)
    return torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)


# ----------------------------------------------------------------------------- correct kernels
def eager_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                    scale=None, enable_gqa=False):
    """The textbook math (correct)."""
    key, value = _repeat_kv(query, key, value, enable_gqa)
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


def _flash(query, key, value, bias, scale, rescale, block=BLOCK):
    """Blockwise forward over key blocks with a running max m, sum l and output acc.

    ``rescale(m, m_new, l, acc, p, v_j) -> (m, l, acc)`` folds one block in; the correct one is
    `_online_softmax_step` (FlashAttention-2, Algorithm 1, lines 8-10). ``block`` keys a tile.
    """
    m = l = acc = None
    for j in range(0, key.size(-2), block):
        k_j, v_j = key[..., j:j + block, :], value[..., j:j + block, :]
        s_j = query @ k_j.transpose(-2, -1) * scale + bias[..., j:j + block]
        if m is None:
            m = torch.full((*s_j.shape[:-1], 1), NEG_INF, dtype=s_j.dtype)
            l = torch.zeros_like(m)
            acc = torch.zeros((*s_j.shape[:-1], value.size(-1)), dtype=s_j.dtype)
        m_new = torch.maximum(m, s_j.amax(-1, keepdim=True)).detach()  # (out is
        # independent of the max: no gradient through it)
        m, l, acc = rescale(m, m_new, l, acc, s_j, v_j)
    return acc / torch.where(l > 0, l, torch.ones_like(l))  # a fully masked row: acc = 0


def _online_softmax_step(m, m_new, l, acc, s_j, v_j):
    m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(s_j - m_safe)
    alpha = torch.exp(m - m_safe)  # rescales what was summed under the old max
    return m_new, alpha * l + p.sum(-1, keepdim=True), alpha * acc + p @ v_j


def _flash_prologue(query, key, value, attn_mask, is_causal, scale, enable_gqa):
    key, value = _repeat_kv(query, key, value, enable_gqa)
    bias = _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return key, value, bias, _scale(query, scale)


def flash_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                    scale=None, enable_gqa=False):
    """A FlashAttention-style blockwise forward (correct)."""
    key, value, bias, scale = _flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                              enable_gqa)
    return _flash(query, key, value, bias, scale, _online_softmax_step)


class _AttentionFn(torch.autograd.Function):
    """Attention with a hand-written backward (FlashAttention-2 §3.1.2 without the tiling):
    dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dP * P)),  dQ = dS K s,  dK = dS^T Q s."""

    @staticmethod
    def forward(ctx, query, key, value, bias, scale):
        probs = _softmax_rows(query @ key.transpose(-2, -1) * scale + bias)
        ctx.save_for_backward(query, key, value, probs)
        ctx.scale = scale
        return probs @ value

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, probs = ctx.saved_tensors
        d_value = probs.transpose(-2, -1) @ grad_out
        d_probs = grad_out @ value.transpose(-2, -1)
        d_scores = probs * (d_probs - (d_probs * probs).sum(-1, keepdim=True))
        d_query = d_scores @ key * ctx.scale
        d_key = d_scores.transpose(-2, -1) @ query * ctx.scale
        return d_query, d_key, d_value, None, None


def attention_with_custom_backward(query, key, value, attn_mask=None, dropout_p=0.0,
                                   is_causal=False, scale=None, enable_gqa=False):
    """Forward and a hand-written backward (correct)."""
    key, value = _repeat_kv(query, key, value, enable_gqa)
    bias = _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _AttentionFn.apply(query, key, value, bias, _scale(query, scale))


# ----------------------------------------------------------------------------- scale
def scale_from_value_width(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                           scale=None, enable_gqa=False):
    # Modelled on juho-lee/set_transformer#18 (scale from dim_V, not the key width).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    scale = value.size(-1) ** -0.5 if scale is None else scale  # BUG: e, not d
    scores = query @ key.transpose(-2, -1) * scale
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


def explicit_scale_ignored(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                           scale=None, enable_gqa=False):
    # Modelled on zzhhjjj/gemma-triton-flash-attn#6 (the kernel hard-codes 1/sqrt(D)).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    scores = query @ key.transpose(-2, -1) * query.size(-1) ** -0.5  # BUG: `scale` dropped
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


def mask_added_before_scaling(query, key, value, attn_mask=None, dropout_p=0.0,
                              is_causal=False, scale=None, enable_gqa=False):
    # Modelled on NVIDIA/Megatron-LM#848 (scale applied at the wrong point of the scores).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    scores = query @ key.transpose(-2, -1)
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores * _scale(query, scale)) @ value  # BUG: the float mask is scaled


# ----------------------------------------------------------------------------- masks
def bool_mask_inverted(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                       scale=None, enable_gqa=False):
    # Modelled on rasbt/LLMs-from-scratch#1061 and pytorch/pytorch#170415 (MHA's True = ignore).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype).masked_fill(
            attn_mask, NEG_INF)  # BUG: True taken as "masked out"
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


def float_mask_cast_to_bool(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                            scale=None, enable_gqa=False):
    # Modelled on pytorch/pytorch#103963 (a float mask read as a boolean one).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    if attn_mask is not None:
        attn_mask = attn_mask.bool() if attn_mask.is_floating_point() else attn_mask  # BUG
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


def fully_masked_rows_give_nan(query, key, value, attn_mask=None, dropout_p=0.0,
                               is_causal=False, scale=None, enable_gqa=False):
    # Modelled on pytorch/pytorch#103749 and Xilinx/brevitas#1591 (softmax of an all -inf row).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return torch.softmax(scores, dim=-1) @ value  # BUG: NaN where a query sees no key


def fully_masked_rows_average_values(query, key, value, attn_mask=None, dropout_p=0.0,
                                     is_causal=False, scale=None, enable_gqa=False):
    # Modelled on patrick-kidger/equinox#274 (mask with the dtype's min instead of -inf).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    bias = _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    scores = scores + bias.clamp_min(torch.finfo(query.dtype).min)  # BUG: dead rows -> mean(v)
    return torch.softmax(scores, dim=-1) @ value


# ----------------------------------------------------------------------------- causal
def causal_bottom_right(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                        scale=None, enable_gqa=False):
    # Modelled on Dao-AILab/flash-attention#517 (flash-attn >= 2.1 aligns bottom-right).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    t, s = query.size(-2), key.size(-2)
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    if is_causal:  # BUG: query i sees keys 0..i + s - t (PyTorch: 0..i)
        keep = torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)
        scores = scores.masked_fill(~keep, NEG_INF)
    else:
        scores = scores + _bias(attn_mask, False, t, s, query.dtype)
    return _softmax_rows(scores) @ value


def causal_mask_hides_the_diagonal(query, key, value, attn_mask=None, dropout_p=0.0,
                                   is_causal=False, scale=None, enable_gqa=False):
    # Modelled on Dao-AILab/flash-attention#20 (causal index arithmetic off by one).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    t, s = query.size(-2), key.size(-2)
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    if is_causal:
        future = torch.ones(t, s, dtype=torch.bool).triu(diagonal=0)  # BUG: diagonal=1
        scores = scores.masked_fill(future, NEG_INF)
    else:
        scores = scores + _bias(attn_mask, False, t, s, query.dtype)
    return _softmax_rows(scores) @ value


# ----------------------------------------------------------------------------- GQA
def gqa_tiles_heads(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                    scale=None, enable_gqa=False):
    # Modelled on onnx/onnx#7274 and apple/axlearn#842 (tile instead of repeat_interleave).
    if enable_gqa and key.size(-3) != query.size(-3):
        r = query.size(-3) // key.size(-3)
        reps = (1,) * (key.dim() - 3) + (r, 1, 1)
        key, value = key.repeat(*reps), value.repeat(*reps)  # BUG: heads 0,1,0,1 not 0,0,1,1
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


class _RepeatKV(torch.autograd.Function):
    """A custom head expansion (g -> h) whose backward reduces over the group."""

    @staticmethod
    def forward(ctx, x, r):
        ctx.r = r
        return x.repeat_interleave(r, dim=-3)

    @staticmethod
    def backward(ctx, grad):
        *lead, h, s, w = grad.shape
        grouped = grad.reshape(*lead, h // ctx.r, ctx.r, s, w)
        return grouped.mean(-3), None  # BUG: the group's gradients must be summed


def gqa_backward_averages_the_group(query, key, value, attn_mask=None, dropout_p=0.0,
                                    is_causal=False, scale=None, enable_gqa=False):
    # Modelled on apple/axlearn#938 (hand-rolled KV-head repetition in a flash kernel).
    if enable_gqa and key.size(-3) != query.size(-3):
        r = query.size(-3) // key.size(-3)
        key, value = _RepeatKV.apply(key, r), _RepeatKV.apply(value, r)
    scores = query @ key.transpose(-2, -1) * _scale(query, scale)
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


# ----------------------------------------------------------------------------- online softmax
def _step_without_output_rescale(m, m_new, l, acc, s_j, v_j):
    m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(s_j - m_safe)
    alpha = torch.exp(m - m_safe)
    return m_new, alpha * l + p.sum(-1, keepdim=True), acc + p @ v_j  # BUG: acc not rescaled


def flash_output_not_rescaled(query, key, value, attn_mask=None, dropout_p=0.0,
                              is_causal=False, scale=None, enable_gqa=False):
    # Modelled on PaddleJitLab/CUDATutorial#69 (online-softmax update of the running state).
    key, value, bias, scale = _flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                              enable_gqa)
    return _flash(query, key, value, bias, scale, _step_without_output_rescale)


def _step_without_sum_rescale(m, m_new, l, acc, s_j, v_j):
    m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(s_j - m_safe)
    alpha = torch.exp(m - m_safe)
    return m_new, l + p.sum(-1, keepdim=True), alpha * acc + p @ v_j  # BUG: l not rescaled


def flash_sum_not_rescaled(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                           scale=None, enable_gqa=False):
    # Modelled on PaddleJitLab/CUDATutorial#69 (the running row sum l of the online softmax).
    key, value, bias, scale = _flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                              enable_gqa)
    return _flash(query, key, value, bias, scale, _step_without_sum_rescale)


def _step_with_inverted_rescale(m, m_new, l, acc, s_j, v_j):
    m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(s_j - m_safe)
    m_old = torch.where(torch.isneginf(m), m_safe, m)  # (empty state: any finite factor)
    alpha = torch.exp(m_safe - m_old)  # BUG: exp(m_new - m_old), should be exp(m_old - m_new)
    return m_new, alpha * l + p.sum(-1, keepdim=True), alpha * acc + p @ v_j


def flash_rescale_sign_flipped(query, key, value, attn_mask=None, dropout_p=0.0,
                               is_causal=False, scale=None, enable_gqa=False):
    # Modelled on deepseek-ai/FlashMLA#177 (sign of the online-softmax rescaling factor).
    key, value, bias, scale = _flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                              enable_gqa)
    return _flash(query, key, value, bias, scale, _step_with_inverted_rescale)


TAU = 8.0  # FlashAttention-4's threshold: skip the rescale while the max grows by < tau


def _step_with_lazy_rescale(m, m_new, l, acc, s_j, v_j):
    grow = m_new - m > TAU  # (always true on the first block, where m = -inf)
    m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(s_j - m_safe)  # P in the frame of the new max ...
    alpha = torch.where(grow, torch.exp(m - m_safe), torch.ones_like(m))
    m_next = torch.where(grow, m_new, m)  # ... but the old max is kept where it grew by < tau
    # BUG: in the skip branch P must be brought back to the old frame, P * exp(m_new - m_old)
    return m_next, alpha * l + p.sum(-1, keepdim=True), alpha * acc + p @ v_j


def flash_lazy_rescale_wrong_frame(query, key, value, attn_mask=None, dropout_p=0.0,
                                   is_causal=False, scale=None, enable_gqa=False):
    # Modelled on meta-pytorch/MSLK#242 and ROCm/rocm-libraries#7194 (FA4 conditional rescale).
    key, value, bias, scale = _flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                              enable_gqa)
    return _flash(query, key, value, bias, scale, _step_with_lazy_rescale)


# ----------------------------------------------------------------------------- memory layout
def ignores_strides(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                    scale=None, enable_gqa=False):
    # Modelled on kernels that index raw storage assuming a contiguous row-major layout.
    def as_contiguous(x):  # BUG: reinterprets the storage; x.contiguous() was meant
        strides, step = [], 1
        for n in reversed(x.shape):
            strides.insert(0, step)
            step *= n
        return torch.as_strided(x, x.shape, strides)

    query, key, value = as_contiguous(query), as_contiguous(key), as_contiguous(value)
    return eager_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)


# ----------------------------------------------------------------------------- backward only
class _NoRowSumFn(_AttentionFn):
    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, probs = ctx.saved_tensors
        d_value = probs.transpose(-2, -1) @ grad_out
        d_scores = probs * (grad_out @ value.transpose(-2, -1))  # BUG: - rowsum(dP * P) dropped
        d_query = d_scores @ key * ctx.scale
        d_key = d_scores.transpose(-2, -1) @ query * ctx.scale
        return d_query, d_key, d_value, None, None


def softmax_backward_without_row_sum(query, key, value, attn_mask=None, dropout_p=0.0,
                                     is_causal=False, scale=None, enable_gqa=False):
    # Modelled on FlashAttention-2 §3.1.2 (the D = rowsum(dO * O) term of the backward).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    bias = _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _NoRowSumFn.apply(query, key, value, bias, _scale(query, scale))


class _UnscaledKeyGradFn(_AttentionFn):
    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, probs = ctx.saved_tensors
        d_value = probs.transpose(-2, -1) @ grad_out
        d_probs = grad_out @ value.transpose(-2, -1)
        d_scores = probs * (d_probs - (d_probs * probs).sum(-1, keepdim=True))
        d_query = d_scores @ key * ctx.scale
        d_key = d_scores.transpose(-2, -1) @ query  # BUG: softmax scale forgotten in dK
        return d_query, d_key, d_value, None, None


def key_grad_missing_scale(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                           scale=None, enable_gqa=False):
    # Modelled on mosaicml/examples#209 (softmax_scale threaded through the flash kernels).
    key, value = _repeat_kv(query, key, value, enable_gqa)
    bias = _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _UnscaledKeyGradFn.apply(query, key, value, bias, _scale(query, scale))


# ----------------------------------------------------------------------------- scale and shape
def _flash_from_a_finite_max(query, key, value, bias, scale, rescale, block=BLOCK):
    m = l = acc = None
    for j in range(0, key.size(-2), block):
        k_j, v_j = key[..., j:j + block, :], value[..., j:j + block, :]
        s_j = query @ k_j.transpose(-2, -1) * scale + bias[..., j:j + block]
        if m is None:
            m = torch.full((*s_j.shape[:-1], 1), -1e4, dtype=s_j.dtype)  # BUG: -inf was meant
            l = torch.zeros_like(m)
            acc = torch.zeros((*s_j.shape[:-1], value.size(-1)), dtype=s_j.dtype)
        m_new = torch.maximum(m, s_j.amax(-1, keepdim=True)).detach()
        m, l, acc = rescale(m, m_new, l, acc, s_j, v_j)
    return acc / torch.where(l > 0, l, torch.ones_like(l))


def flash_running_max_starts_at_minus_1e4(query, key, value, attn_mask=None, dropout_p=0.0,
                                          is_causal=False, scale=None, enable_gqa=False):
    # Modelled on online-softmax kernels that start the running max at a "very negative" finite
    # constant (-1e4, -10000.0, -FLT_MAX / 2 in half precision): a row whose logits all lie
    # below it has exp(s - m) = 0 everywhere and gives zeros. Unit-scale logits never get there.
    key, value, bias, scale = _flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                              enable_gqa)
    return _flash_from_a_finite_max(query, key, value, bias, scale, _online_softmax_step)


GRID_LIMIT = 65535  # CUDA's limit on gridDim.y and gridDim.z


def slices_past_the_grid_limit_skipped(query, key, value, attn_mask=None, dropout_p=0.0,
                                       is_causal=False, scale=None, enable_gqa=False):
    # Modelled on flashinfer-ai/flashinfer#3125 and pytorch/pytorch#142228: one block per
    # (batch, head) slice on a grid axis limited to 65535; past it the launch fails without an
    # exception and the slices keep whatever the output buffer held (zeros here).
    out = eager_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    flat = out.reshape(-1, *out.shape[-2:])
    if flat.size(0) <= GRID_LIMIT:
        return out
    keep = (torch.arange(flat.size(0)) < GRID_LIMIT).to(out.dtype).reshape(-1, 1, 1)
    return (flat * keep).reshape(out.shape)  # BUG: the slices past the limit never ran


def head_dim_past_128_truncated(query, key, value, attn_mask=None, dropout_p=0.0,
                                is_causal=False, scale=None, enable_gqa=False):
    # Modelled on kernels specialised for head dims up to 128 (one 128-wide tile of q and k per
    # block) that are called with 160, 192 or 256 without a check: the logits see only the
    # first 128 components. (FlashAttention and AITemplate refuse such head dims instead.)
    if query.size(-1) <= 128:
        return eager_attention(query, key, value, attn_mask, dropout_p, is_causal, scale,
                               enable_gqa)
    key, value = _repeat_kv(query, key, value, enable_gqa)
    scores = query[..., :128] @ key[..., :128].transpose(-2, -1) * _scale(query, scale)  # BUG
    scores = scores + _bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _softmax_rows(scores) @ value


CORRECT = [eager_attention, flash_attention, attention_with_custom_backward]


# ----------------------------------------------------------------------------- the default call
class _QueryGradUnscaledFn(_AttentionFn):
    @staticmethod
    def backward(ctx, grad_out):
        d_query, d_key, d_value, _, _ = _AttentionFn.backward(ctx, grad_out)
        return d_query / ctx.scale, d_key, d_value, None, None  # BUG: dQ = dS K, scale lost


def unmasked_fast_path_query_grad_unscaled(query, key, value, attn_mask=None, dropout_p=0.0,
                                           is_causal=False, scale=None, enable_gqa=False):
    # A fused kernel for the plain (b, h, t, d) call sdpa(q, k, v) (no mask, not causal, the
    # default scale) with its own backward; every other call takes the correct math path.
    plain = attn_mask is None and not is_causal and scale is None and not enable_gqa
    if not (plain and query.dim() == 4):
        return attention_with_custom_backward(query, key, value, attn_mask, dropout_p,
                                              is_causal, scale, enable_gqa)
    bias = torch.zeros(query.size(-2), key.size(-2), dtype=query.dtype)
    return _QueryGradUnscaledFn.apply(query, key, value, bias, _scale(query, None))
