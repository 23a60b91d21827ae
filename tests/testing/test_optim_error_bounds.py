"""The a-priori rounding-error bounds of optimizer trajectories (refllm.testing.optimizer.
error_bounds): they hold for real float32 runs, grow where a run is ill-conditioned, and leave no
room for a bug; Muon's measured allowance holds for bfloat16 Newton–Schulz written otherwise."""

import pytest
import torch
from hypothesis import given

from refllm.ops.choices import OPTIMIZER_KINDS, update_rule
from refllm.testing.engine.tolerances import tolerance
from refllm.testing.optimizer.check import _cast, _resolved, reference_trajectory
from refllm.testing.optimizer.error_bounds import (
    PARAMS_UNBOUNDED,
    Arithmetic,
    Rounded,
    muon_parameter_bounds,
    optimizer_error_bounds,
)
from refllm.testing.optimizer.strategy import OptimizerProblem, optimizer_problems
from tests.testing.mutants import optim_mutants as O

LIKES = [k for k in OPTIMIZER_KINDS if k not in PARAMS_UNBOUNDED]
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
         "adafactor": torch.optim.Adafactor}


def _excess(traj, ref, bounds, key="params") -> float:
    """max over steps, parameters and elements of |actual - ref| - bound (<= 0: within it)."""
    worst = float("-inf")
    if key == "params":
        pairs = zip(traj.params, ref.params)
    else:
        pairs = zip(([s.get(key) for s in row] for row in traj.states),
                    ([s.get(key) for s in row] for row in ref.states))
    for k, (row, ref_row) in enumerate(pairs):
        for i, (a, e) in enumerate(zip(row, ref_row)):
            if e is None:  # no gradient yet: no state
                continue
            worst = max(worst, float(((a.double() - e).abs() - bounds[k][i][key]).max()))
    return worst


def _excess_of_float32_run(problem: OptimizerProblem, run, key="params") -> float:
    """``_excess`` of ``run(problem in float32)`` against refllm's float64 rule."""
    lp = _cast(problem, torch.float32, "cpu")
    exact = _resolved(_cast(lp, torch.float64, "cpu"), torch.float32)
    ref = reference_trajectory(lp, torch.float32)
    return _excess(run(lp), ref, optimizer_error_bounds(exact, torch.float32), key)


@pytest.mark.parametrize("like", LIKES)
def test_refllms_own_float32_trajectory_lies_within_the_bound_factor_one(like):
    @given(optimizer_problems(like=like))
    def check(problem: OptimizerProblem):
        assert _excess_of_float32_run(problem, lambda lp: lp.run_rule(update_rule(like))) <= 0

    check()


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("like", ["sgd", "adam", "adamw", "adafactor"])
def test_torch_optims_float32_trajectory_lies_within_the_bound_factor_one(like, foreach):
    @given(optimizer_problems(like=like))
    def check(problem: OptimizerProblem):
        assert _excess_of_float32_run(problem, lambda lp: lp.run(TORCH[like],
                                                                 foreach=foreach)) <= 0

    check()


def _adam_problem(g2: float, eps: float, steps: int = 3) -> OptimizerProblem:
    p = [torch.tensor([1.0], dtype=torch.float64)]
    grads = [[torch.tensor([4.0 if k == 0 else g2], dtype=torch.float64)] for k in range(steps)]
    hyper = [{"lr": 0.1, "betas": (0.5, 0.0), "eps": eps, "weight_decay": 0.0,
              "amsgrad": False, "maximize": False}]
    return OptimizerProblem("adam", p, [[0]], hyper, grads)


def test_the_bound_grows_where_adams_step_divides_by_a_tiny_root():
    # beta2 = 0: v = g^2, so after g = 4 then g = 1e-3 the step m / (sqrt(v) + eps) is ~ 1000 and
    # every rounding error of m is magnified a thousand times; with eps = 1 it is damped
    ill = optimizer_error_bounds(_adam_problem(1e-3, 1e-12), torch.float32)[-1][0]["params"]
    well = optimizer_error_bounds(_adam_problem(1e-3, 1.0), torch.float32)[-1][0]["params"]
    u = torch.finfo(torch.float32).eps / 2
    assert float(ill) > 100 * float(well) and float(well) < 20 * u  # a handful of ulps


def test_the_bound_is_not_a_free_pass_for_coupled_weight_decay():
    # AdamW's decoupled decay against Adam's coupled L2 term on one well-conditioned problem: the
    # difference is about lr * wd * |p| per step, over a hundred times the float32 bound (which
    # allows for bias corrections 1 - beta^t computed in float32, as torch's capturable path does)
    p = [torch.tensor([2.0, -1.5, 0.5], dtype=torch.float64)]
    grads = [[torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64) * (k + 1)] for k in range(5)]
    hyper = [{"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1,
              "amsgrad": False, "maximize": False}]
    problem = OptimizerProblem("adamw", p, [[0]], hyper, grads)
    right = problem.run_rule(update_rule("adamw"))
    wrong = problem.run_rule(update_rule("adam"))
    bound = optimizer_error_bounds(problem, torch.float32)[-1][0]["params"]
    gap = (right.params[-1][0] - wrong.params[-1][0]).abs()
    assert bool((gap > 100 * bound).all())


