"""Hypothesis strategy for LayerNorm inputs, in PyTorch's calling convention.

``layer_norm_cases()`` draws `Case` objects for ``F.layer_norm(input, normalized_shape, weight,
bias, eps=...)``: the norms' shared strategy (`refllm.testing.rms_norm.strategy.norm_cases`: the
small-variance and large-offset regimes, an explicit eps, two normalised axes, no weight, the
kernel-sized tier) with a bias, left out with the feature "no_bias". A large common offset
(1e2 to 1e3 on rows of unit spread) is where a one-pass variance ``E[x^2] - E[x]^2`` cancels.

>>> from hypothesis import given
>>> @given(layer_norm_cases())
... def test(case):
...     x, shape, weight, bias = case.args
...     assert bias is None or bias.shape == x.shape[x.dim() - len(shape):]
>>> test()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.sizes import DEFAULT_BUDGET
from refllm.testing.rms_norm.strategy import NORM_FEATURES, norm_cases, norm_default_calls

__all__ = ["LAYER_NORM_ONLY", "layer_norm_cases", "layer_norm_default_calls"]

LAYER_NORM_ONLY = ("no_bias",)
"""LayerNorm's own feature: the bias left out (passed as None)."""


def layer_norm_cases(*, dtype: torch.dtype = torch.float64,
                     features: Sequence[str] = NORM_FEATURES + LAYER_NORM_ONLY,
                     max_size: int = 6, long_axes: bool = True,
                     budget: int = DEFAULT_BUDGET) -> st.SearchStrategy[Case]:
    """`Case` objects for ``F.layer_norm(input, normalized_shape, weight, bias, eps=...)``; the
    default call ``F.layer_norm(x, (n,), weight, bias)`` about one case in five."""
    unknown = [f for f in features if f not in NORM_FEATURES + LAYER_NORM_ONLY]
    if unknown:
        raise ValueError(f"layer_norm_cases: unknown features {unknown}; choose from "
                         f"{list(NORM_FEATURES + LAYER_NORM_ONLY)}")
    return norm_cases(dtype=dtype, features=features, bias=True, max_size=max_size,
                      long_axes=long_axes, budget=budget)


def layer_norm_default_calls(*, max_size: int = 6, long: bool = True,
                             budget: int = DEFAULT_BUDGET) -> list[Case]:
    """Fixed float64 examples of ``F.layer_norm(x, (n,), weight, bias)`` (see
    `refllm.testing.rms_norm.strategy.norm_default_calls`)."""
    return norm_default_calls(bias=True, max_size=max_size, long=long, budget=budget,
                              seed=20261205)
