"""softmax, log_softmax, logsumexp: fast == naive, == PyTorch, invariants, -inf rows, gradients."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from refllm.ops.softmax import (
    log_softmax,
    log_softmax_naive,
    logsumexp,
    logsumexp_naive,
    softmax,
    softmax_naive,
)
from refllm.testing import assert_close
from refllm.testing.engine.case import Case
from refllm.testing.softmax.strategy import softmax_cases

INF = float("inf")
F64 = torch.float64
PAIRS = {  # name -> (fast, naive, PyTorch)
    "softmax": (softmax, softmax_naive, torch.softmax),
    "log_softmax": (log_softmax, log_softmax_naive, torch.log_softmax),
    "logsumexp": (logsumexp, logsumexp_naive, torch.logsumexp),
}
ALL_NEG_INF_ROW = Case(args=(torch.tensor([[1.0, -INF], [-INF, -INF]], dtype=F64),),
                       kwargs={"dim": -1})


def _has_neg_inf_row(x: torch.Tensor, dim: int) -> bool:
    return bool((x == -INF).all(dim).any())


@pytest.mark.parametrize("name", list(PAIRS))
@given(case=softmax_cases(large_logits=True))
@example(case=ALL_NEG_INF_ROW)
@example(case=Case(args=(torch.tensor([0.5], dtype=F64),), kwargs={"dim": 0}))
def test_fast_equals_naive(name, case):
    """Values, and gradients where the outputs are finite (the naive gradient is gradchecked on
    the smaller sizes below; this carries it to the larger ones)."""
    fast, naive, _ = PAIRS[name]
    x, y = (case.args[0].clone().requires_grad_() for _ in range(2))
    out, out_n = fast(x, **case.kwargs), naive(y, **case.kwargs)
    assert_close(out, out_n)
    gen = torch.Generator().manual_seed(0)
    grad_out = torch.randn(out.shape, generator=gen, dtype=F64).where(out.isfinite(), 0.0)
    out.backward(grad_out)
    out_n.backward(grad_out)
    assert_close(x.grad, y.grad)


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(case=softmax_cases(large_logits=True, neg_inf_rows=False))
def test_fast_equals_pytorch_values_and_gradients(name, dtype, case):
    fast, _, reference = PAIRS[name]
    x = case.args[0].to(dtype).requires_grad_()
    x64 = x.detach().to(F64).requires_grad_()  # the same (rounded) logits, in float64
    out, expected = fast(x, **case.kwargs), reference(x64, **case.kwargs)
    assert_close(out, expected, kind="impl")
    finite = torch.isfinite(expected)
    grad_out = torch.where(finite, torch.ones_like(expected), 0.0)  # d/dx of the finite outputs
    out.backward(grad_out.to(dtype))
    expected.backward(grad_out)
    assert_close(x.grad, x64.grad, kind="impl")


@pytest.mark.parametrize("name", list(PAIRS))
@given(case=softmax_cases(neg_inf_rows=False, neg_inf_entries=False),
       shift=st.floats(-1e3, 1e3))
def test_softmax_family_is_invariant_to_a_shift_of_the_logits(name, case, shift):
    fast, naive, _ = PAIRS[name]
    x, dim = case.args[0], case.kwargs["dim"]
    if name == "logsumexp":  # logsumexp(x + c) = logsumexp(x) + c
        assert_close(fast(x + shift, dim) - shift, naive(x, dim), tol=None)
    else:
        assert_close(fast(x + shift, dim), naive(x, dim))


@given(case=softmax_cases(large_logits=True))
def test_softmax_rows_sum_to_one_or_zero_for_rows_of_minus_infinity(case):
    x, dim = case.args[0], case.kwargs["dim"]
    expected = torch.where((x == -INF).all(dim), 0.0, 1.0).to(F64)
    assert_close(softmax(x, dim).sum(dim), expected)


@given(case=softmax_cases(large_logits=True))
def test_log_softmax_is_x_minus_logsumexp_and_exponentiates_to_softmax(case):
    x, dim = case.args[0], case.kwargs["dim"]
    live = ~(x == -INF).all(dim, keepdim=True)  # rows that are not all -inf
    lse = logsumexp(x, dim, keepdim=True)
    expected = torch.where(live, x - torch.where(live, lse, 0.0), -INF)
    assert_close(log_softmax(x, dim), expected)
    assert_close(log_softmax(x, dim).exp(), softmax(x, dim))


@pytest.mark.parametrize("impl", ["fast", "naive"])
def test_a_row_of_minus_infinity_has_defined_results_and_zero_gradients(impl):
    x = torch.tensor([[0.0, -INF, 2.0], [-INF, -INF, -INF]], dtype=F64, requires_grad=True)
    fns = {n: p[0] if impl == "fast" else p[1] for n, p in PAIRS.items()}
    assert fns["softmax"](x)[1].tolist() == [0.0, 0.0, 0.0]
    assert fns["log_softmax"](x)[1].tolist() == [-INF, -INF, -INF]
    assert fns["logsumexp"](x)[1].item() == -INF
    for fn in fns.values():
        (grad,) = torch.autograd.grad(fn(x)[1].clamp(min=-1e300).sum(), x)
        assert torch.isfinite(grad).all() and grad[1].tolist() == [0.0, 0.0, 0.0]


def test_worked_example_by_hand():
    # x = [0, ln 3]: exp(x) = [1, 3], sum = 4 -> softmax = [1/4, 3/4];
    # logsumexp = ln 4; log_softmax = [0 - ln 4, ln 3 - ln 4] = [-ln 4, ln(3/4)].
    x = torch.tensor([0.0, math.log(3.0)], dtype=F64)
    for fast, naive, _ in PAIRS.values():
        assert_close(fast(x), naive(x))
    assert_close(softmax(x), torch.tensor([0.25, 0.75], dtype=F64))
    assert_close(log_softmax(x), torch.tensor([-math.log(4.0), math.log(0.75)], dtype=F64))
    assert_close(logsumexp(x), torch.tensor(math.log(4.0), dtype=F64))


def test_logits_of_plus_minus_1e4_in_float32_give_finite_correct_results():
    x = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4 - 1.0, -1e4]], dtype=torch.float32)
    for fast, _, reference in PAIRS.values():
        out = fast(x)
        assert torch.isfinite(out).all()
        assert_close(out, reference(x.double(), -1), kind="impl")
    assert_close(softmax(x)[1, :2], torch.tensor([1.0, math.exp(-1.0)]) / (1 + math.exp(-1.0)),
                 kind="impl")


# axes <= 4 for the fast path, <= 3 for the naive loops (fast == naive in gradients: above)
@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("impl, max_size", [(0, 4), (1, 3)], ids=["fast", "naive"])
@given(data=st.data())
def test_gradcheck_in_float64(name, impl, max_size, data):
    case = data.draw(softmax_cases(max_size=max_size, neg_inf_rows=False, neg_inf_entries=False),
                     "case")
    fn = PAIRS[name][impl]
    x = case.args[0].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fn(t, **case.kwargs), (x,))
    if impl == 0:
        assert torch.autograd.gradgradcheck(lambda t: fn(t, **case.kwargs), (x,))


@pytest.mark.parametrize("fn", [softmax, softmax_naive, log_softmax, logsumexp, logsumexp_naive])
def test_bad_input_raises_an_error_naming_the_argument(fn):
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor.*torch.int64"):
        fn(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got list"):
        fn([1.0, 2.0])
    with pytest.raises(ValueError, match=r"dim must lie in \[-2, 1\] for x of shape \(2, 3\)"):
        fn(torch.zeros(2, 3), dim=2)
    with pytest.raises(TypeError, match=r"dim must be an int, got float"):
        fn(torch.zeros(2, 3), dim=1.0)
    with pytest.raises(ValueError, match=r"x must have at least 1 dimensions"):
        fn(torch.tensor(1.0))
