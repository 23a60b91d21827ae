"""Planted bugs of two kinds that small random inputs never reach.

Past a width: a real kernel tiles keys in blocks of 64 or 128, cuts the vocabulary into chunks,
reduces rows in groups of 32 and elements in blocks of 1024, slices its causal mask from a cached
buffer of the context length, runs a SIMD loop of width 8 or 16 with a scalar tail. A bug in the
second block, in the merge of chunks or in the tail is invisible while every axis is at most 6;
the oracle's kernel-sized tier (refllm.testing.engine.sizes) reaches it.

On the default path: a kernel's fast path serves only PyTorch's default call (no keyword at all,
torch's default hyper-parameters); a bug there passes every check that draws optional features on
most of the time.

Each function or class here has the signature of PyTorch's op and is ONE bug away from a correct
version of the corpus (attention_mutants, loss_mutants, multihead_mutants, optim_mutants).
"""

from __future__ import annotations

import torch

from tests.testing.mutants import attention_mutants as A
from tests.testing.mutants import loss_mutants as L
from tests.testing.mutants import multihead_mutants as M
from tests.testing.mutants import optim_mutants as O

NEG_INF = float("-inf")


# ============================================================================ past a width
# ----------------------------------------------------------------------------- attention
def tiles_of_64_output_not_rescaled(query, key, value, attn_mask=None, dropout_p=0.0,
                                    is_causal=False, scale=None, enable_gqa=False):
    # FlashAttention with 64-key tiles whose running output is not rescaled when the running
    # max moves (acc += p v instead of acc = alpha acc + p v): right while s <= 64.
    key, value, bias, scale = A._flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                                enable_gqa)
    return A._flash(query, key, value, bias, scale, A._step_without_output_rescale, 64)


def tiles_of_128_sum_not_rescaled(query, key, value, attn_mask=None, dropout_p=0.0,
                                  is_causal=False, scale=None, enable_gqa=False):
    # The same with 128-key tiles and the softmax denominator l left unrescaled.
    key, value, bias, scale = A._flash_prologue(query, key, value, attn_mask, is_causal, scale,
                                                enable_gqa)
    return A._flash(query, key, value, bias, scale, A._step_without_sum_rescale, 128)


_CAUSAL_CACHE = torch.ones(256, 256, dtype=torch.bool).tril()  # a model's block_size buffer


def causal_mask_from_a_cached_buffer_of_256(query, key, value, attn_mask=None, dropout_p=0.0,
                                            is_causal=False, scale=None, enable_gqa=False):
    # nanoGPT-style: the causal mask is sliced from a buffer built for the context length 256;
    # past it the slice is padded with "keep", so every query sees the keys beyond 256.
    if not is_causal:
        return A.eager_attention(query, key, value, attn_mask, dropout_p, False, scale,
                                 enable_gqa)
    t, s = query.size(-2), key.size(-2)
    keep = torch.ones(t, s, dtype=torch.bool)
    keep[:256, :256] = _CAUSAL_CACHE[:t, :s]  # BUG: beyond the buffer nothing is masked
    return A.eager_attention(query, key, value, keep, dropout_p, False, scale, enable_gqa)


class _DqOverwrittenFn(A._AttentionFn):
    """FlashAttention-2's backward loops over key tiles of 64; dq must sum every tile's part."""

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, probs = ctx.saved_tensors
        d_value = probs.transpose(-2, -1) @ grad_out
        d_probs = grad_out @ value.transpose(-2, -1)
        d_scores = probs * (d_probs - (d_probs * probs).sum(-1, keepdim=True))
        d_key = d_scores.transpose(-2, -1) @ query * ctx.scale
        d_query = torch.zeros_like(query)
        for j in range(0, key.size(-2), 64):
            # BUG: dq = instead of dq += (only the last key tile's part survives)
            d_query = d_scores[..., j:j + 64] @ key[..., j:j + 64, :] * ctx.scale
        return d_query, d_key, d_value, None, None


