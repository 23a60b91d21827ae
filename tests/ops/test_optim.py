"""Update rules: fast == naive, == torch.optim, the properties of the maths, and bad input."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from refllm.ops import optim_adam, optim_sgd
from refllm.ops.choices import OPTIMIZER_KINDS, update_rule
from refllm.testing import assert_close
from refllm.testing.optimizer.strategy import OptimizerProblem, hyper_parameters, optimizer_problems

F64 = torch.float64
TORCH = {"gd": torch.optim.SGD, "sgd": torch.optim.SGD, "adam": torch.optim.Adam,
         "adamw": torch.optim.AdamW, "muon": torch.optim.Muon, "adafactor": torch.optim.Adafactor}
LIKES = list(OPTIMIZER_KINDS)
NAIVE_OPTIONS = {"muon": {"orthogonalize": "newton_schulz", "ns_dtype": F64}}
"""Muon's naive rule steps along the polar factor by default; its Newton–Schulz loops are what
the fast rule computes (with Newton–Schulz in float64)."""


def t(*values):
    return torch.tensor(values, dtype=F64)


# --- oracle: fast == naive, fast == torch.optim ----------------------------------------------

@pytest.mark.parametrize("like", LIKES)
@given(data=st.data())
def test_the_fast_rule_equals_the_naive_rule(like, data):
    problem = data.draw(optimizer_problems(like=like, steps=(1, 8)))
    options = NAIVE_OPTIONS.get(like, {})
    fast = problem.run_rule(update_rule(like), **options)
    kind = "impl" if like == "muon" else "exact"  # matrix products in another order
    fast.assert_close(problem.run_rule(update_rule(like, naive=True), **options), kind=kind)


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("like", LIKES)
@given(data=st.data())
def test_the_fast_rule_follows_torch_optim_for_twenty_steps(like, foreach, data):
    if foreach and like in ("muon", "adafactor"):
        pytest.skip("torch.optim.Muon has no foreach path; Adafactor's is tested (to rounding) "
                    "in test_optim_adafactor.py")
    problem = data.draw(optimizer_problems(like=like, steps=(20, 25), save_load=False))
    expected = problem.run(TORCH[like], **({} if like == "muon" else {"foreach": foreach}))
    problem.run_rule(update_rule(like)).assert_close(expected)  # exact: torch's own operations


@pytest.mark.parametrize("like", ["sgd", "adam", "adamw"])
def test_the_rules_do_not_mutate_their_inputs(like):
    p, g = [t(1.0, -2.0)], [t(0.5, 0.25)]
    rule = update_rule(like)
    kw = {"momentum": 0.9} if like == "sgd" else {"weight_decay": 0.1, "amsgrad": True}
    _, state = rule(p, g, None, lr=0.1, **kw)
    before = [{k: v.clone() for k, v in s.items()} for s in state]
    rule(p, g, state, lr=0.1, **kw)
    assert_close(p[0], t(1.0, -2.0))
    assert_close(g[0], t(0.5, 0.25))
    for s, b in zip(state, before):
        for k in s:
            assert_close(s[k], b[k])


# --- properties ---------------------------------------------------------------------------------

@pytest.mark.parametrize("like", LIKES)
@given(data=st.data())
def test_a_zero_learning_rate_leaves_the_parameters_unchanged(like, data):
    problem = data.draw(optimizer_problems(like=like, steps=(1, 5), hyper={"lr": 0.0}))
    for k_params in problem.run_rule(update_rule(like)).params:
        for p, p0 in zip(k_params, problem.params):
            assert torch.equal(p, p0)


def test_one_gradient_descent_step_by_hand():
    (p,), _ = optim_sgd.gd([t(1.0, 2.0, -3.0)], [t(4.0, -0.5, 0.0)], lr=0.25)
    assert_close(p, t(0.0, 2.125, -3.0))


@given(optimizer_problems(like="gd", steps=(1, 1), none_grads=False))
def test_one_gradient_descent_step_is_theta_minus_eta_g(problem):
    lr = problem.hyper[0]["lr"]
    params = problem.params
    grads = problem.grads[0]
    new, _ = optim_sgd.gd(params, grads, None, lr=lr)
    for p, p0, g in zip(new, params, grads):
        assert_close(p, p0 - lr * g)  # "exact": float64 rounding only (torch fuses p + (−η)g)


@given(steps=st.integers(1, 6), lr=st.floats(0.0, 0.5), wd=st.floats(0.01, 1.0),
       beta=st.floats(0.0, 0.99))
def test_adamw_with_zero_gradients_only_shrinks_the_weights_by_one_minus_lr_wd(steps, lr, wd,
                                                                              beta):
    p0 = [t(1.0, -2.0, 0.5)]
    params, state = p0, None
    for _ in range(steps):
        params, state = optim_adam.adamw(params, [torch.zeros(3, dtype=F64)], state, lr=lr,
                                weight_decay=wd, betas=(beta, beta))
    assert_close(params[0], p0[0] * (1 - lr * wd) ** steps)


def test_adam_with_weight_decay_does_not_merely_shrink_the_weights():
    p0, zero = [t(1.0, -2.0, 0.5)], [torch.zeros(3, dtype=F64)]
    adam, _ = optim_adam.adam(p0, zero, None, lr=0.1, weight_decay=0.1)
    adamw, _ = optim_adam.adamw(p0, zero, None, lr=0.1, weight_decay=0.1)
    assert_close(adamw[0], p0[0] * (1 - 0.1 * 0.1))
    # Adam's L2 term goes through the moments: the first step is ≈ −lr·sign(θ), not −lr·wd·θ
    assert not torch.allclose(adam[0], adamw[0])
    assert_close(adam[0], p0[0] - 0.1 * (0.1 * p0[0]) / ((0.1 * p0[0]).abs() + 1e-8))


@given(problem=optimizer_problems(like="adam", steps=(1, 1), none_grads=False, max_groups=1,
                                  hyper={"weight_decay": 0.0, "maximize": False}))
def test_adams_first_step_is_lr_times_g_over_abs_g_plus_eps(problem):
    h = problem.hyper[0]
    new, _ = optim_adam.adam(problem.params, problem.grads[0], None, **h)
    for p, p0, g in zip(new, problem.params, problem.grads[0]):
        step = p0 - p
        assert_close(step, h["lr"] * g / (g.abs() + h["eps"]))  # m̂_1 = g, v̂_1 = g²
        big = g.abs() > 1e3 * h["eps"]
        assert torch.all(torch.sign(step[big]) == torch.sign(g[big]) * (h["lr"] > 0))


@given(lams=st.lists(st.floats(0.1, 10.0), min_size=2, max_size=5), frac=st.floats(0.05, 0.95),
       seed=st.integers(0, 2**16))
def test_gradient_descent_on_a_quadratic_contracts_at_max_abs_one_minus_eta_lambda(lams, frac,
                                                                                    seed):
    lam = torch.tensor(lams, dtype=F64)
    eta = frac * 2 / lam.max().item()  # stable: 0 < η < 2 / λ_max
    q, _ = torch.linalg.qr(torch.randn(len(lams), len(lams), dtype=F64,
                                       generator=torch.Generator().manual_seed(seed)))
    a = q @ torch.diag(lam) @ q.T  # L(x) = ½ xᵀAx, minimum at 0
    rho = (1 - eta * lam).abs()
    worst = int(rho.argmax())
    x = [q[:, worst].clone()]  # start on the slowest eigenvector
    for _ in range(10):
        before = x[0].norm()
        x, _ = optim_sgd.gd(x, [a @ x[0]], None, lr=eta)
        assert_close(x[0].norm() / before, rho[worst], kind="impl", dtype=F64)
    x0 = torch.ones(len(lams), dtype=F64)
    x = [x0]
    for _ in range(10):
        x, _ = optim_sgd.gd(x, [a @ x[0]], None, lr=eta)
    closed_form = q @ torch.diag((1 - eta * lam) ** 10) @ q.T @ x0
    assert_close(x[0], closed_form, kind="impl", dtype=F64)


@pytest.mark.parametrize("like", ["sgd", "adam", "adamw"])
@given(data=st.data())
def test_maximize_is_descent_on_the_negated_gradient(like, data):
    problem = data.draw(optimizer_problems(like=like, steps=(1, 6), hyper={"maximize": True}))
    flipped = OptimizerProblem(problem.like, problem.params, problem.groups,
                               [dict(h, maximize=False) for h in problem.hyper],
                               [[None if g is None else -g for g in row] for row in problem.grads])
    problem.run_rule(update_rule(like)).assert_close(flipped.run_rule(update_rule(like)))


@given(hyper=hyper_parameters(like="sgd"))
def test_sgd_paper_and_pytorch_conventions_agree_exactly_when_dampening_is_zero(hyper):
    p, g = [t(1.0, -2.0)], [t(0.5, 3.0)]
    a, sa = optim_sgd.sgd_naive(p, g, None, **hyper)
    b, sb = optim_sgd.sgd_naive(p, g, None, **hyper, convention="paper")
    if hyper["momentum"] == 0 or hyper["dampening"] == 0:
        assert_close(a[0], b[0])
    else:  # paper: b_0 = 0, so b_1 = (1 − τ) g_1
        assert_close(sb[0]["momentum_buffer"], sa[0]["momentum_buffer"] * (1 - hyper["dampening"]))


@pytest.mark.parametrize("rule", [optim_adam.adam_naive, optim_adam.adamw_naive])
def test_adam_paper_and_pytorch_conventions_agree_when_eps_is_zero_and_differ_otherwise(rule):
    p, g = [t(1.0, -2.0)], [t(0.5, 3.0)]
    a, sa = rule(p, g, None, lr=0.1, eps=0.0)
    b, sb = rule(p, g, None, lr=0.1, eps=0.0, convention="paper")
    for _ in range(3):
        a, sa = rule(a, g, sa, lr=0.1, eps=0.0)
        b, sb = rule(b, g, sb, lr=0.1, eps=0.0, convention="paper")
    assert_close(a[0], b[0])
    c, _ = rule(p, g, None, lr=0.1, eps=0.1)
    d, _ = rule(p, g, None, lr=0.1, eps=0.1, convention="paper")  # ε̂ = ε √(1 − β₂)
    assert not torch.allclose(c[0], d[0])


@pytest.mark.parametrize("adam_eps", optim_adam.ADAM_EPS)
@pytest.mark.parametrize("like", ["adam", "adamw"])
@given(data=st.data())
def test_each_eps_placement_is_the_same_in_the_fast_and_the_naive_rule(like, adam_eps, data):
    problem = data.draw(optimizer_problems(like=like, steps=(1, 6)))
    fast = problem.run_rule(update_rule(like), adam_eps=adam_eps)
    fast.assert_close(problem.run_rule(update_rule(like, naive=True), adam_eps=adam_eps),
                      kind="exact")


@pytest.mark.parametrize("rule", [optim_adam.adam, optim_adam.adamw])
def test_eps_as_a_floor_by_hand(rule):
    # one step from a zero state: m_hat = g, sqrt(v_hat) = |g|; g = 1e-3 against eps = 0.01
    p, g = [t(1.0, 1.0)], [t(1e-3, 1.0)]
    hyper = {"lr": 0.1, "eps": 0.01, "weight_decay": 0.0}
    floor, _ = rule(p, g, None, adam_eps="floor", **hyper)
    added, _ = rule(p, g, None, **hyper)
    assert_close(floor[0], t(1.0 - 0.1 * 1e-3 / 0.01, 1.0 - 0.1))  # max(|g|, eps)
    assert_close(added[0], t(1.0 - 0.1 * 1e-3 / 0.011, 1.0 - 0.1 / 1.01))  # |g| + eps
    before, _ = rule(p, g, None, adam_eps="before_correction", **hyper)
    root = math.sqrt(1 - 0.999)  # eps added to sqrt(v) = |g| sqrt(1 - b2), then corrected
    assert_close(before[0], t(1.0 - 0.1 * root * 1e-3 / (1e-3 * root + 0.01),
                              1.0 - 0.1 * root / (root + 0.01)))
    with pytest.raises(ValueError, match="adam_eps must be one of"):
        rule(p, g, None, adam_eps="inside", **hyper)


def test_amsgrad_keeps_the_max_of_the_uncorrected_second_moment():
    p = [t(0.0)]
    _, s = optim_adam.adam(p, [t(3.0)], None, amsgrad=True, betas=(0.5, 0.5))
    _, s = optim_adam.adam(p, [t(0.0)], s, amsgrad=True, betas=(0.5, 0.5))
    assert_close(s[0]["exp_avg_sq"], t(0.5 * 0.5 * 9.0))
    assert_close(s[0]["max_exp_avg_sq"], t(0.5 * 9.0))
    assert s[0]["step"].item() == 2.0


@example(0.0)
@given(st.floats(1.0, 1e6))
def test_division_by_zero_in_the_naive_adam_follows_ieee_like_torch(eps):
    # eps = 0 and a zero gradient: 0 / 0 = nan in torch and in the naive rule alike
    p, g = [t(1.0)], [t(0.0)]
    a, _ = optim_adam.adam(p, g, None, eps=eps)
    b, _ = optim_adam.adam_naive(p, g, None, eps=eps)
    assert_close(a[0], b[0])
    assert math.isnan(a[0].item()) == (eps == 0.0)


# --- bad input ------------------------------------------------------------------------------------

P, G = [t(1.0, 2.0)], [t(0.1, 0.2)]


@pytest.mark.parametrize("rule", [optim_sgd.sgd, optim_sgd.sgd_naive, optim_sgd.gd,
                                  optim_sgd.gd_naive])
def test_a_negative_learning_rate_is_a_value_error_naming_lr(rule):
    with pytest.raises(ValueError, match=r"lr must lie in \[0.0, inf\], got -0.1"):
        rule(P, G, None, lr=-0.1)


@pytest.mark.parametrize("rule", [optim_sgd.sgd, optim_sgd.sgd_naive])
@pytest.mark.parametrize("kwargs, match", [
    ({"momentum": -0.5}, r"momentum must lie in \[0.0, inf\], got -0.5"),
    ({"weight_decay": -1.0}, r"weight_decay must lie in \[0.0, inf\], got -1.0"),
    ({"nesterov": True}, r"nesterov momentum requires momentum > 0 and dampening = 0"),
    ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, r"dampening=0.1"),
    ({"dampening": 1.5}, r"dampening must lie in \[0.0, 1.0\]"),
])
def test_bad_sgd_hyper_parameters_are_value_errors_naming_the_argument(rule, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rule(P, G, None, lr=0.1, **kwargs)


@pytest.mark.parametrize("rule", [optim_adam.adam, optim_adam.adam_naive, optim_adam.adamw,
                                  optim_adam.adamw_naive])
@pytest.mark.parametrize("kwargs, match", [
    ({"betas": (1.0, 0.9)}, r"betas\[0\] must lie in \[0.0, 1.0\), got 1.0"),
    ({"betas": (0.9, -0.1)}, r"betas\[1\] must lie in \[0.0, 1.0\), got -0.1"),
    ({"betas": (0.9,)}, r"betas must be a pair"),
    ({"eps": -1e-8}, r"eps must lie in \[0.0, inf\], got -1e-08"),
    ({"weight_decay": -0.1}, r"weight_decay must lie in \[0.0, inf\]"),
    ({"lr": -1.0}, r"lr must lie in \[0.0, inf\]"),
    ({"lr": float("nan")}, r"lr must be finite, got nan"),
])
def test_bad_adam_hyper_parameters_are_value_errors_naming_the_argument(rule, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rule(P, G, None, **kwargs)


def test_adam_accepts_eps_zero_as_torch_does():
    optim_adam.adam(P, G, None, eps=0.0)


@pytest.mark.parametrize("rule", [optim_sgd.gd, optim_sgd.sgd, optim_adam.adam, optim_adam.adamw,
                                  optim_sgd.sgd_naive, optim_adam.adam_naive])
def test_mismatched_params_grads_and_state_are_value_errors_naming_the_shapes(rule):
    kw = {"lr": 0.1}
    with pytest.raises(ValueError, match=r"params and grads must have the same length, got 1 "):
        rule(P, G + G, None, **kw)
    with pytest.raises(ValueError, match=r"grads\[0\] must have the shape of params\[0\] "
                                         r"\(2,\), got \(3,\)"):
        rule(P, [t(1.0, 2.0, 3.0)], None, **kw)
    with pytest.raises(ValueError, match=r"state must hold one dict per parameter"):
        rule(P, G, [{}, {}], **kw)
    with pytest.raises(TypeError, match=r"grads\[0\] must have the dtype of params\[0\]"):
        rule(P, [G[0].float()], None, **kw)
    with pytest.raises(TypeError, match=r"grads\[0\] must be a torch.Tensor"):
        rule(P, [None], None, **kw)


def test_a_state_tensor_of_the_wrong_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\] must have the shape"):
        optim_adam.adam(P, G, [{"exp_avg": t(1.0)}])


def test_an_unknown_convention_is_a_value_error():
    with pytest.raises(ValueError, match="convention must be 'pytorch' or 'paper'"):
        optim_adam.adam_naive(P, G, None, convention="kingma")


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_in_place_rule_updates_params_and_state_as_the_pure_rule_returns_them(name):
    pure_rule = update_rule(name)
    in_place = {"sgd": optim_sgd.sgd_, "adam": optim_adam.adam_, "adamw": optim_adam.adamw_}[name]
    hyper = {"lr": 0.1, "weight_decay": 0.05}
    if name == "sgd":
        hyper.update(momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    state: list[dict] = [{}, {}]
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        expected_params, expected_state = pure_rule(params, grads, state, **hyper)
        in_place(params, grads, state, **hyper)
        for p, q, s, r in zip(params, expected_params, state, expected_state):
            assert_close(p, q)
            assert sorted(s) == sorted(r)
            for key in s:
                assert_close(torch.as_tensor(s[key]), torch.as_tensor(r[key]))
