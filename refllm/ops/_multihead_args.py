"""Argument checks of multi-head attention, and its arguments in one batch-first form.

`check_mha_args` checks every argument of `refllm.ops.multihead.multi_head_attention` (naive and
fast share it; the maths does not live here) and returns `MhaArgs`: query, key and value as
``(b, t, c)``, ``(b, s, kdim)``, ``(b, s, vdim)`` whatever the layout, the three in-projection
weights and biases split apart, and the two masks as given but with a batch axis (an unbatched
``key_padding_mask`` of shape ``(s,)`` becomes ``(1, s)``). The masks keep PyTorch's MHA
convention here (bool True = IGNORE); each implementation turns them into scores on its own.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from refllm._validation import (
    describe,
    require_bool,
    require_float,
    require_int,
    require_ndim,
    require_real,
    require_same_device,
    require_same_dtype,
    require_tensor,
)
from refllm.ops.masks import allowed, causal_allowed, from_ignore, is_boolean


@dataclasses.dataclass
class MhaArgs:
    query: Tensor  # (b, t, c)
    key: Tensor  # (b, s, kdim)
    value: Tensor  # (b, s, vdim)
    w_q: Tensor  # (c, c)
    w_k: Tensor  # (c, kdim)
    w_v: Tensor  # (c, vdim)
    b_q: Tensor | None  # (c,)
    b_k: Tensor | None
    b_v: Tensor | None
    bias_k: Tensor | None  # (c,): one extra key (already projected), appended after the s keys
    bias_v: Tensor | None
    key_padding_mask: Tensor | None  # (b, s), bool True = ignore, or additive float
    attn_mask: Tensor | None  # (t, s) or (b * h, t, s), bool True = ignore, or additive float
    h: int
    unbatched: bool
    zero_attn: bool  # add_zero_attn: one key and value of zeros appended to every head


def _check_weight(name: str, w: object, shape: tuple[int, ...], query: Tensor,
                  why: str) -> Tensor:
    t = require_float(name, w)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} ({why}), got {describe(t)}")
    require_same_dtype(("query", name), (query, t))
    require_same_device(("query", name), (query, t))
    return t


def _check_inputs(query, key, value, num_heads, batch_first) -> tuple[Tensor, Tensor, Tensor]:
    for name, x in (("query", query), ("key", key), ("value", value)):
        require_float(name, x)
    require_ndim("query", query, exact=(2, 3), layout="(t, c) unbatched, (t, b, c) or (b, t, c)")
    for name, x in (("key", key), ("value", value)):
        if x.ndim != query.ndim:
            raise ValueError(f"{name} must have as many dimensions as query ({query.ndim}), "
                             f"got {describe(x)} for query {describe(query)}")
    require_same_dtype(("query", "key", "value"), (query, key, value))
    require_same_device(("query", "key", "value"), (query, key, value))
    require_int("num_heads", num_heads, low=1)
    require_bool("batch_first", batch_first)
    q, k, v = query, key, value
    if query.ndim == 2:  # unbatched: (t, c); batch_first does not apply
        q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
    elif not batch_first:  # (t, b, c) -> (b, t, c)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    c = q.shape[-1]
    if c % num_heads:
        raise ValueError(f"embed_dim (query.shape[-1] = {c}) must be divisible by num_heads "
                         f"({num_heads}), got query {describe(query)}")
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0]:
        raise ValueError(f"query, key and value must have one batch size, got query "
                         f"{describe(query)}, key {describe(key)}, value {describe(value)} "
                         f"(batch_first={batch_first})")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"key and value must have one sequence length s, got key "
                         f"{describe(key)} and value {describe(value)}")
    if min(q.shape[1], k.shape[1], c) < 1:
        raise ValueError(f"query, key and value must have t, s, c >= 1, got query "
                         f"{describe(query)} and key {describe(key)}")
    return q, k, v


def _check_projections(q, k, v, w):
    c, kdim, vdim = q.shape[-1], k.shape[-1], v.shape[-1]
    packed = w["in_proj_weight"] is not None
    separate = [n for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight") if w[n] is not None]
    if packed == bool(separate) or (separate and len(separate) != 3):
        raise ValueError("give either in_proj_weight, or all three of q_proj_weight, "
                         f"k_proj_weight and v_proj_weight; got in_proj_weight "
                         f"{describe(w['in_proj_weight'])} and {separate or 'none'} of the others")
    if packed:
        if kdim != c or vdim != c:
            raise ValueError(f"in_proj_weight needs key and value of width embed_dim = {c}; got "
                             f"key {describe(k)}, value {describe(v)}: give q_proj_weight, "
                             "k_proj_weight and v_proj_weight for kdim/vdim != embed_dim")
        wi = _check_weight("in_proj_weight", w["in_proj_weight"], (3 * c, c), q, "3 * c, c")
        w_q, w_k, w_v = wi.chunk(3)
    else:
        w_q = _check_weight("q_proj_weight", w["q_proj_weight"], (c, c), q, "c, c")
        w_k = _check_weight("k_proj_weight", w["k_proj_weight"], (c, kdim), q, "c, kdim")
        w_v = _check_weight("v_proj_weight", w["v_proj_weight"], (c, vdim), q, "c, vdim")
    b_q = b_k = b_v = None
    if w["in_proj_bias"] is not None:
        b_q, b_k, b_v = _check_weight("in_proj_bias", w["in_proj_bias"], (3 * c,), q,
                                      "3 * c").chunk(3)
    return w_q, w_k, w_v, b_q, b_k, b_v


def _check_mask(name: str, m: object, shapes: list[tuple[int, ...]], q: Tensor, what: str):
    if m is None:
        return None
    t = require_tensor(name, m)
    if t.dtype != torch.bool and t.dtype != q.dtype:
        raise TypeError(f"{name} must be bool (True = ignore, as in torch.nn.MultiheadAttention) "
                        f"or an additive float mask of query's dtype {q.dtype}, got {describe(t)}")
    require_same_device(("query", name), (q, t))
    if tuple(t.shape) not in shapes:
        want = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{name} must have shape {want} ({what}), got {describe(t)}")
    return t


def _check_causal_hint(attn_mask: Tensor | None, t: int, s: int) -> None:
    """is_causal is PyTorch's hint that attn_mask IS the causal mask; refllm checks the hint."""
    if attn_mask is None:
        raise ValueError("is_causal=True needs attn_mask (as in PyTorch: is_causal is a hint that "
                         "attn_mask is the causal mask), got attn_mask None")
    future = ~causal_allowed(t, s, device=attn_mask.device)
    ignored = ~allowed(from_ignore(attn_mask))
    zero_elsewhere = is_boolean(attn_mask) or bool((attn_mask[..., ~future] == 0).all())
    if not (bool((ignored == future).all()) and zero_elsewhere):
        raise ValueError("is_causal=True is a hint that attn_mask is the top-left causal mask "
                         f"(ignore key j > query i), but attn_mask {describe(attn_mask)} is not")