def query_grad_keeps_the_last_key_tile_of_64(query, key, value, attn_mask=None, dropout_p=0.0,
                                             is_causal=False, scale=None, enable_gqa=False):
    key, value = A._repeat_kv(query, key, value, enable_gqa)
    bias = A._bias(attn_mask, is_causal, query.size(-2), key.size(-2), query.dtype)
    return _DqOverwrittenFn.apply(query, key, value, bias, A._scale(query, scale))


# ----------------------------------------------------------------------------- cross-entropy
def _chunked_lse(x, chunk, merge):
    """logsumexp over the class axis 1, computed chunk by chunk and merged with ``merge``."""
    parts = [torch.logsumexp(x[:, j:j + chunk], dim=1) for j in range(0, x.size(1), chunk)]
    out = parts[0]
    for p in parts[1:]:
        out = merge(out, p)
    return out


def ce_vocab_chunks_of_128_merged_by_max(input, target, weight=None, ignore_index=-100,
                                         reduction="mean", label_smoothing=0.0):
    # A vocabulary-parallel cross-entropy: logsumexp per chunk of 128 classes, merged with max
    # instead of logaddexp, so the later chunks' mass is lost (right while C <= 128).
    x, y, unbatched = L._batched(input, target)
    t, denom = L._targets(x, y, weight, ignore_index, label_smoothing)
    lse = _chunked_lse(x, 128, torch.maximum).unsqueeze(1)  # BUG: not torch.logaddexp
    loss = -(t * (x - lse)).sum(1)
    loss = loss.squeeze(0) if unbatched else loss
    return L._reduce(loss, denom, reduction)


class _ChunkLocalSoftmaxFn(L._FusedCE):
    @staticmethod
    def backward(ctx, grad_loss):
        p, t, denom = ctx.saved_tensors
        logp = p.log()
        # BUG: the backward re-normalises p within each chunk of 256 classes (chunk-local
        # logsumexp), not over the whole vocabulary
        p = torch.cat([torch.softmax(logp[:, j:j + 256], dim=1)
                       for j in range(0, p.size(1), 256)], dim=1)
        grad = t.sum(1, keepdim=True) * p - t
        grad = L._scale_grad(grad, grad_loss, denom, ctx.reduction, ctx.unbatched)
        return (grad.squeeze(0) if ctx.unbatched else grad), None, None, None, None, None


def ce_vocab_chunks_of_256_local_softmax_grad(input, target, weight=None, ignore_index=-100,
                                              reduction="mean", label_smoothing=0.0):
    return _ChunkLocalSoftmaxFn.apply(input, target, weight, ignore_index, reduction,
                                      label_smoothing)


def ce_row_groups_of_32_mean_of_means(input, target, weight=None, ignore_index=-100,
                                      reduction="mean", label_smoothing=0.0):
    # Rows reduced in groups of 32 (one program per group), the mean taken as the mean of the
    # group means: right while n <= 32 or n is a multiple of 32.
    loss = L.cross_entropy(input, target, weight, ignore_index, "none", label_smoothing)
    plain = (reduction == "mean" and weight is None and input.dim() == 2
             and not target.is_floating_point() and not bool((target == ignore_index).any()))
    if not plain:
        return L.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    return torch.stack([g.mean() for g in loss.split(32)]).mean()  # BUG: mean of means


# ----------------------------------------------------------------------------- MSE
def mse_blocks_of_1024_drop_the_tail(input, target, reduction="mean"):
    # A blocked reduction over 1024 elements per block; the partial last block is skipped once
    # there is a full one (right while numel <= 1024 or a multiple of it).
    err = (input - target) ** 2
    if reduction == "none":
        return err
    flat, n = err.reshape(-1), err.numel()
    full = n // 1024 * 1024
    total = flat[:full].sum() if full else flat.sum()  # BUG: flat[full:] lost when full > 0
    return total if reduction == "sum" else total / n


