"""Losses: cross-entropy (:mod:`refllm.ops.cross_entropy`) and MSE (:mod:`refllm.ops.mse`).

    cross-entropy  L = -sum_c y_c log softmax(x)_c      (PyTorch's weights, ignore_index, smoothing)
    MSE            L = (1 / N) sum_i (y_i - y_hat_i)^2

Each lives in its own file (equation, naive version, fast version); this module re-exports them
under the names of the API contract.
"""

from refllm.ops.cross_entropy import (
    cross_entropy,
    cross_entropy_grad,
    cross_entropy_grad_naive,
    cross_entropy_naive,
)
from refllm.ops.mse import mse_loss, mse_loss_naive

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_grad_naive",
    "cross_entropy_naive",
    "mse_loss",
    "mse_loss_naive",
]
