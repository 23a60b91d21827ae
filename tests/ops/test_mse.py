"""mse_loss: fast == naive, == PyTorch (values and gradients), properties, errors."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.mse import mse_loss, mse_loss_naive
from refllm.testing import assert_close
from refllm.testing.engine.case import Case
from refllm.testing.mse.strategy import mse_cases
from tests.ops.closeness import close as _close

f64 = torch.float64


def _loss_and_grad(fn, case: Case, seed: int = 0):
    x = case.args[0].detach().clone().requires_grad_()
    loss = fn(x, *case.args[1:], **case.kwargs)
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(loss.shape, generator=gen, dtype=f64).to(loss.dtype)  # any upstream gradient
    (grad,) = torch.autograd.grad(loss, x, g)
    return loss.detach(), grad, g


@given(mse_cases())
def test_fast_mse_equals_naive(case):
    _close(case.call(mse_loss), case.call(mse_loss_naive), case, "mse_loss")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(data=st.data())
def test_mse_and_its_gradient_equal_pytorch(dtype, data):
    case = data.draw(mse_cases(dtype=dtype), label="case")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    loss, grad, _ = _loss_and_grad(mse_loss, case, seed)
    ref_loss, ref_grad, _ = _loss_and_grad(F.mse_loss, case.to(f64), seed)
    _close(loss, ref_loss, case, "mse_loss", kind="impl")
    _close(grad, ref_grad, case, "mse_loss", kind="impl")


@given(mse_cases(), st.integers(0, 2**16))
def test_the_mse_gradient_is_twice_the_error_times_the_upstream_gradient(case, seed):
    x, y = case.args
    loss, grad, g = _loss_and_grad(mse_loss, case, seed)
    n = {"none": 1, "sum": 1, "mean": x.numel()}[case.kwargs["reduction"]]
    assert_close(grad, 2 * (x - y) * g / n)


@given(mse_cases(reductions=("none",)))
def test_mse_is_non_negative_and_zero_only_where_input_equals_target(case):
    x, y = case.args
    loss = case.call(mse_loss)
    assert bool((loss >= 0).all())
    assert torch.equal(loss == 0, x == y)


@given(mse_cases(reductions=("sum",)))
def test_reduction_none_summed_equals_reduction_sum(case):
    none = Case(case.args, {"reduction": "none"})
    assert_close(none.call(mse_loss).sum(), case.call(mse_loss))


# no kernel-sized tier: finite differences cost two calls per element
@given(mse_cases(max_size=3, long_axes=False))
def test_mse_passes_gradcheck_in_float64(case):
    x, y = (t.clone().requires_grad_() for t in case.args)
    assert torch.autograd.gradcheck(lambda x, y: mse_loss(x, y, **case.kwargs), (x, y))


def test_a_worked_example_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0], dtype=f64)
    y = torch.tensor([1.0, 0.0, 5.0], dtype=f64)
    # errors y - x = (0, -2, 2); squares (0, 4, 4); sum 8; mean 8 / 3 = 2.6666667
    for fn in (mse_loss, mse_loss_naive):
        assert_close(fn(x, y, reduction="none"), torch.tensor([0.0, 4.0, 4.0], dtype=f64))
        assert_close(fn(x, y, reduction="sum"), torch.tensor(8.0, dtype=f64))
        assert_close(fn(x, y), torch.tensor(8.0 / 3.0, dtype=f64))
    # gradient of the mean: 2 (x - y) / 3 = (0, 4/3, -4/3)
    x.requires_grad_()
    mse_loss(x, y).backward()
    assert_close(x.grad, torch.tensor([0.0, 4.0 / 3.0, -4.0 / 3.0], dtype=f64))


X = torch.zeros(2, 3, dtype=f64)


@pytest.mark.parametrize("fn", [mse_loss, mse_loss_naive])
@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    ((X, torch.zeros(3, dtype=f64)), {}, ValueError,
     r"target must have the input's shape \(2, 3\) \(mse_loss does not broadcast\).*\(3,\)"),
    ((X, torch.zeros(1, 3, dtype=f64)), {}, ValueError, r"does not broadcast.*\(1, 3\)"),
    ((X, X.float()), {}, TypeError, r"target .*dtype torch.float64.*float32"),
    ((X.long(), X.long()), {}, TypeError, r"input must be a floating-point.*torch.int64"),
    ((X, X.long()), {}, TypeError, r"target must be a floating-point.*torch.int64"),
    ((X, X), {"reduction": "mean_all"}, ValueError, r"reduction must be one of .*'mean_all'"),
    ((X, [0.0]), {}, TypeError, r"target must be a torch.Tensor, got list"),
])
def test_bad_input_is_a_clear_error(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)
