"""cross_entropy: fast == naive, == PyTorch (values and gradients), properties, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, example, given
from hypothesis import strategies as st

from refllm.ops.cross_entropy import (
    cross_entropy,
    cross_entropy_grad,
    cross_entropy_grad_naive,
    cross_entropy_naive,
)
from refllm.testing import assert_close
from refllm.testing.cross_entropy.strategy import cross_entropy_cases
from refllm.testing.engine.case import Case
from tests.ops.closeness import close as _close

f64 = torch.float64


def _upstream(loss: torch.Tensor, seed: int) -> torch.Tensor:
    """A random upstream gradient of the loss's shape (not only ones)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(loss.shape, generator=gen, dtype=f64).to(loss.dtype)


def _loss_and_grad(fn, case: Case, seed: int = 0):
    x = case.args[0].detach().clone().requires_grad_()
    loss = fn(x, *case.args[1:], **case.kwargs)
    g = _upstream(loss, seed)
    (grad,) = torch.autograd.grad(loss, x, g)
    return loss.detach(), grad, g


ALL_IGNORED = Case((torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=f64), torch.tensor([-100, -100])),
                   {"reduction": "mean", "label_smoothing": 0.2})


# ----- oracle: fast == naive -------------------------------------------------------------------

@given(cross_entropy_cases(), st.integers(0, 2**16))
@example(ALL_IGNORED, 0)
def test_fast_cross_entropy_and_its_gradient_equal_the_naive_ones(case, seed):
    loss, grad, g = _loss_and_grad(cross_entropy, case, seed)
    _close(loss, case.call(cross_entropy_naive), case, "cross_entropy")
    expected = cross_entropy_grad_naive(*case.args, **case.kwargs, grad_output=g)
    _close(grad, expected, case, "cross_entropy")
    assert_close(cross_entropy_grad(*case.args, **case.kwargs, grad_output=g), expected)


# ----- against PyTorch -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(data=st.data())
def test_cross_entropy_and_its_gradients_equal_pytorch(dtype, data):
    case = data.draw(cross_entropy_cases(dtype=dtype), label="case")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    reference = case.to(f64)  # PyTorch in float64 on the very same (dtype-rounded) values
    loss, grad, g = _loss_and_grad(cross_entropy, case, seed)
    ref_loss, ref_grad, _ = _loss_and_grad(F.cross_entropy, reference, seed)
    _close(loss, ref_loss, case, "cross_entropy", kind="impl")
    _close(grad, ref_grad, case, "cross_entropy", kind="impl")
    hand = cross_entropy_grad(*case.args, **case.kwargs, grad_output=g)
    _close(hand, ref_grad, case, "cross_entropy_grad", kind="impl")


def test_the_all_ignored_batch_gives_nan_under_mean_and_zero_gradients_as_pytorch():
    for fn in (cross_entropy, cross_entropy_naive, F.cross_entropy):
        assert math.isnan(ALL_IGNORED.call(fn).item())
        sum_case = Case(ALL_IGNORED.args, {**ALL_IGNORED.kwargs, "reduction": "sum"})
        assert sum_case.call(fn).item() == 0.0
    _, grad, _ = _loss_and_grad(cross_entropy, ALL_IGNORED)
    assert torch.equal(grad, torch.zeros_like(grad))
    assert torch.equal(cross_entropy_grad_naive(*ALL_IGNORED.args, **ALL_IGNORED.kwargs), grad)


@given(cross_entropy_cases(dtype=torch.float32, k_dims=False, weights=False))
def test_cross_entropy_is_finite_in_float32_for_logits_up_to_1e4(case):
    x = case.args[0]
    extreme = Case((x.sign() * 1e4 + x, *case.args[1:]), case.kwargs)  # |logits| up to ~1e4
    loss, grad, _ = _loss_and_grad(cross_entropy, extreme)
    ignored_mean = loss.isnan().all() and case.kwargs.get("ignore_index") is not None
    assert bool(loss.isfinite().all()) or ignored_mean
    assert bool(grad.isfinite().all())
    assert_close(loss, extreme.to(f64).call(cross_entropy_naive), kind="impl", dtype=torch.float32)


# ----- properties ------------------------------------------------------------------------------

