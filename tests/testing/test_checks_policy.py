"""The tolerance policy: elementwise error bounds for float64/float32, FlashAttention's rule for
bf16/fp16."""

import pytest
import torch
import torch.nn.functional as F

from refllm.testing.checks import compare, low_precision_bound
from refllm.testing.engine.case import Case
from refllm.testing.engine.tolerances import (
    ERROR_BOUND_FACTOR,
    IMPL,
    LOW_PRECISION_FACTOR,
    LOW_PRECISION_NOISE_FACTOR,
    gamma,
)
from refllm.testing.sdpa.error_bounds import sdpa_error_bounds


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


def test_with_an_error_bound_the_rule_is_elementwise_and_scales_with_the_bound():
    ref = torch.tensor([1.0, 1000.0], dtype=torch.float64)
    bound = torch.tensor([0.0, 0.01], dtype=torch.float64)  # an ill-conditioned second element
    fixed = IMPL[torch.float32]
    slack = ERROR_BOUND_FACTOR * 0.01 + fixed.atol + fixed.rtol * 1000.0
    inside = ref + torch.tensor([0.0, 0.9 * slack], dtype=torch.float64)
    assert compare(inside, ref, dtype=torch.float32, bound=bound).passed
    # the same error on the well-conditioned element is a disagreement
    v = compare(ref + torch.tensor([0.9 * slack, 0.0], dtype=torch.float64), ref,
                dtype=torch.float32, bound=bound)
    assert not v.passed and v.index == (0,) and v.rule.startswith("elementwise")


def test_gamma_is_highams_n_u_over_one_minus_n_u():
    u = torch.finfo(torch.float32).eps / 2
    assert gamma(8, torch.float32) == pytest.approx(8 * u / (1 - 8 * u), rel=1e-12)


def test_the_attention_error_bound_grows_with_the_logits_and_vanishes_in_float64():
    q = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    small = Case((q, q, q))
    large = Case((100 * q, 100 * q, q))
    g = torch.ones(2, 3, 4, dtype=torch.float64)
    b_small = sdpa_error_bounds(small, g, torch.float32)
    b_large = sdpa_error_bounds(large, g, torch.float32)
    for name in ("forward output", "grad wrt query", "grad wrt key", "grad wrt value"):
        assert b_small[name].shape == b_large[name].shape
    assert b_large["forward output"].max() > 100 * b_small["forward output"].max()
    f64 = sdpa_error_bounds(large, g, torch.float64)["grad wrt key"].max()
    assert f64 < IMPL[torch.float64].atol  # float64: the fixed bound dominates


def test_the_attention_error_bound_is_not_a_free_pass_for_a_wrong_scale():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 5, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    case = Case((q.float(), k.float(), v.float()))
    right = F.scaled_dot_product_attention(q, k, v)
    wrong = F.scaled_dot_product_attention(q, k, v, scale=1 / 4)  # 1/d instead of 1/sqrt(d)
    bound = sdpa_error_bounds(case, None, torch.float32)["forward output"]
    assert compare(right.float(), right, dtype=torch.float32, bound=bound).passed
    assert not compare(wrong.float(), right, dtype=torch.float32, bound=bound).passed


def test_a_non_finite_result_is_excused_only_where_the_plain_computation_overflows_too():
    ref = torch.tensor([16313.9, 1.0], dtype=torch.float64)
    actual = torch.tensor([float("inf"), 1.0], dtype=torch.float64)
    overflowing_plain = torch.tensor([float("inf"), 1.0], dtype=torch.float64)
    assert compare(actual, ref, dtype=torch.float16, plain=overflowing_plain).passed
    assert not compare(actual, ref, dtype=torch.float16, plain=ref).passed
    assert compare(actual, ref, dtype=torch.float16, plain=ref, overflow=True).passed
    assert not compare(actual, ref, dtype=torch.float64, overflow=True).passed
