"""clip_grad_norm_, get_total_norm: == torch.nn.utils bit for bit, == naive, properties, errors."""

import math

import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st

from refllm.ops.clip_grad import (
    EPS,
    clip_grad_norm_,
    clip_grad_norm_naive_,
    clip_grads_with_norm_,
    get_total_norm,
    get_total_norm_naive,
)
from refllm.testing import assert_close

f64 = torch.float64
NORM_TYPES = [2.0, 1.0, math.inf, "inf", 3.0, 0.5]


@st.composite
def parameters(draw, dtypes=(f64,), mixed=False):
    """0-4 parameters, each of 0-3 axes (sizes 0-5), of one dtype from ``dtypes`` (each its own
    with ``mixed``), about one in five without a gradient; gradients at a scale drawn over eight
    decades."""
    n = draw(st.integers(0, 4), label="parameters")
    one = draw(st.sampled_from(dtypes), label="dtype")
    seed = draw(st.integers(0, 2**16), label="seed")
    gen = torch.Generator().manual_seed(seed)
    params = []
    for j in range(n):
        shape = draw(st.lists(st.integers(0, 5), max_size=3), label=f"shape {j}")
        dtype = draw(st.sampled_from(dtypes), label=f"dtype {j}") if mixed else one
        scale = 10.0 ** draw(st.floats(-4, 4), label=f"log10 scale {j}")
        p = torch.zeros(shape, dtype=dtype, requires_grad=True)
        if draw(st.integers(0, 4), label=f"has grad {j}"):
            p.grad = (torch.randn(shape, generator=gen, dtype=f64) * scale).to(dtype)
        params.append(p)
    return params


def _copy(params):
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_()
        q.grad = None if p.grad is None else p.grad.clone()
        out.append(q)
    return out


def _grads(params):
    return [p.grad for p in params if p.grad is not None]


max_norms = st.sampled_from([0.0, 1e-3, 1.0, 1e3, math.inf])


@pytest.mark.parametrize("foreach", [None, False, True])
@given(params=parameters(dtypes=(f64, torch.float32, torch.bfloat16)),
       norm_type=st.sampled_from(NORM_TYPES), max_norm=max_norms)
def test_clip_grad_norm_is_pytorchs_bit_for_bit(foreach, params, norm_type, max_norm):
    ours, theirs = _copy(params), _copy(params)
    n = clip_grad_norm_(ours, max_norm, norm_type, foreach=foreach)
    if norm_type in (math.inf, "inf") and any(not g.numel() for g in _grads(params)):
        with pytest.raises(RuntimeError, match="identity"):  # an empty tensor has no max
            torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type, foreach=foreach)
        assert torch.equal(n, clip_grad_norm_naive_(_copy(params), max_norm, norm_type))
        return
    n_torch = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type, foreach=foreach)
    assert n.dtype == n_torch.dtype and torch.equal(n, n_torch)
    for a, b in zip(_grads(ours), _grads(theirs)):
        assert torch.equal(a, b)


@given(params=parameters(dtypes=(f64, torch.float32), mixed=True),
       norm_type=st.sampled_from([1.0, 2.0, math.inf]), max_norm=max_norms)
def test_with_several_dtypes_clip_grad_norm_is_pytorchs_to_the_last_bits(params, norm_type,
                                                                          max_norm):
    # PyTorch groups the gradients by dtype in an order of its own (a hash map's), which can
    # change the last bit of the sum of the per-tensor norms
    assume(norm_type != math.inf or all(g.numel() for g in _grads(params)))  # PyTorch raises
    ours, theirs = _copy(params), _copy(params)
    n = clip_grad_norm_(ours, max_norm, norm_type)
    n_torch = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert n.dtype == n_torch.dtype
    assert_close(n, n_torch, kind="impl", dtype=torch.float32 if params else f64)
    for a, b in zip(_grads(ours), _grads(theirs)):
        assert_close(a, b, kind="impl")


