"""Hypothesis strategies for valid inputs of every refllm op (public, like hypothesis.extra.numpy).

Each draws inputs in PyTorch's calling convention (a :class:`refllm.testing.case.Case`, or for
multi-head attention and optimizers a richer case object), with keyword switches for the features
to exercise.
"""

from refllm.testing.strategies.attention import sdpa_cases
from refllm.testing.strategies.losses import cross_entropy_cases, mse_cases
from refllm.testing.strategies.multihead import MultiheadCase, multihead_cases
from refllm.testing.strategies.optim import (
    OptimizerProblem,
    Trajectory,
    hyper_parameters,
    optimizer_problems,
)
from refllm.testing.strategies.softmax import softmax_cases

__all__ = [
    "sdpa_cases", "softmax_cases", "cross_entropy_cases", "mse_cases", "multihead_cases",
    "MultiheadCase", "optimizer_problems", "hyper_parameters", "OptimizerProblem", "Trajectory",
]