def test_the_sqrt_bound_holds_at_zero():
    ar = Arithmetic(torch.float32)
    a = Rounded(torch.tensor([0.0, 4.0], dtype=torch.float64),
                torch.tensor([1e-8, 1e-8], dtype=torch.float64))
    root = ar.sqrt(a)
    assert float(root.e[0]) == pytest.approx(1e-4)  # sqrt(e): the root is not Lipschitz at 0
    assert float(root.e[1]) == pytest.approx(1e-8 / 4 + ar.u * 2, rel=1e-6)


def test_bad_input_names_the_argument():
    problem = _adam_problem(1e-3, 1e-8)
    with pytest.raises(TypeError, match="floating-point torch.dtype, got torch.int32"):
        optimizer_error_bounds(problem, torch.int32)
    problem.like = "lion"
    with pytest.raises(ValueError, match=r"problem.like must be one of .*'sgd'.*, got 'lion'"):
        optimizer_error_bounds(problem, torch.float32)


@given(optimizer_problems(like="muon"))
def test_torch_muons_momentum_buffer_lies_within_its_bound_factor_one(problem):
    assert _excess_of_float32_run(problem, lambda lp: lp.run(torch.optim.Muon),
                                  key="momentum_buffer") <= 0


def _newton_schulz_horner_on_the_right(u, coefficients, steps, eps):
    """A correct bfloat16 Newton–Schulz that none of the allowance's five ways is: Horner's form
    on the right, X <- aX + (bX + c XA)A with A = XᵀX, never transposed."""
    a, b, c = coefficients
    x = u.bfloat16()
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x.T @ x
        x = a * x + (b * x + c * (x @ gram)) @ gram
    return x


class _MuonHeldOut(O.Muon):
    """The corpus's correct Muon with the held-out Newton–Schulz."""

    def orthogonalize(self, u, group):
        return _newton_schulz_horner_on_the_right(u, group["ns_coefficients"],
                                                  group["ns_steps"], group["eps"])


HELD_OUT_PROBLEMS = 150
HELD_OUT_SHARE, HELD_OUT_EXCESS = 0.02, 1.25


def test_muons_allowance_holds_for_a_newton_schulz_it_was_not_measured_on_but_rarely():
    """The allowance is a measured yardstick (muon_parameter_bounds): a correct bfloat16
    Newton–Schulz written in a way it was not measured on stays within it on all but a few
    drawn problems, and never far beyond. Measured with this way: see docs/oracle.md
    ("The tolerance policy", Muon). Two earlier held-out ways exceeded it on 1% of problems by
    up to 18% before they joined the measured ones."""
    from tests.testing.test_size_tier import draw_many

    tol = tolerance(torch.float32, "impl")  # the check's fixed part (float32 parameters)
    excess = []
    for problem in draw_many(optimizer_problems(like="muon"), HELD_OUT_PROBLEMS):
        lp = _cast(problem, torch.float32, "cpu")
        ref = reference_trajectory(lp, torch.float32)
        bounds = muon_parameter_bounds(_cast(lp, torch.float64, "cpu"), ref)
        traj = lp.run(_MuonHeldOut)
        worst = 0.0
        for k, (row, ref_row) in enumerate(zip(traj.params, ref.params)):
            for i, (a, e) in enumerate(zip(row, ref_row)):
                allowed = bounds[k][i] + tol.atol + tol.rtol * e.abs()
                worst = max(worst, float(((a.double() - e).abs() / allowed).max()))
        excess.append(worst)
    over = [r for r in excess if r > 1]
    assert len(over) <= HELD_OUT_SHARE * len(excess), sorted(excess)[-5:]
    assert max(excess) <= HELD_OUT_EXCESS, sorted(excess)[-5:]


def test_muons_allowance_is_no_free_pass_for_a_learning_rate_off_by_its_aspect_ratio():
    # a (2, 3) matrix: "original" adjusts lr by max(1, 2/3)^0.5 = 1; by 3/2 the step is 22% longer
    g = torch.Generator().manual_seed(0)
    p = [torch.randn(2, 3, generator=g, dtype=torch.float64)]
    grads = [[torch.randn(2, 3, generator=g, dtype=torch.float64)] for _ in range(3)]
    hyper = [{"lr": 0.01, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True,
              "ns_coefficients": (3.4445, -4.775, 2.0315), "eps": 1e-7, "ns_steps": 5,
              "adjust_lr_fn": None}]
    problem = OptimizerProblem("muon", p, [[0]], hyper, grads)
    ref = reference_trajectory(problem, torch.float32)
    longer = reference_trajectory(
        OptimizerProblem("muon", p, [[0]], [dict(hyper[0], lr=0.01 * 1.5**0.5)], grads),
        torch.float32)
    bound = muon_parameter_bounds(problem, ref)[0][0]
    assert float((longer.params[0][0] - ref.params[0][0]).abs().max()) > float(bound.max())
