"""Planted bugs in multi-head attention, each in a plausible ``nn.MultiheadAttention`` rewrite.

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,            (Vaswani et al. 2017, §3.2.2)
    head_i = softmax(Q W_i^Q (K W_i^K)^T / sqrt(d) + mask) V W_i^V

``EagerMultiheadAttention`` keeps ``torch.nn.MultiheadAttention``'s parameters (so
``load_state_dict`` works) and re-implements its forward in plain tensor code; its steps are
methods, and each mutant overrides ONE of them with a bug. Masks follow PyTorch's MHA convention:
a boolean True means "ignore this key", a float mask is added to the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


class EagerMultiheadAttention(torch.nn.MultiheadAttention):
    """A from-scratch forward over torch.nn.MultiheadAttention's parameters (correct)."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        unbatched = query.dim() == 2
        if unbatched:  # (t, c) -> (t, 1, c)
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask[None]
        elif self.batch_first:  # (b, t, c) -> (t, b, c)
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        out, weights = self.attend(query, key, value, key_padding_mask, attn_mask, is_causal)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        out = out.squeeze(1) if unbatched else out.transpose(0, 1) if self.batch_first else out
        if not need_weights:
            return out, None
        weights = self.average(weights) if average_attn_weights else weights
        return out, weights.squeeze(0) if unbatched else weights

    def project(self, query, key, value):
        if self._qkv_same_embed_dim:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def split_heads(self, x):
        """(n, b, c) -> (b h, n, d)."""
        n, b, _ = x.shape
        return x.reshape(n, b * self.num_heads, self.head_dim).transpose(0, 1)

    def merge_heads(self, x, t, b):
        """(b h, t, d) -> (t, b, c)."""
        return x.transpose(0, 1).reshape(t, b, self.embed_dim)

    def scale(self):
        return self.head_dim ** -0.5

    def average(self, weights):
        return weights.mean(1)

    def padding_bias(self, key_padding_mask, b, s, dtype):
        """(b, 1, 1, s) additive bias from key_padding_mask (True = ignore)."""
        if key_padding_mask is None:
            return torch.zeros(b, 1, 1, s, dtype=dtype)
        m = key_padding_mask
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=dtype).masked_fill(m, NEG_INF)
        return m.reshape(b, 1, 1, s)

    def mask_bias(self, attn_mask, is_causal, b, t, s, dtype):
        """(b|1, h|1, t, s) additive bias from attn_mask (2-D or 3-D (b h, t, s))."""
        if attn_mask is None:
            return torch.zeros(1, 1, t, s, dtype=dtype)
        m = attn_mask
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=dtype).masked_fill(m, NEG_INF)
        return m.reshape(b, self.num_heads, t, s) if m.dim() == 3 else m.reshape(1, 1, t, s)

    def extra_keys(self, k, v, key_padding_mask, attn_mask):
        """add_bias_kv: one learned key/value appended; the masks get a column that keeps it."""
        if self.bias_k is None:
            return k, v, key_padding_mask, attn_mask
        b = k.size(1)
        k = torch.cat([k, self.bias_k.expand(1, b, -1)])
        v = torch.cat([v, self.bias_v.expand(1, b, -1)])
        return k, v, _pad(key_padding_mask), _pad(attn_mask)

    def attend(self, query, key, value, key_padding_mask, attn_mask, is_causal):
        t, b, _ = query.shape
        q, k, v = self.project(query, key, value)
        k, v, key_padding_mask, attn_mask = self.extra_keys(k, v, key_padding_mask, attn_mask)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        if self.add_zero_attn:  # a zero key/value appended after the projection
            k = torch.cat([k, k.new_zeros(k.size(0), 1, k.size(2))], dim=1)
            v = torch.cat([v, v.new_zeros(v.size(0), 1, v.size(2))], dim=1)
            key_padding_mask, attn_mask = _pad(key_padding_mask), _pad(attn_mask)
        s, h = k.size(1), self.num_heads
        scores = (q @ k.transpose(1, 2) * self.scale()).reshape(b, h, t, s)
        scores = scores + self.padding_bias(key_padding_mask, b, s, q.dtype)
        scores = scores + self.mask_bias(attn_mask, is_causal, b, t, s, q.dtype)
        probs = torch.softmax(scores, dim=-1)
        out = probs.reshape(b * h, t, s) @ v
        return self.merge_heads(out, t, b), probs


