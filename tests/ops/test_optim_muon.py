"""Muon: fast == torch.optim.Muon, naive Newton–Schulz == fast in float64, the singular-value band
of Newton–Schulz against the exact polar factor, and bad input."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops import optim_muon
from refllm.ops.optim_muon import (
    NS_COEFFICIENTS,
    muon,
    muon_naive,
    newton_schulz,
    newton_schulz_naive,
    polar_factor,
)
from refllm.testing import assert_close
from tests.ops.optim_trajectories import assert_trajectories, run_rule, run_torch

F64 = torch.float64


@st.composite
def muon_problems(draw, dtypes=(torch.float32, F64)):
    """2-D parameters, gradients for several steps and torch.optim.Muon's hyper-parameters.

    Not bfloat16 parameters: there torch overwrites its buffer (see the module's deviations)."""
    dtype = draw(st.sampled_from(dtypes))
    shapes = draw(st.lists(st.tuples(st.integers(1, 7), st.integers(1, 7)), min_size=1,
                           max_size=3))
    steps = draw(st.integers(1, 5))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    params = [torch.randn(s, generator=gen, dtype=F64).to(dtype) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=F64).to(dtype) for s in shapes]
             for _ in range(steps)]
    hyper = {
        "lr": draw(st.floats(0.0, 0.1)),
        "weight_decay": draw(st.sampled_from([0.0, 0.1, draw(st.floats(0.0, 1.0))])),
        "momentum": draw(st.sampled_from([0.0, 0.95, draw(st.floats(0.0, 0.99))])),
        "nesterov": draw(st.booleans()),
        "ns_steps": draw(st.integers(0, 6)),
        "eps": draw(st.sampled_from([1e-7, 1e-3])),
        "adjust_lr_fn": draw(st.sampled_from([None, "original", "match_rms_adamw"])),
    }
    if draw(st.booleans()):
        hyper["ns_coefficients"] = (2.0, -1.5, 0.5)  # a quintic that converges to 1
    return params, grads, hyper


# --- fast == torch.optim.Muon; naive (Newton–Schulz loops) == fast in float64 ------------------

@given(muon_problems())
def test_the_fast_rule_follows_torch_optim_muon(problem):
    params, grads, hyper = problem
    expected = run_torch(torch.optim.Muon, params, grads, hyper)
    actual = run_rule(muon, params, grads, hyper)
    for (pa, sa), (pe, se) in zip(actual, expected, strict=True):  # exact: torch's operations
        assert all(torch.equal(a, e) for a, e in zip(pa, pe))
        assert all(torch.equal(a["momentum_buffer"], e["momentum_buffer"])
                   for a, e in zip(sa, se))


@given(muon_problems(dtypes=(F64,)))
def test_the_naive_newton_schulz_rule_equals_the_fast_rule_in_float64(problem):
    params, grads, hyper = problem
    fast = run_rule(muon, params, grads, hyper, ns_dtype=F64)
    naive = run_rule(muon_naive, params, grads, hyper, orthogonalize="newton_schulz")
    # float64 rounding, in another order
    assert_trajectories(fast, naive, keys=["momentum_buffer"], kind="impl", dtype=F64)


@pytest.mark.parametrize("shape", [(3, 4), (4, 3)])
def test_a_bfloat16_momentum_buffer_without_nesterov_keeps_the_average(shape):
    # torch 2.13 divides its bfloat16 buffer by its norm in place here (its grad.bfloat16() is the
    # buffer itself); the rule keeps B_1 = (1 − μ) g_1
    g = 10 * torch.randn(shape, generator=torch.Generator().manual_seed(0)).bfloat16()
    p = torch.zeros(shape, dtype=torch.bfloat16)
    _, (s,) = muon([p], [g], None, lr=0.02, momentum=0.5, nesterov=False)
    assert torch.equal(s["momentum_buffer"], torch.zeros_like(g).lerp_(g, 0.5))


def test_the_rules_do_not_mutate_their_inputs():
    p, g = [torch.ones(2, 3, dtype=F64)], [torch.arange(6.0, dtype=F64).reshape(2, 3)]
    _, state = muon(p, g, None, lr=0.1)
    before = state[0]["momentum_buffer"].clone()
    muon(p, g, state, lr=0.1)
    assert torch.equal(p[0], torch.ones(2, 3, dtype=F64))
    assert torch.equal(state[0]["momentum_buffer"], before)


# --- the orthogonalisation ----------------------------------------------------------------------

