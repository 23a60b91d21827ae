"""The step interface `check_kv_cache` drives, and thin adapters that give a decoder that interface.

A decoder under test is a pair of functions (`KVDecoder`)::

    logits, cache = step(ids, attention_mask, cache)     # one decoding step
    logits = forward(ids, attention_mask)                # the full forward, no cache

* ``ids``: int64 (b, t), this step's new tokens only.
* ``attention_mask``: bool (b, s), True = real token, over ALL tokens so far (the cached ones and
  the t new ones, s = cached + t). Padding is on the left: a row's real tokens come last.
* ``cache``: ``None`` on the first step (start a new cache), else what the previous step returned;
  opaque to the check (a refllm ``KVCache``, a transformers ``DynamicCache``, a tuple, ...).
* ``logits``: (b, t, v) for the new tokens. Stacked over the steps, they must equal
  ``forward(all_ids, full_mask)`` at every real position.

A token's position is the number of real tokens before it in its row (``cumsum(mask) - 1``), so a
left-padded row has the positions it would have alone; refllm's GPT does this itself, `hf_step`
passes these ``position_ids`` to transformers.

Adapters: `module_step` (refllm's GPT, or a module with ``forward(ids, *, attention_mask, cache)``),
`hf_step` (a transformers causal LM such as ``GPT2LMHeadModel``), `as_decoder` (picks one).
refllm.testing may not import refllm.model (layering), so a refllm GPT is recognised by its
interface: a module whose ``config`` has ``vocab_size`` and ``n_ctx`` and whose ``forward``
declares the type of its ``cache`` argument (constructed with no arguments), or that has a
``new_cache()`` method.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor


class StepFn(Protocol):
    def __call__(self, ids: Tensor, attention_mask: Tensor,
                 cache: Any | None) -> tuple[Tensor, Any]: ...


class ForwardFn(Protocol):
    def __call__(self, ids: Tensor, attention_mask: Tensor) -> Tensor: ...


@dataclasses.dataclass
class KVDecoder:
    """A decoder as the check sees it: its step, its full forward and its sizes."""

    step: StepFn
    forward: ForwardFn
    vocab_size: int
    n_ctx: int
    name: str = ""


def _cache_factory(model: torch.nn.Module) -> Callable[[], Any]:
    """``model.new_cache`` or the class its ``forward`` declares for ``cache`` (e.g. KVCache)."""
    new_cache: Any = getattr(model, "new_cache", None)
    if callable(new_cache):
        return new_cache
    for klass in type(model).__mro__:
        fwd = klass.__dict__.get("forward")
        if fwd is None:
            continue
        try:
            hint = typing.get_type_hints(fwd).get("cache")
        except Exception:  # unresolvable annotations: try the next class
            continue
        for candidate in typing.get_args(hint) or (hint,):
            if isinstance(candidate, type) and candidate is not type(None):
                return candidate
    raise TypeError(f"cannot tell how {type(model).__name__} makes a new cache: give it a "
                    f"new_cache() method, annotate forward's cache argument, or pass new_cache=")


def module_step(model: torch.nn.Module, new_cache: Callable[[], Any] | None = None) -> KVDecoder:
    """refllm's step protocol: ``model(ids, attention_mask=m, cache=cache)`` fills ``cache``."""
    make = new_cache or _cache_factory(model)

    def step(ids: Tensor, attention_mask: Tensor, cache: Any | None) -> tuple[Tensor, Any]:
        cache = make() if cache is None else cache
        return model(ids, attention_mask=attention_mask, cache=cache), cache

    def forward(ids: Tensor, attention_mask: Tensor) -> Tensor:
        return model(ids, attention_mask=attention_mask)

    config: Any = model.config
    return KVDecoder(step, forward, int(config.vocab_size), int(config.n_ctx),
                     type(model).__name__)


def positions_of(attention_mask: Tensor) -> Tensor:
    """(b, s) int64 positions: real tokens before each token in its row (``cumsum - 1``, >= 0)."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def hf_step(model: torch.nn.Module) -> KVDecoder:
    """A transformers causal LM (``GPT2LMHeadModel``, ...) through its ``DynamicCache``.

    Each step passes ``attention_mask`` (as 0/1 int64 over all tokens so far), the new tokens'
    ``position_ids`` from `positions_of` and the cache (``cache=`` in transformers >= 5.x,
    ``past_key_values=`` before); the full forward passes the mask and positions, no cache.
    """
    import transformers

    config: Any = model.config
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters \
        else "past_key_values"

    def step(ids: Tensor, attention_mask: Tensor, cache: Any | None) -> tuple[Tensor, Any]:
        if cache is None:
            cache = transformers.DynamicCache(config=config)
        t = ids.shape[1]
        out = model(ids, attention_mask=attention_mask.long(), use_cache=True,
                    position_ids=positions_of(attention_mask)[:, -t:], **{cache_kw: cache})
        new = getattr(out, "cache", None)
        return out.logits, new if new is not None else out.past_key_values

    def forward(ids: Tensor, attention_mask: Tensor) -> Tensor:
        return model(ids, attention_mask=attention_mask.long(), use_cache=False,
                     position_ids=positions_of(attention_mask)).logits

    return KVDecoder(step, forward, int(config.vocab_size),
                     int(config.max_position_embeddings), type(model).__name__)


def is_hf_model(target: Any) -> bool:
    return isinstance(target, torch.nn.Module) and hasattr(getattr(target, "config", None),
                                                             "model_type")


def as_decoder(target: Any, *, forward: ForwardFn | None = None, vocab_size: int | None = None,
               n_ctx: int | None = None, new_cache: Callable[[], Any] | None = None) -> KVDecoder:
    """A `KVDecoder` for a KVDecoder, a transformers model, a refllm-style module or a step."""
    if isinstance(target, KVDecoder):
        decoder = target
    elif is_hf_model(target):
        decoder = hf_step(target)
    elif isinstance(target, torch.nn.Module) and hasattr(getattr(target, "config", None),
                                                         "n_ctx"):
        decoder = module_step(target, new_cache)
    elif callable(target):
        if vocab_size is None or n_ctx is None:
            raise ValueError("a step function needs vocab_size= and n_ctx= (they cannot be read "
                             "from a function)")
        step = typing.cast(StepFn, target)
        decoder = KVDecoder(step, forward or (lambda ids, m: step(ids, m, None)[0]),
                            vocab_size, n_ctx, getattr(target, "__name__", "step"))
    else:
        raise TypeError(f"model_or_step_fn must be a refllm GPT, a transformers causal LM, a "
                        f"KVDecoder or a step function, got {type(target).__name__}")
    overrides: dict[str, Any] = {k: v for k, v in dict(forward=forward, vocab_size=vocab_size,
                                                       n_ctx=n_ctx).items() if v is not None}
    return dataclasses.replace(decoder, **overrides)


__all__ = ["StepFn", "ForwardFn", "KVDecoder", "module_step", "hf_step", "as_decoder",
           "positions_of", "is_hf_model"]