@given(params=parameters(), norm_type=st.sampled_from(NORM_TYPES), max_norm=max_norms)
@example(params=[], norm_type=2.0, max_norm=1.0)
def test_fast_clip_grad_norm_equals_naive_in_float64(params, norm_type, max_norm):
    fast, naive = _copy(params), _copy(params)
    n_fast = clip_grad_norm_(fast, max_norm, norm_type)
    n_naive = clip_grad_norm_naive_(naive, max_norm, norm_type)
    assert_close(n_fast, n_naive)
    for a, b in zip(_grads(fast), _grads(naive)):
        assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@given(params=parameters(), norm_type=st.sampled_from([1.0, 2.0, math.inf]))
def test_in_low_precision_the_total_norm_is_within_two_roundings(dtype, params, norm_type):
    # at most 500 elements of at most 100: a 1-norm under float16's largest finite value, 65504
    grads = [g.clamp(-100.0, 100.0).to(dtype) for g in _grads(params)]
    if not grads:
        return
    exact = get_total_norm_naive([g.double() for g in grads], norm_type).item()
    ours = get_total_norm(grads, norm_type).double().item()
    # per-tensor norms and their norm each round to the dtype once (eps/2 relative each) after a
    # float32 accumulation over n elements (n eps32 relative, Higham's gamma_n)
    n = sum(g.numel() for g in grads)
    info = torch.finfo(dtype)
    bound = (info.eps + (n + 2) * torch.finfo(torch.float32).eps) * exact + info.tiny
    assert abs(ours - exact) <= bound


@given(parameters())
def test_the_inf_norm_is_the_largest_magnitude_not_one(params):
    grads = _grads(params)
    biggest = max((g.abs().max().item() for g in grads if g.numel()), default=0.0)
    for fn in (get_total_norm, get_total_norm_naive):
        assert fn(grads, math.inf).item() == biggest
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.tensor([0.5, -7.5, 2.0])
    assert clip_grad_norm_([p], 3.0, norm_type=math.inf).item() == 7.5
    assert_close(p.grad, torch.tensor([0.5, -7.5, 2.0]) * (3.0 / (7.5 + EPS)), kind="impl")


@given(params=parameters(), norm_type=st.sampled_from(NORM_TYPES),
       fraction=st.one_of(st.just(0.0), st.floats(1e-3, 2.0)))  # no subnormal max_norm
def test_clipping_scales_every_gradient_by_one_factor_to_at_most_max_norm(params, norm_type,
                                                                           fraction):
    before = [g.clone() for g in _grads(params)]
    n = get_total_norm(before, norm_type).item()
    max_norm = fraction * n
    returned = clip_grad_norm_(params, max_norm, norm_type)
    assert returned.item() == n  # the norm before clipping
    coef = min(max_norm / (n + EPS), 1.0)
    for a, b in zip(_grads(params), before):
        assert_close(a, b * coef)
        if coef == 1.0:
            assert torch.equal(a, b)  # multiplied by exactly 1
    assert get_total_norm(_grads(params), norm_type).item() <= max_norm * (1 + 1e-12) or not n


def test_the_total_norm_is_the_norm_of_all_elements_as_one_vector():
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=gen, dtype=f64), torch.randn(5, generator=gen, dtype=f64)]
    flat = torch.cat([g.reshape(-1) for g in grads])
    for p in (1.0, 2.0, 3.0, 0.5, math.inf):
        assert_close(get_total_norm(grads, p), torch.linalg.vector_norm(flat, p))
    for tiny_or_huge in (1e-200, 1e200):  # (3c)^2 would underflow or overflow a float
        grads = [torch.tensor([3.0, 4.0], dtype=f64) * tiny_or_huge]
        assert_close(get_total_norm_naive(grads), torch.tensor(5 * tiny_or_huge, dtype=f64))


