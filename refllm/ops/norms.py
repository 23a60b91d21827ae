"""RMSNorm and LayerNorm over the last dimensions of a tensor, with PyTorch's signatures.

RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization", Eq. 4), over the n
elements x_i of each slice that ``normalized_shape`` names:

    y_i = x_i / sqrt(eps + (1/n) sum_j x_j^2) * (w_i + offset)

LayerNorm (Ba et al. 2016, "Layer Normalization", Eq. 4), with the biased variance:

    mu = (1/n) sum_j x_j      var = (1/n) sum_j (x_j - mu)^2
    y_i = (x_i - mu) / sqrt(var + eps) * w_i + b_i

The fast versions compute in float32 for float16/bfloat16 inputs (PyTorch's "opmath" type) and in
the input's dtype otherwise, and round to the input's dtype once, at the end. The variance is
taken in two passes (the mean first, then the squares of the deviations): the one-pass
E[x^2] - E[x]^2 cancels catastrophically when the slice has a large common offset.

Defaults as ``torch.nn.functional.rms_norm``: ``eps=None`` is the machine epsilon of the
computation type (``finfo(float32).eps`` for float16, bfloat16 and float32 inputs,
``finfo(float64).eps`` for float64), not of the input's dtype.

RMSNorm's variants that real decoders use, stated as keyword-only options:

- ``weight_offset``: the weight enters as ``offset + w`` (Gemma stores ``w`` around 0 and uses
  ``offset=1``).
- ``cast``: where the result is rounded to the input's dtype. ``"after_weight"`` (PyTorch, Gemma):
  normalise and multiply by the weight in the computation type, round once. ``"before_weight"``
  (Hugging Face's LlamaRMSNorm): round the normalised value to the input's dtype, then multiply by
  the weight in that dtype (two roundings).
- ``residual``: the fused residual add of vLLM and Liger: ``h = input + residual`` (rounded to the
  input's dtype), normalised; returns ``(rms_norm(h), h)``, the output and the new residual.

Deviation from PyTorch: the weight (and bias) must have the input's dtype (PyTorch promotes), and
``normalized_shape`` must match the input's trailing shape exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from refllm._validation import (
    describe,
    require_choice,
    require_float,
    require_real,
    require_same_device,
)

CASTS = ("after_weight", "before_weight")
"""Where RMSNorm rounds to the input's dtype: once at the end, or before the weight multiply."""


def _computation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def default_eps(dtype: torch.dtype) -> float:
    """``F.rms_norm``'s eps when none is given: the machine epsilon of the computation type."""
    return torch.finfo(_computation_dtype(dtype)).eps


