"""Hypothesis strategies for valid inputs of every refllm op (public, like hypothesis.extra.numpy).

Each draws inputs in PyTorch's calling convention (a :class:`refllm.testing.engine.case.Case`, or
for multi-head attention and optimizers a richer case object), with keyword switches for the
features to exercise. Each op's strategy lives in its folder (``refllm.testing.sdpa.strategy``,
...); this module gathers the public ones.
"""

from refllm.testing.clip_grad_norm.strategy import ClipProblem, clip_problems
from refllm.testing.cross_entropy.strategy import cross_entropy_cases
from refllm.testing.layer_norm.strategy import layer_norm_cases
from refllm.testing.linear_cross_entropy.strategy import linear_cross_entropy_cases
from refllm.testing.mse.strategy import mse_cases
from refllm.testing.multihead.strategy import MultiheadCase, multihead_cases
from refllm.testing.optimizer.strategy import (
    OptimizerProblem,
    Trajectory,
    hyper_parameters,
    optimizer_problems,
)
from refllm.testing.rms_norm.strategy import rms_norm_cases
from refllm.testing.rope.strategy import rope_cases
from refllm.testing.sdpa.strategy import sdpa_cases
from refllm.testing.softmax.strategy import softmax_cases
from refllm.testing.swiglu.strategy import swiglu_cases

__all__ = [
    "sdpa_cases", "softmax_cases", "cross_entropy_cases", "mse_cases", "multihead_cases",
    "MultiheadCase", "optimizer_problems", "hyper_parameters", "OptimizerProblem", "Trajectory",
    "clip_problems", "ClipProblem",
    "rms_norm_cases", "layer_norm_cases", "swiglu_cases", "rope_cases",
    "linear_cross_entropy_cases",
]