@given(cross_entropy_cases(reductions=("none",)))
def test_cross_entropy_is_non_negative(case):
    assert bool((case.call(cross_entropy) >= 0).all())


@given(cross_entropy_cases(extreme_logits=False), st.floats(-100, 100))
def test_cross_entropy_is_invariant_to_a_per_row_shift_of_the_logits(case, shift):
    x = case.args[0]
    class_dim = 0 if x.ndim == 1 else 1
    gen = torch.Generator().manual_seed(0)
    per_row = torch.rand(x.sum(class_dim, keepdim=True).shape, generator=gen, dtype=f64) * shift
    shifted = Case((x + per_row, *case.args[1:]), case.kwargs)
    # "impl": x + shift rounds the logits, so this is two float64 formulas, not one.
    assert_close(shifted.call(cross_entropy), case.call(cross_entropy), kind="impl")


@given(cross_entropy_cases(prob_targets=False, ignore_index=False))
def test_index_targets_equal_one_hot_probability_targets(case):
    """Equal per row (weights and smoothing included); "mean" differs only in its divisor."""
    x, target = case.args
    class_dim = 0 if x.ndim == 1 else 1
    one_hot = F.one_hot(target, x.shape[class_dim]).movedim(-1, class_dim).to(x.dtype)
    kwargs = {**case.kwargs, "reduction": "none"}
    per_row = cross_entropy(x, target, **kwargs)
    assert_close(cross_entropy(x, one_hot, **kwargs), per_row)
    weight = case.kwargs.get("weight")
    w_y = torch.ones_like(per_row) if weight is None else weight[target]
    assert_close(cross_entropy(x, target, **{**kwargs, "reduction": "mean"}),
                 per_row.sum() / w_y.sum())  # index "mean" divides by the counted weights
    assert_close(cross_entropy(x, one_hot, **{**kwargs, "reduction": "mean"}),
                 per_row.sum() / per_row.numel())  # probability "mean" by the rows


@given(cross_entropy_cases(extreme_logits=False), st.integers(0, 2**16))
def test_the_gradient_rows_sum_to_zero(case, seed):
    """sum_j ((sum_c t_c) p_j - t_j) = 0 for any target row t (soft rows summing to one or not)."""
    _, grad, _ = _loss_and_grad(cross_entropy, case, seed)
    class_dim = 0 if grad.ndim == 1 else 1
    row_sums = grad.sum(class_dim)
    assert_close(row_sums, torch.zeros_like(row_sums))


@given(cross_entropy_cases(reductions=("sum",)))
def test_reduction_none_summed_equals_reduction_sum(case):
    none = Case(case.args, {**case.kwargs, "reduction": "none"})
    assert_close(none.call(cross_entropy).sum(), case.call(cross_entropy))


@given(cross_entropy_cases(reductions=("mean", "sum"), extreme_logits=False), st.floats(-3, 3))
def test_the_backward_scales_with_the_upstream_gradient(case, g):
    x = case.args[0].clone().requires_grad_()
    (grad,) = torch.autograd.grad(cross_entropy(x, *case.args[1:], **case.kwargs), x,
                                  torch.tensor(g, dtype=f64))
    assert_close(grad, g * cross_entropy_grad(*case.args, **case.kwargs))


# no kernel-sized tier: finite differences cost two calls per logit
@given(cross_entropy_cases(max_size=3, long_axes=False))
def test_cross_entropy_passes_gradcheck_in_float64(case):
    assume(bool(case.call(cross_entropy).isfinite().all()))  # not the all-ignored mean (nan)
    x = case.args[0].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, *case.args[1:], **case.kwargs), x)


def test_gradients_flow_to_soft_targets_and_weights_as_in_pytorch():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, generator=gen, dtype=f64, requires_grad=True)
    q = torch.softmax(torch.randn(3, 4, generator=gen, dtype=f64), 1).requires_grad_()
    w = torch.rand(4, generator=gen, dtype=f64).add(0.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, q, w: cross_entropy(x, q, weight=w, label_smoothing=0.1), (x, q, w))


