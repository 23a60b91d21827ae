"""The tolerance policy: fixed bounds for float64/float32, FlashAttention's rule for bf16/fp16."""

import torch

from refllm.testing.checks import compare, low_precision_bound
from refllm.testing.tolerances import (
    IMPL,
    LOW_PRECISION_FACTOR,
    LOW_PRECISION_NOISE_FACTOR,
)


def test_the_bf16_bound_is_k_times_the_plain_error_plus_a_floor_from_the_reference():
    ref = torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    plain = ref + torch.tensor([0.0, 0.01, -0.002], dtype=torch.float64)  # plain error 0.01
    eps = torch.finfo(torch.bfloat16).eps
    floor = LOW_PRECISION_NOISE_FACTOR * eps * 2.0 + IMPL[torch.bfloat16].atol
    expected = LOW_PRECISION_FACTOR * 0.01 + floor
    assert abs(low_precision_bound(ref, plain, torch.bfloat16) - expected) < 1e-12


def test_a_bf16_result_passes_within_the_bound_and_fails_beyond_it():
    ref = torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    plain = ref + torch.tensor([0.0, 0.01, 0.0], dtype=torch.float64)
    bound = low_precision_bound(ref, plain, torch.bfloat16)
    inside = ref + torch.tensor([0.0, 0.0, 0.9 * bound], dtype=torch.float64)
    outside = ref + torch.tensor([0.0, 0.0, 1.1 * bound], dtype=torch.float64)
    assert compare(inside, ref, dtype=torch.bfloat16, plain=plain).passed
    v = compare(outside, ref, dtype=torch.bfloat16, plain=plain)
    assert not v.passed and v.index == (2,) and abs(v.tolerance - bound) < 1e-15


def test_float64_uses_the_fixed_bound_and_reports_the_worst_element():
    ref = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    actual = ref.clone()
    actual[1, 0] += 1e-3
    v = compare(actual, ref, dtype=torch.float64)
    assert not v.passed and v.index == (1, 0) and v.expected == 3.0
    assert abs(v.abs_error - 1e-3) < 1e-12 and "fixed bound" in v.rule


def test_float32_beyond_the_fixed_bound_still_passes_within_the_plain_error():
    ref = torch.tensor([100.0], dtype=torch.float64)
    plain = torch.tensor([100.01], dtype=torch.float64)  # an ill-conditioned input
    assert compare(ref + 0.015, ref, dtype=torch.float32, plain=plain).passed
    assert not compare(ref + 0.05, ref, dtype=torch.float32, plain=plain).passed


def test_non_finite_values_must_match_the_reference():
    ref = torch.tensor([1.0, float("nan"), float("inf")], dtype=torch.float64)
    assert compare(ref.clone(), ref, dtype=torch.float64).passed
    v = compare(torch.tensor([1.0, 0.0, float("inf")], dtype=torch.float64), ref,
                dtype=torch.float64)
    assert not v.passed and v.index == (1,) and v.rule.startswith("non-finite")
