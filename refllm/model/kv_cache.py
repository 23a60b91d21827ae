"""The key/value cache of incremental decoding, and the one rule that turns masks into positions.

Step protocol (what ``refllm.testing.check_kv_cache`` relies on)::

    cache = KVCache()                                        # empty: length 0
    logits = model(ids[:, :t0], attention_mask=m[:, :t0], cache=cache)         # (b, t0, v)
    for i in range(t0, T):                                   # one or more tokens per step
        logits = model(ids[:, i:i + 1], attention_mask=m[:, :i + 1], cache=cache)  # (b, 1, v)

* ``attention_mask`` is bool (b, s_total), True = a real token, over ALL keys so far (cached and
  new, s_total = cache.length + t); its first cache.length columns must equal ``cache.mask``.
  ``None`` means every new token is real.
* A call appends the new keys and values of every layer and returns logits for the new positions
  only. Stacked along t, the logits of all steps equal ``model(ids, attention_mask=m)`` without a
  cache (the full forward), up to rounding, at every position, padded ones included.
* Positions count real tokens only: a token's position is the number of real tokens before it in
  its row (``cumsum(mask) - 1``, floored at 0), so a left-padded row has the positions it would have
  alone; ``cache.next_position`` (b,) carries the count from step to step.
* Query i of a step (absolute index L + i, L = cache.length before the step) sees key j iff
  j <= L + i (causal) and (key j is real, or j == L + i). The second clause lets a padded query
  see itself, so no row is fully masked and nothing is NaN; no real query ever sees a padded key.
* cache.length + t must not exceed ``n_ctx`` (padding counts: the window is on the key axis);
  the cache never drops or truncates keys. A call rejected for bad input leaves the cache as it
  was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from refllm._validation import describe


class KVCache:
    """Per-layer keys and values (b, g, s, d), the key mask (b, s) and next positions (b,)."""

    def __init__(self) -> None:
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.mask: Tensor | None = None  # (b, s) bool, True = real token
        self.next_position: Tensor | None = None  # (b,) int64: real tokens so far per row

    @property
    def length(self) -> int:
        """s: the number of keys cached per layer (padding included)."""
        return 0 if self.mask is None else int(self.mask.shape[1])

    @property
    def batch_size(self) -> int | None:
        return None if self.mask is None else int(self.mask.shape[0])

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append a step's keys and values (b, g, t, d) of ``layer``; return all of them so far."""
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        elif layer < len(self.keys):
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=-2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=-2)
        else:
            raise ValueError(f"layer must be <= {len(self.keys)} (layers fill in order), "
                             f"got {layer}")
        if self.keys[layer].shape[-2] != self.length:
            raise RuntimeError(f"KVCache out of step: layer {layer} holds "
                               f"{self.keys[layer].shape[-2]} keys, the mask {self.length}")
        return self.keys[layer], self.values[layer]


@dataclass(frozen=True)
class Step:
    """What one forward call needs: positions (b, t), the key mask (b, s) and the attention rule."""

    positions: Tensor  # (b, t) int64
    key_mask: Tensor  # (b, s) bool over all keys so far
    allowed: Tensor | None  # (b, 1, t, s) bool, or None for the plain causal (top-left) mask
    next_position: Tensor  # (b,) int64


def plan_step(idx: Tensor, attention_mask: Tensor | None, cache: KVCache | None,
              position_ids: Tensor | None, n_ctx: int) -> Step:
    """Validate the step's masks against the cache and derive positions and the attention rule."""
    b, t = idx.shape
    past = cache.length if cache is not None else 0
    if cache is not None and cache.batch_size not in (None, b):
        raise ValueError(f"idx has batch size {b} but the cache holds {cache.batch_size} rows")
    if past + t > n_ctx:
        raise ValueError(f"idx has {t} positions and the cache {past}: {past + t} exceeds the "
                         f"context length n_ctx={n_ctx} (forward never crops; generate(crop=True) "
                         f"does)")
    key_mask = _key_mask(attention_mask, cache, b, t, idx.device)
    new = key_mask[:, past:]
    start = (cache.next_position if cache is not None and cache.next_position is not None
             else torch.zeros(b, dtype=torch.int64, device=idx.device))
    if position_ids is None:
        positions = (start[:, None] + new.long().cumsum(1) - 1).clamp(min=0)
    else:
        positions = _check_position_ids(position_ids, b, t, n_ctx)
    last = torch.where(new, positions + 1, 0).amax(dim=1)
    next_position = torch.maximum(start, last)
    if attention_mask is None and past == 0:
        return Step(positions, key_mask, None, next_position)
    return Step(positions, key_mask, allowed_keys(key_mask, t), next_position)


def allowed_keys(key_mask: Tensor, t: int) -> Tensor:
    """(b, 1, t, s) bool: query i (absolute L + i) sees key j iff j <= L + i and (key j is real
    or j == L + i)."""
    s = key_mask.shape[1]
    i = torch.arange(s - t, s, device=key_mask.device)[:, None]  # absolute query index, (t, 1)
    j = torch.arange(s, device=key_mask.device)[None, :]  # (1, s)
    return ((j <= i) & (key_mask[:, None, None, :] | (j == i)))


def _key_mask(attention_mask: Tensor | None, cache: KVCache | None, b: int, t: int,
              device: torch.device) -> Tensor:
    past_mask = cache.mask if cache is not None and cache.mask is not None else None
    past = 0 if past_mask is None else past_mask.shape[1]
    if attention_mask is None:
        ones = torch.ones(b, t, dtype=torch.bool, device=device)
        return ones if past_mask is None else torch.cat([past_mask, ones], dim=1)
    if not isinstance(attention_mask, Tensor) or attention_mask.dtype != torch.bool:
        raise TypeError(f"attention_mask must be a bool tensor (True = real token), got "
                        f"{describe(attention_mask)}")
    if tuple(attention_mask.shape) != (b, past + t):
        raise ValueError(f"attention_mask must have shape (b, cached + t) = ({b}, {past + t}) "
                         f"(all keys so far), got {describe(attention_mask)}")
    if past_mask is not None and not torch.equal(attention_mask[:, :past], past_mask):
        raise ValueError("attention_mask's first cache.length columns differ from the mask the "
                         "cache holds; pass the mask over all keys so far")
    return attention_mask


def _check_position_ids(position_ids: Tensor, b: int, t: int, n_ctx: int) -> Tensor:
    if not isinstance(position_ids, Tensor) or position_ids.dtype != torch.int64:
        raise TypeError(f"position_ids must be an int64 tensor, got {describe(position_ids)}")
    if tuple(position_ids.shape) != (b, t):
        raise ValueError(f"position_ids must have shape (b, t) = ({b}, {t}), got "
                         f"{describe(position_ids)}")
    if position_ids.numel() and (position_ids.min() < 0 or position_ids.max() >= n_ctx):
        raise ValueError(f"position_ids must lie in [0, n_ctx={n_ctx}), got values in "
                         f"[{int(position_ids.min())}, {int(position_ids.max())}]")
    return position_ids


def commit(cache: KVCache, step: Step) -> None:
    """Record a validated step's key mask and position counters in the cache (before the layers)."""
    cache.mask = step.key_mask
    cache.next_position = step.next_position


__all__ = ["KVCache", "Step", "plan_step", "allowed_keys", "commit"]
