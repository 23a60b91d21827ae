"""Mean squared error between a prediction and a target of the same shape.

The equation, over the N elements of the prediction y_hat and the target y:

    L = (1 / N) * sum_i (y_i - y_hat_i)^2

with reduction="sum" dropping the 1 / N and reduction="none" keeping the per-element squares
(``torch.nn.functional.mse_loss``). Gradient: dL/dy_hat_i = 2 (y_hat_i - y_i) / N.

Deviation: a target whose shape differs from the input's is a ValueError (PyTorch warns and
broadcasts, which silently averages over a grown shape), and so is a dtype mismatch a TypeError
(PyTorch promotes).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from refllm.ops._loss_checks import check_mse


def mse_loss_naive(input: Float[Tensor, "*shape"], target: Float[Tensor, "*shape"],
                   reduction: str = "mean") -> Tensor:
    """MSE by a loop over the elements in Python floats (float64); PyTorch's signature.

    >>> mse_loss_naive(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 5.0]))  # (0+4+4)/3
    tensor(2.6667)
    """
    check_mse(input, target, reduction)
    xs = input.detach().double().reshape(-1).tolist()
    ys = target.detach().double().reshape(-1).tolist()
    squares = [(y - x) ** 2 for x, y in zip(xs, ys)]
    if reduction == "none":
        return torch.tensor(squares, dtype=input.dtype, device=input.device).reshape(input.shape)
    total = math.fsum(squares)
    if reduction == "mean":
        total = total / len(squares) if squares else math.nan  # an empty mean is nan, as torch
    return torch.tensor(total, dtype=input.dtype, device=input.device)


def mse_loss(input: Float[Tensor, "*shape"], target: Float[Tensor, "*shape"],
             reduction: str = "mean") -> Tensor:
    """MSE, vectorised; same values and gradients as ``F.mse_loss`` on equal shapes.

    >>> mse_loss(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 5.0]), reduction="sum")
    tensor(8.)
    """
    check_mse(input, target, reduction)
    squares = (input - target).square()
    if reduction == "none":
        return squares
    return squares.sum() if reduction == "sum" else squares.mean()
