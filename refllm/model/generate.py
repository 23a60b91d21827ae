"""Autoregressive generation: repeat { logits of the last position -> filter -> pick -> append }.

    x_{t+1} ~ softmax(filter(logits_t / temperature))      (argmax when greedy or temperature == 0)

with filter = top-k, then top-p (refllm.model.sampling), sampled by ``torch.multinomial`` from
a ``torch.Generator`` so that a seed fixes the tokens. With ``use_cache=True`` the prompt runs once
and each later step feeds one token through the KV cache (refllm.model.kv_cache); the tokens are
the same as without the cache (the logits agree to rounding).

Left-padded batches: pass ``attention_mask`` (b, t0), bool, True = real token; every generated
token is real. Stop tokens: a row that emits one is finished; its later tokens repeat that stop
token, and generation ends when every row has finished (the result may then be shorter than
t0 + max_new_tokens).

Context length: the model reads at most t0 + max_new_tokens - 1 tokens. By default that must not
exceed n_ctx (an error before any work, never silent cropping). With ``crop=True`` the model reads
only the last n_ctx tokens (and their mask) once the sequence outgrows the window, as nanoGPT does;
positions then restart within the window, and the cache, whose positions cannot slide, is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from refllm._validation import describe, require_bool, require_int, require_real
from refllm.model.gpt import GPT, check_idx
from refllm.model.kv_cache import KVCache
from refllm.model.sampling import top_k_filter, top_p_filter


def next_token(logits: Tensor, *, temperature: float = 1.0, greedy: bool = False,
               top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """One token id per row (b,) from last-position logits (b, v)."""
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits.double(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: GPT, prompt_ids: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             greedy: bool = False, top_k: int | None = None, top_p: float | None = None,
             stop_tokens: Iterable[int] = (), generator: torch.Generator | None = None,
             attention_mask: Tensor | None = None, use_cache: bool = True,
             crop: bool = False) -> Tensor:
    """The prompt (b, t0) followed by up to ``max_new_tokens`` generated ids, int64 (b, t0 + n)."""
    stops = _check_args(model, prompt_ids, max_new_tokens, temperature, greedy, top_k, top_p,
                        stop_tokens, generator, use_cache, crop)
    n_ctx = model.config.n_ctx
    ids, mask = prompt_ids, attention_mask
    cache = KVCache() if use_cache else None
    feed = ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    fill = torch.zeros_like(done, dtype=torch.int64)
    for _ in range(max_new_tokens):
        if cache is not None and cache.length + feed.shape[1] > n_ctx:
            cache = None  # only with crop=True: the window slides from here on
        if cache is not None:
            logits = model(feed, attention_mask=mask, cache=cache)[:, -1]
        else:
            window = None if mask is None else mask[:, -n_ctx:]
            logits = model(ids[:, -n_ctx:], attention_mask=window)[:, -1]
        new = next_token(logits, temperature=temperature, greedy=greedy, top_k=top_k,
                         top_p=top_p, generator=generator)
        new = torch.where(done, fill, new)
        fill = torch.where(done, fill, new)
        done = done | torch.isin(new, stops)
        ids, feed = torch.cat([ids, new[:, None]], dim=1), new[:, None]
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if bool(done.all()):
            break
    return ids


def _check_args(model, prompt_ids, max_new_tokens, temperature, greedy, top_k, top_p,
                stop_tokens, generator, use_cache, crop) -> Tensor:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a refllm GPT, got {describe(model)}")
    vocab, n_ctx = model.config.vocab_size, model.config.n_ctx
    check_idx(prompt_ids, vocab, name="prompt_ids")
    require_int("max_new_tokens", max_new_tokens, low=0)
    require_real("temperature", temperature, low=0.0)
    for name, flag in (("greedy", greedy), ("use_cache", use_cache), ("crop", crop)):
        require_bool(name, flag)
    if top_k is not None:
        require_int("top_k", top_k, low=1)
    if top_p is not None:
        require_real("top_p", top_p, low=0.0, high=1.0, low_open=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    stops = [require_int("stop_tokens", s) for s in stop_tokens]
    if any(not 0 <= s < vocab for s in stops):
        raise ValueError(f"stop_tokens must lie in [0, vocab_size={vocab}), got {stops}")
    needed = prompt_ids.shape[1] + max_new_tokens - 1
    if not crop and needed > n_ctx:
        raise ValueError(f"prompt_ids has {prompt_ids.shape[1]} tokens and max_new_tokens is "
                         f"{max_new_tokens}: the model would read {needed} > n_ctx={n_ctx}; "
                         f"shorten them or pass crop=True to keep the last n_ctx tokens")
    return torch.tensor(stops, dtype=torch.int64, device=prompt_ids.device)


__all__ = ["generate", "next_token"]