def check_mha_args(query, key, value, num_heads, weights: dict, key_padding_mask, attn_mask,
                   is_causal, dropout_p, generator, batch_first, need_weights,
                   average_attn_weights, add_zero_attn) -> MhaArgs:
    """Check every argument of multi-head attention; return them batch-first (see module docs)."""
    for name, flag in (("is_causal", is_causal), ("need_weights", need_weights),
                       ("average_attn_weights", average_attn_weights),
                       ("add_zero_attn", add_zero_attn)):
        require_bool(name, flag)
    require_real("dropout_p", dropout_p, low=0.0, high=1.0, high_open=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    q, k, v = _check_inputs(query, key, value, num_heads, batch_first)
    (b, t, c), s = q.shape, k.shape[1]
    w_q, w_k, w_v, b_q, b_k, b_v = _check_projections(q, k, v, weights)
    if (weights["bias_k"] is None) != (weights["bias_v"] is None):
        raise ValueError("bias_k and bias_v must be given together (add_bias_kv), got bias_k "
                         f"{describe(weights['bias_k'])} and bias_v {describe(weights['bias_v'])}")
    bias_k = bias_v = None
    if weights["bias_k"] is not None:
        bias_k = _check_weight("bias_k", weights["bias_k"], (1, 1, c), q, "1, 1, c").reshape(c)
        bias_v = _check_weight("bias_v", weights["bias_v"], (1, 1, c), q, "1, 1, c").reshape(c)
    out_w = weights["out_proj_weight"]
    _check_weight("out_proj_weight", out_w, (c, c), q, "c, c")
    if weights["out_proj_bias"] is not None:
        _check_weight("out_proj_bias", weights["out_proj_bias"], (c,), q, "c")
    unbatched = query.ndim == 2
    kpm_shape: list[tuple[int, ...]] = [(s,)] if unbatched else [(b, s)]
    kpm = _check_mask("key_padding_mask", key_padding_mask, kpm_shape, q,
                      "(s,) unbatched, else (b, s)")
    am = _check_mask("attn_mask", attn_mask, [(t, s), (b * num_heads, t, s)], q,
                     "(t, s) or (b * num_heads, t, s)")
    if is_causal:
        _check_causal_hint(am, t, s)
    return MhaArgs(q, k, v, w_q, w_k, w_v, b_q, b_k, b_v, bias_k, bias_v,
                   None if kpm is None else kpm.reshape(b, s), am, int(num_heads), unbatched,
                   add_zero_attn)