def _pad(mask):
    """One more key column that takes part (False / 0.0)."""
    return None if mask is None else F.pad(mask, (0, 1))


class HeadsSplitHeadMinor(EagerMultiheadAttention):
    # Modelled on lucidrains/perceiver-pytorch#46 ('b n (h d)' vs '(d h)' head layouts).
    def split_heads(self, x):
        n, b, _ = x.shape
        x = x.reshape(n, b, self.head_dim, self.num_heads).transpose(2, 3)  # BUG: (d h) layout
        return x.reshape(n, b * self.num_heads, self.head_dim).transpose(0, 1)


class ScaleByModelWidth(EagerMultiheadAttention):
    # Modelled on karpathy/ng-video-lecture#6 and lucidrains/vit-pytorch#65.
    def scale(self):
        return self.embed_dim ** -0.5  # BUG: 1 / sqrt(c), not 1 / sqrt(c / h)


class KeyPaddingMaskInverted(EagerMultiheadAttention):
    # Modelled on pytorch/pytorch#39321 and NVIDIA/TransformerEngine#614 (True = attend?).
    def padding_bias(self, key_padding_mask, b, s, dtype):
        if key_padding_mask is not None and key_padding_mask.dtype == torch.bool:
            key_padding_mask = ~key_padding_mask  # BUG: MHA's True means "ignore"
        return super().padding_bias(key_padding_mask, b, s, dtype)


class AttentionWeightsSummedOverHeads(EagerMultiheadAttention):
    # Modelled on garibida/cross-image-attention#12 (per-head normalisation of the weights).
    def average(self, weights):
        return weights.sum(1)  # BUG: average_attn_weights averages over heads


class BiasKVMaskedOut(EagerMultiheadAttention):
    # Modelled on pytorch/pytorch#33763 (padding the masks for the extra bias_k/bias_v key).
    def extra_keys(self, k, v, key_padding_mask, attn_mask):
        if self.bias_k is None:
            return k, v, key_padding_mask, attn_mask
        b = k.size(1)
        k = torch.cat([k, self.bias_k.expand(1, b, -1)])
        v = torch.cat([v, self.bias_v.expand(1, b, -1)])
        if key_padding_mask is not None:  # BUG: pads with "ignore", hiding the bias key
            pad = True if key_padding_mask.dtype == torch.bool else NEG_INF
            key_padding_mask = F.pad(key_padding_mask, (0, 1), value=pad)
        return k, v, key_padding_mask, _pad(attn_mask)


class CausalBottomRight(EagerMultiheadAttention):
    # Modelled on Dao-AILab/flash-attention#517 (is_causal taken as bottom-right causal).
    def mask_bias(self, attn_mask, is_causal, b, t, s, dtype):
        if is_causal:  # BUG: the mask passed is ignored and rebuilt bottom-right aligned
            keep = torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)
            return torch.zeros(1, 1, t, s, dtype=dtype).masked_fill(~keep, NEG_INF)
        return super().mask_bias(attn_mask, is_causal, b, t, s, dtype)


class FastPathDropsMask(EagerMultiheadAttention):
    # Modelled on the eval/no_grad "fast path" of nn.MultiheadAttention (a separate code path).
    def mask_bias(self, attn_mask, is_causal, b, t, s, dtype):
        if not self.training and not torch.is_grad_enabled():
            attn_mask = None  # BUG: the inference "fast path" drops attn_mask
        return super().mask_bias(attn_mask, is_causal, b, t, s, dtype)


CORRECT = [EagerMultiheadAttention]
