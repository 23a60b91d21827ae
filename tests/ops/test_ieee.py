"""The naive references divide as IEEE 754 and torch do (refllm.ops._ieee)."""

import math

import pytest
import torch

from refllm.ops._ieee import ieee_div

VALUES = [0.0, -0.0, 1.5, -2.0, math.inf, -math.inf, math.nan, 1e-310]


@pytest.mark.parametrize("a", VALUES)
@pytest.mark.parametrize("b", VALUES)
def test_ieee_div_equals_a_float64_tensor_division(a, b):
    want = (torch.tensor(a, dtype=torch.float64) / torch.tensor(b, dtype=torch.float64)).item()
    got = ieee_div(a, b)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
