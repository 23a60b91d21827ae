"""Adafactor: fast == torch.optim.Adafactor (for-loop and foreach), fast == naive, the factored
second moment, relative step sizes and update clipping, and bad input."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.optim_adafactor import adafactor, adafactor_naive
from refllm.testing import assert_close
from tests.ops.optim_trajectories import assert_trajectories, run_rule, run_torch

F64 = torch.float64
SHAPES = st.one_of(st.just(()), st.tuples(st.integers(1, 6)),
                   st.tuples(st.integers(1, 5), st.integers(1, 5)),
                   st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)))


@st.composite
def adafactor_problems(draw, dtypes=(torch.float32, F64)):
    """0-D to 3-D parameters of one dtype, gradients for several steps, Adafactor's hyper."""
    dtype = draw(st.sampled_from(dtypes))
    shapes = draw(st.lists(SHAPES, min_size=1, max_size=4))
    steps = draw(st.integers(1, 6))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1e-4, 1.0, 10.0]))
    params = [torch.randn(s, generator=gen, dtype=F64).to(dtype) for s in shapes]
    grads = [[(scale * torch.randn(s, generator=gen, dtype=F64)).to(dtype) for s in shapes]
             for _ in range(steps)]
    hyper = {
        "lr": draw(st.sampled_from([1e-2, 0.5, draw(st.floats(0.0, 1.0))])),
        "beta2_decay": draw(st.sampled_from([-0.8, 0.0, draw(st.floats(-2.0, 0.0))])),
        "eps": (draw(st.sampled_from([None, 1e-30, 1e-3])), draw(st.sampled_from([1e-3, 0.0]))),
        "d": draw(st.sampled_from([1.0, draw(st.floats(1.0, 5.0))])),
        "weight_decay": draw(st.sampled_from([0.0, draw(st.floats(0.0, 1.0))])),
        "maximize": draw(st.booleans()),
    }
    return params, grads, hyper


# --- fast == torch.optim.Adafactor; fast == naive ----------------------------------------------

@given(adafactor_problems())
def test_the_fast_rule_is_torch_optim_adafactors_for_loop_rule(problem):
    params, grads, hyper = problem
    expected = run_torch(torch.optim.Adafactor, params, grads, hyper, foreach=False)
    actual = run_rule(adafactor, params, grads, hyper)
    for (pa, sa), (pe, se) in zip(actual, expected, strict=True):  # exact: torch's operations
        assert all(torch.equal(a, e) for a, e in zip(pa, pe))
        for a, e in zip(sa, se):
            assert sorted(a) == sorted(e) and all(torch.equal(a[k], e[k]) for k in a)


@given(adafactor_problems())
def test_the_fast_rule_follows_torch_optim_adafactors_foreach_rule(problem):
    params, grads, hyper = problem
    expected = run_torch(torch.optim.Adafactor, params, grads, hyper, foreach=True)
    # foreach scales the update and then adds it where the for-loop adds with alpha: one rounding
    assert_trajectories(run_rule(adafactor, params, grads, hyper), expected, kind="impl",
                        dtype=params[0].dtype)


@given(adafactor_problems())
def test_the_fast_rule_equals_the_naive_rule(problem):
    params, grads, hyper = problem
    # the naive rule is float64 throughout; the fast rule rounds to the parameters' dtype
    assert_trajectories(run_rule(adafactor, params, grads, hyper),
                        run_rule(adafactor_naive, params, grads, hyper), kind="impl",
                        dtype=params[0].dtype)


def test_the_rule_does_not_mutate_its_inputs():
    p, g = [torch.ones(2, 3, dtype=F64)], [torch.arange(6.0, dtype=F64).reshape(2, 3)]
    _, state = adafactor(p, g, None)
    before = {k: v.clone() for k, v in state[0].items()}
    adafactor(p, g, state)
    assert torch.equal(p[0], torch.ones(2, 3, dtype=F64))
    assert all(torch.equal(state[0][k], before[k]) for k in before)


# --- properties ---------------------------------------------------------------------------------

@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=5),
       st.lists(st.floats(0.1, 10.0), min_size=2, max_size=5))