def _check_norm(x: object, normalized_shape: object, weight: object, bias: object,
                eps: object) -> tuple[Tensor, tuple[int, ...]]:
    """Check the arguments both norms share; return the input and the normalised shape."""
    t = require_float("input", x)
    if isinstance(normalized_shape, (bool, str)) or not isinstance(normalized_shape,
                                                                   (int, Sequence)):
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, "
                        f"got {describe(normalized_shape)}")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"normalized_shape must hold ints, got {describe(normalized_shape)}")
    if not shape or len(shape) > t.ndim or tuple(t.shape[t.ndim - len(shape):]) != shape \
            or min(shape) < 1:
        raise ValueError(f"normalized_shape {shape} must be the input's last dimensions "
                         f"(at least one, each of size >= 1), got {describe(t)}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        p = require_float(name, p)
        if tuple(p.shape) != shape:
            raise ValueError(f"{name} must have the normalized_shape {shape}, got {describe(p)}")
        if p.dtype != t.dtype:
            raise TypeError(f"{name} must have the input's dtype {t.dtype}, got {describe(p)}")
        require_same_device(("input", name), (t, p))
    if eps is not None:
        require_real("eps", eps, low=0.0)
    return t, shape


def _check_rms_options(x: Tensor, weight_offset: object, cast: object,
                       residual: object) -> None:
    require_real("weight_offset", weight_offset)
    require_choice("cast", cast, CASTS)
    if residual is not None:
        r = require_float("residual", residual)
        if r.shape != x.shape or r.dtype != x.dtype:
            raise ValueError(f"residual must have the input's shape {tuple(x.shape)} and dtype "
                             f"{x.dtype}, got {describe(r)}")
        require_same_device(("input", "residual"), (x, r))


def _rows(x: Tensor, n: int) -> list[list[float]]:
    """The slices to normalise, each as a list of Python floats (float64)."""
    return x.detach().double().reshape(-1, n).tolist() if x.numel() else []


def _round(values: list[float], dtype: torch.dtype) -> list[float]:
    """Round Python floats to ``dtype`` (a cast the variant states) and back."""
    return torch.tensor(values, dtype=torch.float64).to(dtype).double().tolist()


def rms_norm_naive(input: Float[Tensor, "*batch *norm"], normalized_shape: int | Sequence[int],
                   weight: Float[Tensor, "*norm"] | None = None, eps: float | None = None, *,
                   weight_offset: float = 0.0, cast: str = "after_weight",
                   residual: Float[Tensor, "*batch *norm"] | None = None) -> Tensor | tuple[
                       Tensor, Tensor]:
    """RMSNorm slice by slice in Python floats (float64), rounding only where ``cast`` says.

    >>> rms_norm_naive(torch.tensor([3.0, 4.0]), 2, eps=0.0)  # rms = sqrt((9 + 16) / 2)
    tensor([0.8485, 1.1314])
    """
    x, shape = _check_norm(input, normalized_shape, weight, None, eps)
    _check_rms_options(x, weight_offset, cast, residual)
    dtype = x.dtype
    if residual is not None:
        x = (x.double() + residual.double()).to(dtype)  # the new residual, in the input's dtype
    e = default_eps(dtype) if eps is None else float(eps)
    n = math.prod(shape)
    w = [1.0] * n if weight is None else weight.detach().double().reshape(-1).tolist()
    out = []
    for row in _rows(x, n):
        inv_rms = 1.0 / math.sqrt(e + math.fsum(v * v for v in row) / n)
        normed = [v * inv_rms for v in row]
        if weight is None:
            out.append(normed)
        elif cast == "after_weight":
            out.append([v * (wi + weight_offset) for v, wi in zip(normed, w)])
        else:  # the normalised value rounded to the input's dtype, the product in that dtype
            scale = _round([wi + weight_offset for wi in w], dtype)
            out.append(_round([v * s for v, s in zip(_round(normed, dtype), scale)], dtype))
    y = torch.tensor(out, dtype=torch.float64).reshape(x.shape).to(dtype)
    return (y, x) if residual is not None else y


def rms_norm(input: Float[Tensor, "*batch *norm"], normalized_shape: int | Sequence[int],
             weight: Float[Tensor, "*norm"] | None = None, eps: float | None = None, *,
             weight_offset: float = 0.0, cast: str = "after_weight",
             residual: Float[Tensor, "*batch *norm"] | None = None) -> Tensor | tuple[
                 Tensor, Tensor]:
    """RMSNorm, vectorised; the values and gradients of ``F.rms_norm`` with the default options.

    >>> x = torch.tensor([[3.0, 4.0]])
    >>> rms_norm(x, [2], torch.tensor([1.0, 2.0]), eps=0.0)
    tensor([[0.8485, 2.2627]])
    """
    x, shape = _check_norm(input, normalized_shape, weight, None, eps)
    _check_rms_options(x, weight_offset, cast, residual)
    if residual is not None:
        x = x + residual
    e = default_eps(x.dtype) if eps is None else float(eps)
    dims = tuple(range(-len(shape), 0))
    h = x.to(_computation_dtype(x.dtype))
    normed = h * torch.rsqrt(h.square().mean(dims, keepdim=True) + e)
    if weight is None:
        y = normed.to(x.dtype)
    elif cast == "after_weight":
        y = (normed * (weight.to(h.dtype) + weight_offset)).to(x.dtype)
    else:
        y = normed.to(x.dtype) * (weight + weight_offset)
    return (y, x) if residual is not None else y


def layer_norm_naive(input: Float[Tensor, "*batch *norm"], normalized_shape: int | Sequence[int],
                     weight: Float[Tensor, "*norm"] | None = None,
                     bias: Float[Tensor, "*norm"] | None = None, eps: float = 1e-5) -> Tensor:
    """LayerNorm slice by slice in Python floats (float64), the variance in two passes.

    >>> layer_norm_naive(torch.tensor([1.0, 3.0]), 2, eps=0.0)  # mean 2, variance 1
    tensor([-1.,  1.])
    """
    x, shape = _check_norm(input, normalized_shape, weight, bias, eps)
    n = math.prod(shape)
    w = [1.0] * n if weight is None else weight.detach().double().reshape(-1).tolist()
    b = [0.0] * n if bias is None else bias.detach().double().reshape(-1).tolist()
    out = []
    for row in _rows(x, n):
        mu = math.fsum(row) / n
        var = math.fsum((v - mu) ** 2 for v in row) / n
        inv_std = 1.0 / math.sqrt(var + eps)
        out.append([(v - mu) * inv_std * wi + bi for v, wi, bi in zip(row, w, b)])
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape).to(x.dtype)


def layer_norm(input: Float[Tensor, "*batch *norm"], normalized_shape: int | Sequence[int],
               weight: Float[Tensor, "*norm"] | None = None,
               bias: Float[Tensor, "*norm"] | None = None, eps: float = 1e-5) -> Tensor:
    """LayerNorm, vectorised, two-pass variance; the values and gradients of ``F.layer_norm``.

    >>> layer_norm(torch.tensor([[1.0, 3.0]]), [2], bias=torch.tensor([0.5, 0.5]), eps=0.0)
    tensor([[-0.5000,  1.5000]])
    """
    x, shape = _check_norm(input, normalized_shape, weight, bias, eps)
    dims = tuple(range(-len(shape), 0))
    h = x.to(_computation_dtype(x.dtype))
    centred = h - h.mean(dims, keepdim=True)
    y = centred * torch.rsqrt(centred.square().mean(dims, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(h.dtype)
    if bias is not None:
        y = y + bias.to(h.dtype)
    return y.to(x.dtype)


__all__ = ["CASTS", "default_eps", "layer_norm", "layer_norm_naive", "rms_norm",
           "rms_norm_naive"]