@st.composite
def matrices_with_singular_values(draw, low=0.05, high=1.0):
    """G = Q₁ diag(σ) Q₂ᵀ with σ drawn in [low, high] · scale, and σ itself."""
    m, n = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    k = min(m, n)
    sigma = torch.tensor(draw(st.lists(st.floats(low, high), min_size=k, max_size=k)), dtype=F64)
    sigma = sigma * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    q1, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=F64))
    q2, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=F64))
    return q1 @ torch.diag(sigma) @ q2.T, sigma


def quintic(s, coefficients=NS_COEFFICIENTS, steps=5):
    a, b, c = coefficients
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


@given(matrices_with_singular_values())
def test_newton_schulz_maps_each_singular_value_through_the_quintic(case):
    g, sigma = case
    out = newton_schulz(g, ns_dtype=F64)
    expected = quintic(sigma / sigma.norm()).sort(descending=True).values
    got = torch.linalg.svdvals(out)
    assert_close(got.sort(descending=True).values, expected, kind="impl", dtype=F64)


@given(matrices_with_singular_values())
def test_newton_schulz_singular_values_lie_in_the_band_and_the_polar_factors_are_one(case):
    g, sigma = case  # σ/‖σ‖ ≥ 0.05/√8 > 1/500, where five default steps give [0.68, 1.21]
    for out in (newton_schulz(g, ns_dtype=F64), newton_schulz_naive(g)):
        s = torch.linalg.svdvals(out)
        assert 0.68 <= s.min() and s.max() <= 1.21, s
    assert_close(torch.linalg.svdvals(polar_factor(g)),
                 torch.ones(len(sigma), dtype=F64), kind="impl", dtype=F64)


def test_the_band_edges_and_a_tiny_singular_value_fall_below_it():
    s = torch.logspace(math.log10(2e-3), 0.0, 100001, dtype=F64)
    q = quintic(s)
    assert 0.68 < q.min() < 0.682 and 1.20 < q.max() < 1.21   # the documented band
    assert abs(quintic(torch.tensor(1e-3, dtype=F64)) - 0.47) < 0.01


def test_newton_schulz_in_bfloat16_is_torch_muons_own():
    g = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    out = newton_schulz(g)
    assert out.dtype == torch.bfloat16
    s = torch.linalg.svdvals(out.double())
    assert 0.6 < s.min() and s.max() < 1.3  # the band, widened by bfloat16's 2⁻⁸ rounding


@given(matrices_with_singular_values())
def test_the_naive_rule_steps_along_the_exact_polar_factor(case):
    g, _ = case
    p = torch.zeros_like(g)
    (new,), (s,) = muon_naive([p], [g], None, lr=0.1, momentum=0.0, weight_decay=0.0)
    assert_close(s["momentum_buffer"], g)
    o = (p - new) / optim_muon.adjusted_lr(0.1, None, g.shape)
    assert_close(o.T @ o if g.shape[0] >= g.shape[1] else o @ o.T,
                 torch.eye(min(g.shape), dtype=F64), kind="impl", dtype=F64)


def test_the_learning_rate_adjustments():
    assert optim_muon.adjusted_lr(0.1, None, (8, 2)) == 0.1 * 2.0
    assert optim_muon.adjusted_lr(0.1, "original", (2, 8)) == 0.1
    assert optim_muon.adjusted_lr(0.1, "match_rms_adamw", (4, 9)) == 0.1 * 0.2 * 3.0


def test_zero_gradient_only_decays_the_weights():
    p = [torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=F64)]
    (new,), _ = muon(p, [torch.zeros(2, 2, dtype=F64)], None, lr=0.1, weight_decay=0.5)
    assert torch.equal(new, p[0] * (1 - 0.1 * 0.5))


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [muon, muon_naive])
@pytest.mark.parametrize(("kw", "match"), [
    ({"lr": -1.0}, "lr"), ({"momentum": -0.1}, "momentum"), ({"weight_decay": -1.0},
                                                              "weight_decay"),
    ({"ns_steps": 100}, "ns_steps"), ({"ns_coefficients": (1.0, 2.0)}, "ns_coefficients"),
    ({"adjust_lr_fn": "sqrt"}, "adjust_lr_fn"), ({"eps": float("nan")}, "eps"),
])
def test_bad_hyper_parameters_name_the_argument(rule, kw, match):
    p, g = [torch.ones(2, 2)], [torch.ones(2, 2)]
    with pytest.raises(ValueError, match=match):
        rule(p, g, None, **kw)


@pytest.mark.parametrize("rule", [muon, muon_naive])
def test_a_parameter_that_is_not_a_matrix_is_refused(rule):
    with pytest.raises(ValueError, match=r"params\[0\] must be a 2-D matrix.*\(3,\)"):
        rule([torch.ones(3)], [torch.ones(3)], None)