def test_in_float16_a_norm_past_65504_overflows_and_zeroes_the_gradients_as_in_pytorch():
    grads = torch.full((4,), 40000.0, dtype=torch.float16)  # each finite, the norm 80000 is not
    ours, theirs, naive = (torch.zeros(4, dtype=torch.float16, requires_grad=True)
                           for _ in range(3))
    for p in (ours, theirs, naive):
        p.grad = grads.clone()
    assert clip_grad_norm_([ours], 1.0).item() == math.inf
    torch.nn.utils.clip_grad_norm_([theirs], 1.0)
    assert torch.equal(ours.grad, theirs.grad) and not ours.grad.any()  # max_norm / inf = 0
    clip_grad_norm_naive_([naive], 1.0)  # clips by the exact norm, 80000
    assert_close(naive.grad, torch.full((4,), 0.5, dtype=torch.float16), kind="impl")


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_nonfinite_norm_raises_on_request_and_else_scales_as_pytorch(bad):
    def make():
        p = torch.zeros(3, requires_grad=True)
        p.grad = torch.tensor([1.0, bad, 2.0])
        return p
    for fn in (clip_grad_norm_, clip_grad_norm_naive_):
        with pytest.raises(RuntimeError, match="error_if_nonfinite=False"):
            fn([make()], 1.0, error_if_nonfinite=True)
        ours, theirs = make(), make()
        n = fn([ours], 1.0)
        assert_close(n, torch.nn.utils.clip_grad_norm_([theirs], 1.0))  # NaN matches NaN only
        assert_close(ours.grad, theirs.grad)  # inf: 0 * g, so [0, nan, 0]; NaN: all NaN


def test_parameters_may_be_one_tensor_a_generator_or_have_no_gradient():
    p, q = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0])
    for fn in (clip_grad_norm_, clip_grad_norm_naive_):
        p.grad = torch.tensor([3.0, 4.0])
        assert fn((x for x in (p, q)), 1.0).item() == 5.0  # a generator is read once
        assert q.grad is None
        assert_close(p.grad, torch.tensor([0.6, 0.8]), kind="impl")
        p.grad = torch.tensor([3.0, 4.0])
        assert fn(p, 10.0).item() == 5.0 and torch.equal(p.grad, torch.tensor([3.0, 4.0]))
        assert torch.equal(fn([q], 1.0), torch.tensor(0.0))
    assert torch.equal(get_total_norm([]), torch.tensor(0.0))


def test_clip_grads_with_norm_is_pytorchs():
    gen = torch.Generator().manual_seed(1)
    ours, theirs = (torch.zeros(5, requires_grad=True) for _ in range(2))
    ours.grad = torch.randn(5, generator=gen)
    theirs.grad = ours.grad.clone()
    norm = torch.tensor(3.0)
    clip_grads_with_norm_([ours], 1.0, norm)
    torch.nn.utils.clip_grads_with_norm_([theirs], 1.0, norm)
    assert torch.equal(ours.grad, theirs.grad)


def test_foreach_true_on_a_device_without_foreach_kernels_is_an_error():
    p = torch.zeros(2, device="meta", requires_grad=True)
    p.grad = torch.zeros(2, device="meta")
    with pytest.raises(RuntimeError, match="foreach=True"):
        clip_grad_norm_([p], 1.0, foreach=True)


def _param():
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    return p


@pytest.mark.parametrize("fn", [clip_grad_norm_, clip_grad_norm_naive_])
@pytest.mark.parametrize("args, kwargs, error, words", [
    ((1.0, 1.0), {}, TypeError, "parameters must be a tensor or an iterable"),
    (([1.0], 1.0), {}, TypeError, "parameters[0] must be a torch.Tensor"),
    ((None, -1.0), {}, ValueError, "max_norm must be >= 0"),
    ((None, math.nan), {}, ValueError, "max_norm must be >= 0"),
    ((None, "1"), {}, TypeError, "max_norm must be a real number"),
    ((None, 1.0, 0.0), {}, ValueError, "norm_type must be positive"),
    ((None, 1.0, -math.inf), {}, ValueError, "norm_type must be positive"),
    ((None, 1.0, "two"), {}, TypeError, "norm_type must be a real number or 'inf'"),
    ((None, 1.0), {"error_if_nonfinite": 1}, TypeError, "error_if_nonfinite must be a bool"),
    ((None, 1.0), {"foreach": "yes"}, TypeError, "foreach must be a bool"),
])
def test_bad_arguments_are_named(fn, args, kwargs, error, words):
    args = ([_param()], *args[1:]) if args[0] is None else args
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    assert words in str(info.value)
