"""Adapters: a norm *module* as a function with ``F.rms_norm``'s signature, for `check_rms_norm`.

A module holds its weight as a parameter; the adapter calls it with the case's weight through
``torch.func.functional_call``, so that the gradient wrt ``weight`` reaches the check. The module
is built for each call (cheap: one weight of the normalised size).

>>> import torch
>>> fn = module_rms_norm(lambda shape, eps: torch.nn.RMSNorm(shape, eps=eps))
>>> x, w = torch.randn(2, 4), torch.ones(4)
>>> torch.allclose(fn(x, (4,), w), torch.nn.functional.rms_norm(x, (4,), w))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["fused_add_rms_norm", "hf_llama_rms_norm", "module_rms_norm", "nn_rms_norm"]


def module_rms_norm(make: Callable[[tuple[int, ...], float | None], torch.nn.Module], *,
                    weight_name: str = "weight") -> Callable[..., torch.Tensor]:
    """``fn(input, normalized_shape, weight=None, eps=None)`` calling ``make(shape, eps)(input)``
    with ``weight`` as its parameter ``weight_name`` (the module's own when ``weight`` is None)."""

    def call(input: torch.Tensor, normalized_shape: int | Sequence[int],
             weight: torch.Tensor | None = None, eps: float | None = None) -> torch.Tensor:
        shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                 else tuple(normalized_shape))
        module = make(shape, eps).to(device=input.device, dtype=input.dtype)
        if weight is None:
            return module(input)
        return torch.func.functional_call(module, {weight_name: weight}, (input,))

    return call


def _nn_rms_norm(shape: tuple[int, ...], eps: float | None) -> torch.nn.Module:
    return torch.nn.RMSNorm(shape, eps=eps)


nn_rms_norm = module_rms_norm(_nn_rms_norm)
"""``torch.nn.RMSNorm`` as a function (its weight is used even when none is given: ones)."""


def hf_llama_rms_norm(input: torch.Tensor, normalized_shape: int | Sequence[int],
                      weight: torch.Tensor | None = None,
                      eps: float | None = None) -> torch.Tensor:
    """Hugging Face's ``LlamaRMSNorm`` (built, nothing downloaded), as a function.

    It normalises the last axis only and always has a weight: ``normalized_shape`` of more than
    one axis or no weight is refused with `NotImplementedError` (check it with features without
    "multi_dim" and "no_weight"). ``eps=None`` is PyTorch's default, float32's machine epsilon
    (the module computes in float32). It rounds to the input's dtype before the weight multiply
    (check it with ``cast="before_weight"``).
    """
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) != 1 or weight is None:
        raise NotImplementedError("LlamaRMSNorm normalises one axis, with a weight")
    module = LlamaRMSNorm(shape[0], eps=torch.finfo(torch.float32).eps if eps is None else eps)
    module = module.to(device=input.device, dtype=input.dtype)
    return torch.func.functional_call(module, {"weight": weight}, (input,))


def fused_add_rms_norm(kernel: Callable[..., tuple[torch.Tensor, torch.Tensor]]
                       ) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """A ``kernel(x, residual, weight, eps) -> (out, x + residual)`` (the argument order of
    vLLM's and Liger-Kernel's fused residual add) as a function with refllm's signature
    ``fn(input, normalized_shape, weight=None, eps=None, *, residual)``, for
    ``check_rms_norm(..., residual="fused")``. The kernel normalises the last axis: a
    ``normalized_shape`` of more than one axis is refused with `NotImplementedError`, and so is
    a missing weight (check it with features without "multi_dim" and "no_weight"); ``eps=None``
    is passed as ``F.rms_norm``'s default, the machine epsilon of the computation type.

    >>> def kernel(x, r, w, eps):
    ...     h = x + r
    ...     return torch.nn.functional.rms_norm(h, (h.shape[-1],), w, eps), h
    >>> fn = fused_add_rms_norm(kernel)
    >>> out, h = fn(torch.ones(2, 4), (4,), torch.ones(4), residual=torch.ones(2, 4))
    >>> h[0].tolist(), out[0].tolist()
    ([2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    """

    def call(input: torch.Tensor, normalized_shape: int | Sequence[int],
             weight: torch.Tensor | None = None, eps: float | None = None, *,
             residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                 else tuple(normalized_shape))
        if len(shape) != 1 or weight is None:
            raise NotImplementedError("a fused residual-add kernel normalises one axis, with a "
                                      "weight")
        from refllm.ops.norms import default_eps

        return kernel(input, residual, weight, default_eps(input.dtype) if eps is None else eps)

    return call