# ----------------------------------------------------------------------------- multi-head
class KeyPaddingMaskReadInChunksOf32(M.EagerMultiheadAttention):
    # The key padding mask is read in chunks of 32 keys; the loop bound drops the partial last
    # chunk (right while s <= 32 or a multiple of 32).
    def padding_bias(self, key_padding_mask, b, s, dtype):
        bias = super().padding_bias(key_padding_mask, b, s, dtype)
        if s > 32:
            bias = bias.clone()
            bias[..., s // 32 * 32:] = 0.0  # BUG: the tail of the mask is not applied
        return bias


class CausalMaskFromABufferOf128(M.EagerMultiheadAttention):
    # is_causal rebuilds the mask from a cached buffer of 128 positions, padded with "keep".
    def mask_bias(self, attn_mask, is_causal, b, t, s, dtype):
        if not is_causal:
            return super().mask_bias(attn_mask, is_causal, b, t, s, dtype)
        future = torch.ones(t, s, dtype=torch.bool).triu(1)
        future[128:, :] = False  # BUG: past the buffer nothing is masked
        future[:, 128:] = False
        return torch.zeros(1, 1, t, s, dtype=dtype).masked_fill(future, NEG_INF)


# ----------------------------------------------------------------------------- optimizers
def _tail(p, width):
    """Start of the scalar tail of a SIMD loop of ``width`` lanes over a flattened tensor, or
    None for a tensor too small for one vector (taken by a separate scalar kernel)."""
    n = p.numel()
    return n // width * width if n >= width else None


class AdamWSimd8TailSkipsDecay(O.AdamW):
    # The vector loop of width 8 applies the decoupled decay; the scalar tail forgets it.
    def decay(self, p, g, group):
        tail = _tail(p, 8)
        if tail is None or tail == p.numel():
            return super().decay(p, g, group)
        before = p.detach().reshape(-1)[tail:].clone()
        g = super().decay(p, g, group)
        p.view(-1)[tail:] = before  # BUG: the tail elements are not decayed
        return g


class AdamSimd16TailStaleMoment(O.Adam):
    # The scalar tail of a width-16 loop reads the first moment before this step's update.
    def moments(self, g, state, group):
        stale = state["exp_avg"].clone()
        m, v = super().moments(g, state, group)
        tail = _tail(m, 16)
        if tail is None or tail == m.numel() or state["step"].item() == 1:
            return m, v
        m = m.clone()
        m.view(-1)[tail:] = stale.reshape(-1)[tail:]  # BUG: the tail steps with a stale m
        return m, v


class SGDMomentumChunksOf1024(O.SGD):
    # A multi-tensor apply in chunks of 1024 elements; chunks after the first read the
    # momentum buffer but never write it back.
    def momentum(self, g, state, group):
        old = state.get("momentum_buffer")
        old = None if old is None else old.clone()
        out = super().momentum(g, state, group)
        buf = state.get("momentum_buffer")
        if buf is not None and old is not None and buf.numel() > 1024:
            buf.view(-1)[1024:] = old.reshape(-1)[1024:]  # BUG: not written back past 1024
        return out


# ============================================================================ the default path
def sdpa_plain_call_heads_and_queries_swapped(query, key, value, attn_mask=None,
                                              dropout_p=0.0, is_causal=False, scale=None,
                                              enable_gqa=False):
    # A fast path for the plain call sdpa(q, k, v) on (b, h, t, d) writes its output as
    # (b, t, h, e) memory read back as (b, h, t, e); every other call is right.
    out = A.eager_attention(query, key, value, attn_mask, dropout_p, is_causal, scale,
                            enable_gqa)
    plain = attn_mask is None and not is_causal and scale is None and not enable_gqa
    if plain and query.dim() == 4:
        return out.transpose(1, 2).reshape(out.shape)  # BUG: layouts confused
    return out


class _CausalValueGradUnmaskedFn(A._AttentionFn):
    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, probs = ctx.saved_tensors
        d_query, d_key, _, _, _ = A._AttentionFn.backward(ctx, grad_out)
        unmasked = torch.softmax(query @ key.transpose(-2, -1) * ctx.scale, dim=-1)
        return d_query, d_key, unmasked.transpose(-2, -1) @ grad_out, None, None  # BUG


def sdpa_causal_self_attention_value_grad_unmasked(query, key, value, attn_mask=None,
                                                   dropout_p=0.0, is_causal=False, scale=None,
                                                   enable_gqa=False):
    # The decoder's call sdpa(q, k, v, is_causal=True) with t == s takes a fused kernel whose
    # dV recomputes the weights without the causal mask.
    fast = (is_causal and attn_mask is None and scale is None and not enable_gqa
            and query.size(-2) == key.size(-2))
    if not fast:
        return A.attention_with_custom_backward(query, key, value, attn_mask, dropout_p,
                                                is_causal, scale, enable_gqa)
    bias = A._bias(None, True, query.size(-2), key.size(-2), query.dtype)
    return _CausalValueGradUnmaskedFn.apply(query, key, value, bias, A._scale(query, None))


class _CEUpstreamAssumedOneFn(L._FusedCE):
    @staticmethod
    def backward(ctx, grad_loss):
        p, t, denom = ctx.saved_tensors
        grad = (t.sum(1, keepdim=True) * p - t) / denom  # BUG: grad_loss taken as 1
        return grad, None, None, None, None, None


def ce_language_model_path_ignores_the_upstream_grad(input, target, weight=None,
                                                     ignore_index=-100, reduction="mean",
                                                     label_smoothing=0.0):
    # The fused language-model loss (mean, no weight, no smoothing, 2-D logits, class indices)
    # assumes loss.backward() with a gradient of 1; other calls take the general backward.
    lm = (weight is None and label_smoothing == 0.0 and reduction == "mean"
          and ignore_index == -100 and input.dim() == 2 and not target.is_floating_point())
    fn = _CEUpstreamAssumedOneFn if lm else L._FusedCE
    return fn.apply(input, target, weight, ignore_index, reduction, label_smoothing)


class _MSENoTargetGradFn(L._MSEFn):
    @staticmethod
    def backward(ctx, grad):
        d_input, _, _ = L._MSEFn.backward(ctx, grad)
        return d_input, None, None  # BUG: no gradient for the target


def mse_default_call_drops_the_target_grad(input, target, reduction=None):
    # mse_loss(x, y) (no keyword: reduction None, read as the mean) takes a fused kernel written
    # for a fixed target; an explicit reduction takes the general one.
    if reduction is None:
        return _MSENoTargetGradFn.apply(input, target, "mean")
    return L.mse_loss_fused(input, target, reduction)


class AdamDefaultHyperEpsInsideSqrt(O.Adam):
    # A fused step for torch's defaults (betas, eps, no decay, no amsgrad, not maximize) puts
    # eps inside the square root; any other setting takes the general step.
    def denominator(self, v, c2, group):
        defaults = (tuple(group["betas"]) == (0.9, 0.999) and group["eps"] == 1e-8
                    and not group["weight_decay"] and not group["amsgrad"]
                    and not group["maximize"])
        if not defaults:
            return super().denominator(v, c2, group)
        return (v / c2 + group["eps"]).sqrt()  # BUG: eps inside the sqrt


class SGDPlainStepUsesTheFirstGroupsLr(O.SGD):
    # Plain SGD in every group (no momentum, no decay) takes one foreach step over all
    # parameters, at the first group's learning rate.
    @torch.no_grad()
    def step(self, closure=None):
        plain = all(not g["momentum"] and not g["weight_decay"] and not g["maximize"]
                    for g in self.param_groups)
        if not plain:
            return super().step(closure)
        lr = self.param_groups[0]["lr"]  # BUG: each group has its own lr
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-lr)
        return None
