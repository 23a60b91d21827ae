"""Gradients of a checked output, also through reentrant activation checkpointing.

The checks take ``d out / d leaves`` under an upstream gradient ``g`` (the vector-Jacobian product
``g^T J``) with ``torch.autograd.grad``. Reentrant activation checkpointing
(``torch.utils.checkpoint.checkpoint(..., use_reentrant=True)``, Chen et al. 2016, "Training Deep
Nets with Sublinear Memory Cost") refuses ``autograd.grad`` though the ``loss.backward()`` of
training works. There `gradients` runs the forward again on fresh leaf inputs, calls
``torch.autograd.backward`` and reads each leaf's ``.grad``: the same product, taken the way
training takes it. The failed first attempt may have freed part of the graph, hence the fresh
forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Rerun = Callable[[], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]]
"""A fresh forward: ``(outputs, leaves)`` built anew, in the same order as the first ones."""


def refuses_grad(exc: BaseException) -> bool:
    """True for the error reentrant checkpointing raises under ``torch.autograd.grad``."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and "checkpoint" in text and ".backward()" in text


def gradients(outputs: Sequence[torch.Tensor], leaves: Sequence[torch.Tensor],
              grad_outputs: Sequence[torch.Tensor],
              rerun: Rerun | None = None) -> tuple[torch.Tensor | None, ...]:
    """``torch.autograd.grad(outputs, leaves, grad_outputs, allow_unused=True)``.

    Where reentrant checkpointing refuses it and ``rerun`` is given, the forward is run again and
    the gradients are read from ``.grad`` after ``torch.autograd.backward`` (None for a leaf the
    outputs do not depend on, as ``allow_unused`` gives).
    """
    try:
        return torch.autograd.grad(list(outputs), list(leaves), list(grad_outputs),
                                   allow_unused=True)
    except RuntimeError as exc:
        if rerun is None or not refuses_grad(exc):
            raise
    outputs, leaves = rerun()
    for leaf in leaves:
        leaf.grad = None
    torch.autograd.backward(list(outputs), list(grad_outputs))
    return tuple(leaf.grad for leaf in leaves)