def test_a_rank_one_squared_gradient_is_factored_exactly(r, c):
    # g² = r cᵀ (rank one) is what R C / mean(R) reproduces; with β̂₂_1 = 0 (t = 1) V̂ = g²
    g = (torch.tensor(r, dtype=F64)[:, None] * torch.tensor(c, dtype=F64)[None, :]).sqrt()
    _, (s,) = adafactor([torch.zeros_like(g)], [g], None)
    v = s["row_var"] @ s["col_var"] / s["row_var"].mean()
    assert_close(v, g * g, kind="impl", dtype=F64)
    assert s["row_var"].shape == (len(r), 1) and s["col_var"].shape == (1, len(c))


@given(st.integers(1, 50), st.floats(1e-4, 1.0))
def test_the_step_is_relative_and_clipped(t, lr):
    # U = g/|g| = sign(g), RMS(U) = 1 ≤ d: a step of α_t = max(ε₂, RMS(θ)) · min(γ, 1/√t) per entry
    theta = torch.tensor([3.0, -4.0], dtype=F64)  # RMS = √12.5
    g = torch.tensor([1.0, -2.0], dtype=F64)
    state = [{"step": torch.tensor(float(t - 1), dtype=F64), "variance": g * g}]
    (new,), _ = adafactor([theta], [g], state, lr=lr)
    alpha = math.sqrt(12.5) * min(lr, 1 / math.sqrt(t))
    assert_close(new, theta - alpha * torch.sign(g), kind="impl", dtype=F64)
    # ε₂ floors RMS(θ): from θ = 0 the step is ε₂ · ρ_t
    (small,), _ = adafactor([torch.zeros(2, dtype=F64)], [g], None, lr=lr, eps=(None, 0.5))
    assert_close(small, -0.5 * min(lr, 1.0) * torch.sign(g), kind="impl", dtype=F64)


def test_update_clipping_caps_the_rms_of_the_update():
    # a spike at t = 1000 (1 − β̂₂ = 1000^−0.8 ≈ 0.004): V̂ ≈ 40, U ≈ 15.8, RMS(U) ≈ 7.9 > d = 2
    theta, g = torch.ones(4, dtype=F64), torch.tensor([100.0, 0.0, 0.0, 0.0], dtype=F64)
    state = [{"step": torch.tensor(999.0, dtype=F64),
              "variance": torch.full((4,), 1e-6, dtype=F64)}]
    (new,), _ = adafactor([theta], [g], state, lr=1.0, beta2_decay=-0.8, d=2.0)
    alpha = 1.0 * min(1.0, 1 / math.sqrt(1000))  # RMS(θ) = 1
    step_rms = float((theta - new).norm() / 2)
    assert abs(step_rms - alpha * 2.0) < 1e-12  # RMS(Û) = d exactly, up to float64 rounding
    (unclipped,), _ = adafactor([theta], [g], state, lr=1.0, beta2_decay=-0.8, d=10.0)
    assert float((theta - unclipped).norm() / 2) > 7 * alpha


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [adafactor, adafactor_naive])
@pytest.mark.parametrize(("kw", "match"), [
    ({"lr": -1.0}, "lr"), ({"beta2_decay": 0.5}, "beta2_decay"), ({"eps": (-1.0, 1e-3)},
                                                                  r"eps\[0\]"),
    ({"eps": (None, -1.0)}, r"eps\[1\]"), ({"eps": 1e-3}, "eps"), ({"d": 0.5}, "d"),
    ({"weight_decay": -0.1}, "weight_decay"),
])
def test_bad_hyper_parameters_name_the_argument(rule, kw, match):
    with pytest.raises(ValueError, match=match):
        rule([torch.ones(2, 2)], [torch.ones(2, 2)], None, **kw)


@pytest.mark.parametrize("rule", [adafactor, adafactor_naive])
def test_a_factored_state_of_the_wrong_shape_names_the_key(rule):
    state = [{"step": torch.tensor(1.0), "row_var": torch.zeros(2, 1),
              "col_var": torch.zeros(3, 1)}]
    with pytest.raises(ValueError, match=r"state\[0\]\['col_var'\] must have shape \(1, 3\)"):
        rule([torch.ones(2, 3)], [torch.ones(2, 3)], state)
