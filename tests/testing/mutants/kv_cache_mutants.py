"""Planted bugs in KV-cache decoding, each in a plausible rewrite of refllm's cached forward.

``SteppedGPT`` keeps refllm's GPT parameters (so ``load_state_dict`` works and its logits equal
GPT's) and re-implements the cached forward from scratch, the way an inference engine does: a
per-layer cache of keys, values and their padding mask, and positions carried between steps. Its
steps are methods; each mutant overrides ONE of them with a bug. The protocol is refllm's
(refllm.model.kv_cache): ``model(ids, attention_mask=m_over_all_keys, cache=cache)``; without a
cache the call is one step from an empty cache, which is the full forward.

    positions  p = next_position + cumsum(m_new) - 1  (>= 0)   real tokens before each token
    keys       K_l <- [K_l ; k_l(x)],  V_l <- [V_l ; v_l(x)],  mask <- [mask ; m_new]
    allowed    query i (absolute L + i) sees key j iff j <= L + i and (m_j or j == L + i)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from refllm.model import GPT, GPTConfig
from refllm.model.kv_cache import allowed_keys


class StepCache:
    """Per layer (keys, values, key mask); the next position of every row."""

    def __init__(self) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.next_position: torch.Tensor | None = None


class SteppedGPT(GPT):
    """GPT's parameters, a from-scratch cached forward (correct; learned positions, no GQA)."""

    def __init__(self, config: GPTConfig) -> None:
        if config.positions != "learned" or config.n_kv_head_ != config.n_head:
            raise ValueError("SteppedGPT covers learned positions without GQA")
        super().__init__(config)

    def new_cache(self) -> StepCache:
        return StepCache()

    def forward(self, idx, *, attention_mask=None, cache: StepCache | None = None, **_):
        cache = StepCache() if cache is None else cache
        b, t = idx.shape
        new_mask = (torch.ones_like(idx, dtype=torch.bool) if attention_mask is None
                    else attention_mask[:, -t:])
        positions = self.positions(new_mask, cache)
        cache.next_position = self.advance(new_mask, positions, cache)
        x = self.transformer.wte(idx) + self.transformer.wpe(positions)
        for layer, block in enumerate(self.transformer.h):
            x = x + self.attend(block.attn, block.ln_1(x), new_mask, cache, layer)
            x = x + block.mlp(block.ln_2(x))
        return self.lm_head(self.transformer.ln_f(x))

    def start(self, new_mask, cache):
        if cache.next_position is None:
            return torch.zeros(new_mask.shape[0], dtype=torch.int64, device=new_mask.device)
        return cache.next_position

    def positions(self, new_mask, cache):
        return (self.start(new_mask, cache)[:, None] + new_mask.long().cumsum(1) - 1).clamp(min=0)

    def advance(self, new_mask, positions, cache):
        last = torch.where(new_mask, positions + 1, 0).amax(dim=1)
        return torch.maximum(self.start(new_mask, cache), last)

    def append(self, cache, layer, k, v, new_mask):
        """Store the step's keys, values and mask; return all of them (b h s d), (b s)."""
        if layer == len(cache.layers):
            cache.layers.append((k, v, new_mask))
        else:
            K, V, M = cache.layers[layer]
            cache.layers[layer] = (torch.cat([K, k], 2), torch.cat([V, v], 2),
                                   torch.cat([M, new_mask], 1))
        return cache.layers[layer]

    def allowed(self, key_mask, t, past):
        """(b, 1, t, s) bool: causal, and no real query sees a padded key."""
        return allowed_keys(key_mask, t)

    def attend(self, attn, x, new_mask, cache, layer):
        q, k, v = attn.c_attn(x).split(self.config.d_model, dim=-1)
        q, k, v = (rearrange(z, "b t (h d) -> b h t d", h=attn.h) for z in (q, k, v))
        past = cache.layers[layer][0].shape[2] if layer < len(cache.layers) else 0
        K, V, key_mask = self.append(cache, layer, k, v, new_mask)
        y = F.scaled_dot_product_attention(q, K, V, attn_mask=self.allowed(key_mask, q.shape[2],
                                                                           past))
        return attn.c_proj(rearrange(y, "b h t e -> b t (h e)"))


class PositionOffByOne(SteppedGPT):
    """A continued step starts one position late (next position + cumsum, no - 1)."""

    def positions(self, new_mask, cache):
        p = super().positions(new_mask, cache)
        if cache.next_position is None:
            return p
        return (p + 1).clamp(max=self.config.n_ctx - 1)


class PositionsRestartAtZero(SteppedGPT):
    """Every step numbers its tokens from 0, as if no token came before."""

    def positions(self, new_mask, cache):
        return (new_mask.long().cumsum(1) - 1).clamp(min=0)


class CacheAppendedTwice(SteppedGPT):
    """A continued step stores its keys, values and mask twice (an update in two places)."""

    def append(self, cache, layer, k, v, new_mask):
        if layer < len(cache.layers):
            K, V, M = cache.layers[layer]
            cache.layers[layer] = (torch.cat([K, k], 2), torch.cat([V, v], 2),
                                   torch.cat([M, new_mask], 1))
        return super().append(cache, layer, k, v, new_mask)


class MaskBuiltBeforeCacheGrows(SteppedGPT):
    """The mask covers the keys cached before the step; the step's own keys are all visible."""

    def allowed(self, key_mask, t, past):
        old = key_mask[:, None, None, :past].expand(-1, 1, t, past)
        new = torch.ones(key_mask.shape[0], 1, t, key_mask.shape[1] - past, dtype=torch.bool,
                         device=key_mask.device)
        return torch.cat([old, new], dim=-1)


class PaddingIgnoredForCachedKeys(SteppedGPT):
    """Only the step's new keys are masked for padding; cached padded keys are seen."""

    def allowed(self, key_mask, t, past):
        seen = torch.cat([torch.ones_like(key_mask[:, :past]), key_mask[:, past:]], dim=1)
        return super().allowed(seen, t, past)


class CacheTruncatedToEight(SteppedGPT):
    """The cache silently keeps only the last 8 keys per layer (a fixed-size ring, no error)."""

    keep = 8

    def append(self, cache, layer, k, v, new_mask):
        K, V, M = super().append(cache, layer, k, v, new_mask)
        cache.layers[layer] = (K[:, :, -self.keep:], V[:, :, -self.keep:], M[:, -self.keep:])
        return K, V, M  # this step still sees everything; later steps lose the oldest keys


MUTANTS = [PositionOffByOne, PositionsRestartAtZero, CacheAppendedTwice,
           MaskBuiltBeforeCacheGrows, PaddingIgnoredForCachedKeys, CacheTruncatedToEight]

CONFIG = GPTConfig(vocab_size=13, n_ctx=16, n_layer=2, n_head=2, d_model=16, init_std=0.5)
"""The model every mutant is checked on (float64, seeded weights: `build`)."""


def build(cls: type[GPT] = GPT, config: GPTConfig = CONFIG, seed: int = 0) -> GPT:
    """``cls(config)`` in float64 with the weights of ``GPT(config)`` under ``seed``."""
    torch.manual_seed(seed)
    reference = GPT(config).double()
    model = cls(config).double()
    model.load_state_dict(reference.state_dict())
    return model.eval()
