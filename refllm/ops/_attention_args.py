"""Argument checks for scaled dot-product attention, shared by the naive and the fast version.

Every check raises `TypeError` (wrong kind or dtype) or `ValueError` (wrong shape or value) naming
the argument, what was seen and what was expected, before any arithmetic happens.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from refllm._validation import (
    describe,
    require_bool,
    require_broadcastable,
    require_choice,
    require_float,
    require_ndim,
    require_real,
    require_same_device,
    require_same_dtype,
)

ALIGNMENTS = ("top_left", "bottom_right")


@dataclass(frozen=True)
class SdpaArgs:
    """What the checks found: sizes in the axis alphabet and the resolved scale."""

    t: int  # query positions
    s: int  # key/value positions
    h: int  # query heads (1 when the inputs have no head axis)
    r: int  # query heads per key/value head (h // g; 1 without GQA)
    scale: float


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_tensors(query, key, value, enable_gqa: bool) -> None:
    names = ("query", "key", "value")
    for name, x in zip(names, (query, key, value)):
        require_float(name, x)
        require_ndim(name, x, at_least=3 if enable_gqa else 2,
                     layout="(..., h, t, d) with enable_gqa" if enable_gqa else "(..., t, d)")
    require_same_dtype(names, (query, key, value))
    require_same_device(names, (query, key, value))
    if not query.ndim == key.ndim == value.ndim:
        raise ValueError("query, key and value must have the same number of dimensions, got "
                         f"query {tuple(query.shape)}, key {tuple(key.shape)}, "
                         f"value {tuple(value.shape)}")
    lead = -3 if enable_gqa else -2  # leading dims that must match exactly
    for name, x in (("key", key), ("value", value)):
        if x.shape[:lead] != query.shape[:lead]:
            what = "batch dims (..., h, t, d) -> ..." if not enable_gqa else "batch dims"
            raise ValueError(f"{name} must have the same {what} as query: query "
                             f"{tuple(query.shape)} has {tuple(query.shape[:lead])}, {name} "
                             f"{tuple(x.shape)} has {tuple(x.shape[:lead])}")
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(f"key's last dim d must equal query's: query (..., t, d) = "
                         f"{tuple(query.shape)}, key (..., s, d) = {tuple(key.shape)}")
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(f"value must have as many positions s as key: key (..., s, d) = "
                         f"{tuple(key.shape)}, value (..., s, e) = {tuple(value.shape)}")
    if query.shape[-2] == 0 or key.shape[-2] == 0 or query.shape[-1] == 0:
        raise ValueError(f"query and key need at least one position and d >= 1, got query "
                         f"{tuple(query.shape)} and key {tuple(key.shape)}")


def _check_heads(query, key, value, enable_gqa: bool) -> tuple[int, int]:
    h = query.shape[-3] if query.ndim >= 3 else 1
    if not enable_gqa:
        return h, 1
    g = key.shape[-3]
    if value.shape[-3] != g:
        raise ValueError(f"key and value must have the same number of heads g (dim -3), got key "
                         f"{tuple(key.shape)} and value {tuple(value.shape)}")
    if g == 0 or h % g != 0:
        raise ValueError(f"enable_gqa: query's heads h = {h} must be a multiple of key/value's "
                         f"heads g = {g} (query {tuple(query.shape)}, key {tuple(key.shape)})")
    return h, h // g


def _check_mask(attn_mask, query, is_causal: bool, target: tuple[int, ...]) -> None:
    if attn_mask is None:
        return
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {describe(attn_mask)}")
    if attn_mask.dtype != torch.bool and attn_mask.dtype != query.dtype:
        raise TypeError(f"attn_mask must be bool (True = take part) or an additive float mask of "
                        f"query's dtype {query.dtype}, got {describe(attn_mask)}")
    require_same_device(("query", "attn_mask"), (query, attn_mask))
    require_broadcastable("attn_mask", attn_mask.shape, target, layout="(..., h, t, s)")
    if is_causal:
        raise ValueError("attn_mask and is_causal=True cannot be used together (as in PyTorch); "
                         f"got attn_mask {describe(attn_mask)}")


def _check_options(dropout_p, is_causal, scale, enable_gqa, causal_alignment, generator) -> None:
    require_bool("is_causal", is_causal)
    require_bool("enable_gqa", enable_gqa)
    require_real("dropout_p", dropout_p, low=0.0, high=1.0, high_open=True)
    if scale is not None:
        require_real("scale", scale)
    require_choice("causal_alignment", causal_alignment, ALIGNMENTS)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")


def check_sdpa_args(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                    causal_alignment, generator) -> SdpaArgs:
    """Check every argument of scaled dot-product attention; return the sizes and the scale."""
    _check_options(dropout_p, is_causal, scale, enable_gqa, causal_alignment, generator)
    _check_tensors(query, key, value, enable_gqa)
    h, r = _check_heads(query, key, value, enable_gqa)
    t, s = query.shape[-2], key.shape[-2]
    _check_mask(attn_mask, query, is_causal, (*query.shape[:-2], t, s))
    resolved = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    return SdpaArgs(t=t, s=s, h=h, r=r, scale=resolved)


def causal_offset(t: int, s: int, causal_alignment: str) -> int:
    """Query i may attend to key j iff j <= i + offset: 0 top-left (PyTorch), s - t bottom-right."""
    return 0 if causal_alignment == "top_left" else s - t
