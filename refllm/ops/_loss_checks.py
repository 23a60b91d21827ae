"""Argument checks for the losses, shared by the naive and the fast versions.

Every check raises `TypeError` (wrong kind or dtype) or `ValueError` (wrong shape or value) naming
the argument, what was seen and what was expected, before any arithmetic happens.
"""

from __future__ import annotations

import torch

from refllm._validation import (
    describe,
    require_choice,
    require_float,
    require_int,
    require_ndim,
    require_real,
    require_same_device,
    require_tensor,
)
from refllm.ops.choices import REDUCTIONS

INDEX_DTYPES = (torch.int64, torch.uint8)  # PyTorch takes "Long or Byte" class indices


def check_reduction(reduction: object) -> None:
    require_choice("reduction", reduction, REDUCTIONS)


def check_cross_entropy(input: object, target: object, weight: object, ignore_index: object,
                        reduction: object, label_smoothing: object) -> None:
    """Check the arguments of ``cross_entropy``, in PyTorch's convention."""
    x = require_float("input", input)
    require_ndim("input", x, at_least=1, layout="(c) or (b, c, *k)")
    n_classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    if n_classes < 1:
        raise ValueError(f"input must have at least one class on its class axis c, "
                         f"got {describe(x)}")
    t = require_tensor("target", target)
    ignore = require_int("ignore_index", ignore_index)
    check_reduction(reduction)
    require_real("label_smoothing", label_smoothing, low=0.0, high=1.0)
    if t.is_floating_point():
        _check_prob_target(x, t, ignore_index)
    else:
        _check_index_target(x, t, n_classes, ignore)
    if weight is not None:
        w = require_float("weight", weight)
        if w.dtype != x.dtype:
            raise TypeError(f"weight must have the input's dtype {x.dtype}, got {describe(w)}")
        if tuple(w.shape) != (n_classes,):
            raise ValueError(f"weight must have shape ({n_classes},), one weight per class c of "
                             f"the input {tuple(x.shape)}, got {describe(w)}")
        require_same_device(("input", "weight"), (x, w))
    require_same_device(("input", "target"), (x, t))


def _check_prob_target(x: torch.Tensor, t: torch.Tensor, ignore_index: object) -> None:
    if t.dtype != x.dtype:
        raise TypeError(f"target holds class probabilities, so it must have the input's dtype "
                        f"{x.dtype}, got {describe(t)}")
    if t.shape != x.shape:
        raise ValueError(f"target holds class probabilities, so it must have the input's shape "
                         f"{tuple(x.shape)}, got {describe(t)}")
    if ignore_index != -100:
        raise ValueError(f"ignore_index is only supported for class-index targets, got "
                         f"ignore_index={ignore_index!r} with a floating-point target")


def _check_index_target(x: torch.Tensor, t: torch.Tensor, n_classes: int,
                        ignore_index: int) -> None:
    if t.dtype not in INDEX_DTYPES:
        raise TypeError(f"target must be int64 class indices or class probabilities of the "
                        f"input's dtype {x.dtype}, got {describe(t)}")
    want = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
    if tuple(t.shape) != want:
        raise ValueError(f"target of class indices must have shape {want} (the input's shape "
                         f"{tuple(x.shape)} without its class axis c), got {describe(t)}")
    bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))
    if bool(bad.any()):
        value = int(t[bad].reshape(-1)[0])
        raise ValueError(f"target holds class index {value}, outside [0, {n_classes}) for an "
                         f"input of {n_classes} classes, and not ignore_index={ignore_index}")


def check_grad_output(grad_output: object, input: torch.Tensor, reduction: str,
                      loss_shape: tuple[int, ...]) -> torch.Tensor:
    """``grad_output`` as a tensor of the loss's shape and the input's dtype (None: ones)."""
    shape = loss_shape if reduction == "none" else ()
    if grad_output is None:
        return torch.ones(shape, dtype=input.dtype, device=input.device)
    g = require_float("grad_output", grad_output)
    if tuple(g.shape) != shape:
        raise ValueError(f"grad_output must have the loss's shape {shape} for reduction="
                         f"{reduction!r}, got {describe(g)}")
    if g.dtype != input.dtype:
        raise TypeError(f"grad_output must have the input's dtype {input.dtype}, got {describe(g)}")
    return g.detach()


def check_mse(input: object, target: object, reduction: object) -> None:
    """Check the arguments of ``mse_loss``: equal shapes and dtypes (no broadcasting)."""
    x = require_float("input", input)
    t = require_float("target", target)
    if t.dtype != x.dtype:
        raise TypeError(f"target must have the input's dtype {x.dtype}, got {describe(t)}")
    if t.shape != x.shape:
        raise ValueError(f"target must have the input's shape {tuple(x.shape)} (mse_loss does "
                         f"not broadcast), got {describe(t)}")
    require_same_device(("input", "target"), (x, t))
    check_reduction(reduction)