def test_a_worked_example_by_hand():
    # row 0: logits (0, ln 3, 0) -> p = (1/5, 3/5, 1/5), target 1: -log(3/5) = ln(5/3) = 0.5108256
    # row 1: logits (0, 0, 0)    -> p = (1/3, 1/3, 1/3), target 2: -log(1/3) = ln 3   = 1.0986123
    x = torch.tensor([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]], dtype=f64)
    target = torch.tensor([1, 2])
    weight = torch.tensor([1.0, 2.0, 3.0], dtype=f64)
    # weighted: (2 * 0.5108256, 3 * 1.0986123) = (1.0216512, 3.2958369); mean divides by 2 + 3
    per_row = torch.tensor([2 * math.log(5 / 3), 3 * math.log(3)], dtype=f64)
    for fn in (cross_entropy, cross_entropy_naive):
        assert_close(fn(x, target, weight=weight, reduction="none"), per_row)
        assert_close(fn(x, target, weight=weight), per_row.sum() / 5)  # 4.3174881 / 5 = 0.8634976
    # smoothing eps = 0.3 over C = 3, row 0 unweighted:
    # 0.7 * ln(5/3) + 0.1 * (ln 5 + ln(5/3) + ln 5) = 0.3575779 + 0.1 * 3.7297276 = 0.7305507
    smooth = 0.7 * math.log(5 / 3) + 0.1 * (2 * math.log(5) + math.log(5 / 3))
    expected = torch.tensor(smooth, dtype=f64)
    assert_close(cross_entropy(x[0], target[0], label_smoothing=0.3), expected)
    # gradient of the weighted mean, row 0: (p - e_1) * w_1 / 5 = (0.2, -0.4, 0.2) * 2 / 5
    grad = cross_entropy_grad(x, target, weight=weight)
    assert_close(grad[0], torch.tensor([0.08, -0.16, 0.08], dtype=f64))
    # row 1: (1/3, 1/3, -2/3) * 3 / 5 = (0.2, 0.2, -0.4)
    assert_close(grad[1], torch.tensor([0.2, 0.2, -0.4], dtype=f64))


@given(cross_entropy_cases(prob_targets=False, weights=False, ignore_index=False,
                           label_smoothing=False, reductions=("sum",), k_dims=False))
def test_the_strategy_honours_its_switches(case):
    assert set(case.kwargs) == {"reduction"} and case.kwargs["reduction"] == "sum"
    assert case.args[1].dtype == torch.int64 and case.args[0].ndim in (1, 2)


# ----- bad input -------------------------------------------------------------------------------

X = torch.zeros(2, 3, dtype=f64)
T = torch.tensor([0, 2])


@pytest.mark.parametrize("fn", [cross_entropy, cross_entropy_naive, cross_entropy_grad])
@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    ((X, T.float()), {}, TypeError, r"target .*class probabilities.*float64.*float32"),
    ((X, T.int()), {}, TypeError, r"target must be int64 .*torch.int32"),
    ((X, torch.tensor([0, 1, 2])), {}, ValueError, r"target .*shape \(2,\).*\(3,\)"),
    ((X, torch.zeros(2, 4, dtype=f64)), {}, ValueError, r"target .*input's shape \(2, 3\)"),
    ((X, torch.tensor([0, 3])), {}, ValueError, r"class index 3, outside \[0, 3\)"),
    ((X, torch.tensor([0, -1])), {}, ValueError, r"class index -1.*ignore_index=-100"),
    ((X, T), {"weight": torch.ones(2, dtype=f64)}, ValueError, r"weight .*shape \(3,\).*\(2,\)"),
    ((X, T), {"weight": torch.ones(3)}, TypeError, r"weight .*dtype torch.float64.*float32"),
    ((X.long(), T), {}, TypeError, r"input must be a floating-point.*torch.int64"),
    ((X, T), {"reduction": "avg"}, ValueError, r"reduction must be one of .*'avg'"),
    ((X, T), {"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0.0, 1.0\]"),
    ((X, T), {"label_smoothing": -0.1}, ValueError, r"label_smoothing .*-0.1"),
    ((X, X), {"ignore_index": 0}, ValueError, r"ignore_index .*class-index targets"),
    ((torch.zeros((), dtype=f64), T), {}, ValueError, r"input must have at least 1 dim"),
])
def test_bad_input_is_a_clear_error(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


def test_a_grad_output_of_the_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"grad_output .*shape \(2,\).*reduction='none'"):
        cross_entropy_grad(X, T, reduction="none", grad_output=torch.ones((), dtype=f64))
