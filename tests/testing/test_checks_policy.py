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
    floor = LOW_PRECISION_NOISE_FACTOR * eps * 2.0 + IMPL[torch.bfloat16].atol * 2.0  # max|ref|
    expected = LOW_PRECISION_FACTOR * 0.01 + floor
    assert abs(low_precision_bound(ref, plain, torch.bfloat16) - expected) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("power", [3, 9])
def test_a_verdict_is_the_same_for_the_problem_scaled_up_by_a_power_of_two(dtype, power):
    """The absolute bound follows the output's magnitude (up to 1e3): an error of a fixed share of
    the output is judged alike at every scale. (With torch.testing's fixed atol, the rounding
    of an element near zero in an output of 512 failed, though it is 1e-5 of the output.)"""
    ref = torch.tensor([0.5, -2.0, 1.0, 1e-4], dtype=torch.float64)
    plain = ref * (1 + 2 * torch.finfo(dtype).eps)
    s = 2.0 ** power  # exact: the rescaled errors are exactly the rescaled ones
    at_one = compare(ref, ref, dtype=dtype, plain=plain)
    for relative in (0.5, 2.0):  # half and twice the allowed error at unit scale
        actual = ref.clone()
        actual[3] += relative * at_one.tolerance
        unit = compare(actual, ref, dtype=dtype, plain=plain)
        scaled = compare(actual * s, ref * s, dtype=dtype, plain=plain * s)
        assert unit.passed == scaled.passed == (relative < 1), (relative, unit, scaled)


def test_below_magnitude_one_the_absolute_bound_stays():
    # a small output can be the difference of large terms: its rounding does not shrink with it
    ref = torch.tensor([1.5e-6], dtype=torch.float64)
    assert compare(ref + 2.7e-7, ref, dtype=torch.float64).tolerance > 1e-7
    big = torch.tensor([2.0, 3e4], dtype=torch.float64)
    assert abs(compare(big, big, dtype=torch.float64).tolerance - IMPL[torch.float64].atol * 1e3
               - IMPL[torch.float64].rtol * 2.0) < 1e-15  # clamped at 1e3, at element 0


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
