"""rms_norm and layer_norm: fast == naive, == PyTorch (values and gradients), properties, errors."""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.norms import default_eps, layer_norm, layer_norm_naive, rms_norm, rms_norm_naive
from refllm.testing import assert_close

f64 = torch.float64


@st.composite
def norm_inputs(draw, dtype=f64, max_side=12):
    """(input, normalized_shape, weight, bias): leading axes 0-3 (sizes 0-4), one or two
    normalised axes, values at a scale drawn over six decades, with a large common offset in
    about one example in four."""
    lead = draw(st.lists(st.integers(0, 4), max_size=3), label="leading shape")
    norm = draw(st.lists(st.integers(1, max_side), min_size=1, max_size=2), label="normalized")
    seed = draw(st.integers(0, 2**16), label="seed")
    scale = 10.0 ** draw(st.floats(-3, 3), label="log10 scale")
    offset = draw(st.sampled_from([0.0, 0.0, 0.0, 1e3]), label="offset") * scale
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(*lead, *norm, generator=gen, dtype=f64) * scale + offset).to(dtype)
    w = (torch.randn(*norm, generator=gen, dtype=f64)).to(dtype)
    b = (torch.randn(*norm, generator=gen, dtype=f64)).to(dtype)
    return x, norm, w, b


rms_options = st.fixed_dictionaries({
    "eps": st.sampled_from([None, 0.0, 1e-6, 1e-2]),
    "weight_offset": st.sampled_from([0.0, 1.0]),
    "cast": st.sampled_from(["after_weight", "before_weight"]),
})


@given(norm_inputs(), rms_options, st.booleans(), st.booleans())
def test_fast_rms_norm_equals_naive(inputs, options, with_weight, with_residual):
    x, shape, w, b = inputs
    weight = w if with_weight else None
    residual = b.expand_as(x).contiguous() if with_residual else None
    if options["eps"] == 0.0:  # an all-zero slice would be 0 / 0
        x = x + 1.0
    fast = rms_norm(x, shape, weight, residual=residual, **options)
    naive = rms_norm_naive(x, shape, weight, residual=residual, **options)
    if with_residual:
        assert_close(fast[1], naive[1])
        fast, naive = fast[0], naive[0]
    assert_close(fast, naive)


@given(norm_inputs(), st.booleans(), st.booleans(), st.sampled_from([1e-5, 1e-2]))
def test_fast_layer_norm_equals_naive(inputs, with_weight, with_bias, eps):
    x, shape, w, b = inputs
    weight, bias = (w if with_weight else None), (b if with_bias else None)
    assert_close(layer_norm(x, shape, weight, bias, eps), layer_norm_naive(x, shape, weight, bias,
                                                                           eps))


def _value_and_grads(fn, x, *params, seed=0):
    leaves = [t.detach().clone().requires_grad_() for t in (x, *params)]
    y = fn(*leaves)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=f64)
    grads = torch.autograd.grad(y, leaves, g.to(y.dtype))
    return y.detach(), grads


def _within_a_sum_bound(actual, expected, n):
    """|actual - expected| <= (n + 8) eps(dtype) max|expected|: the a-priori bound of the mean
    square, a sum of n terms (Higham's gamma_n), plus a few roundings, at the output's scale."""
    if not expected.numel():
        return
    bound = (n + 8) * torch.finfo(actual.dtype).eps * expected.abs().max().item()
    err = (actual.double() - expected).abs().max().item()
    assert err <= bound, f"error {err:.3g} > bound {bound:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@given(data=st.data())
def test_rms_norm_and_its_gradients_equal_pytorch(dtype, data):
    x, shape, w, _ = data.draw(norm_inputs(dtype=dtype), label="inputs")
    eps = data.draw(st.sampled_from([None, 1e-6]), label="eps")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    ours = _value_and_grads(lambda x, w: rms_norm(x, shape, w, eps), x, w, seed=seed)
    eps64 = default_eps(dtype) if eps is None else eps  # the eps of the input's computation type
    ref = _value_and_grads(lambda x, w: F.rms_norm(x, shape, w, eps64), x.double(), w.double(),
                           seed=seed)
    if dtype == f64:
        for a, e in zip((ours[0], *ours[1]), (ref[0], *ref[1])):
            assert_close(a, e, kind="impl")
    else:  # float32 values; its gradients cancel terms far larger than the result (1/r - x^2/r^3)
        _within_a_sum_bound(ours[0], ref[0], math.prod(shape))


@given(norm_inputs(), st.sampled_from([1e-5, 1e-2]), st.integers(0, 2**16))
def test_layer_norm_and_its_gradients_equal_pytorch_in_float64(inputs, eps, seed):
    x, shape, w, b = inputs
    ours = _value_and_grads(lambda x, w, b: layer_norm(x, shape, w, b, eps), x, w, b, seed=seed)
    ref = _value_and_grads(lambda x, w, b: F.layer_norm(x, shape, w, b, eps), x, w, b, seed=seed)
    for a, e in zip((ours[0], *ours[1]), (ref[0], *ref[1])):
        assert_close(a, e, kind="impl")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@given(inputs=norm_inputs(max_side=64), with_weight=st.booleans())
def test_in_half_precision_rms_norm_rounds_once_as_pytorch(dtype, inputs, with_weight):
    x, shape, w, _ = inputs
    x, w = x.clamp(-1e3, 1e3).to(dtype), w.to(dtype)  # inside float16's range
    weight = w if with_weight else None
    ours = rms_norm(x, shape, weight)
    exact = rms_norm_naive(x.double(), shape, None if weight is None else weight.double(),
                           eps=default_eps(dtype))
    # one rounding of a float32 computation: half an ulp of the dtype, plus float32's own error
    info = torch.finfo(dtype)
    subnormal_step = info.smallest_normal * info.eps  # the absolute spacing below the normals
    assert ((ours.double() - exact).abs() <= info.eps * exact.abs() + subnormal_step).all()
    assert_close(ours, F.rms_norm(x, shape, weight), dtype=dtype, kind="impl")


def test_the_default_eps_is_that_of_the_computation_type_as_pytorch():
    assert default_eps(torch.bfloat16) == default_eps(torch.float32) == torch.finfo(
        torch.float32).eps
    assert default_eps(f64) == torch.finfo(f64).eps
    x = torch.full((1, 8), 1e-2, dtype=torch.bfloat16)  # mean square 1e-4 < bf16's eps 7.8e-3
    assert_close(rms_norm(x, 8), F.rms_norm(x, [8]), kind="impl")
    assert rms_norm(x, 8).float().mean().item() > 0.99  # bf16's eps would give 1e-2 / 0.089


def _hf_norm(module_path, cls, n, weight):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    module = pytest.importorskip(module_path)
    norm = getattr(module, cls)(n, eps=1e-6).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cast_before_the_weight_is_hugging_faces_llama_rms_norm(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, generator=gen).to(dtype)
    w = (1 + 0.1 * torch.randn(32, generator=gen)).to(dtype)
    llama = _hf_norm("transformers.models.llama.modeling_llama", "LlamaRMSNorm", 32, w)(x)
    assert torch.equal(rms_norm(x, 32, w, 1e-6, cast="before_weight"), llama)
    naive = rms_norm_naive(x, 32, w, 1e-6, cast="before_weight")
    if dtype == torch.float32:  # float64 then one rounding, against float32 arithmetic
        assert_close(naive, llama, kind="impl")
    else:  # rounding to bf16/fp16 hides float32's last bits (here bit for bit; a tie could differ)
        assert torch.equal(naive, llama)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_a_weight_offset_of_one_is_gemmas_rms_norm(dtype):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 16, generator=gen).to(dtype)
    w = (0.1 * torch.randn(16, generator=gen)).to(dtype)
    gemma = _hf_norm("transformers.models.gemma.modeling_gemma", "GemmaRMSNorm", 16, w)(x)
    assert torch.equal(rms_norm(x, 16, w, 1e-6, weight_offset=1.0), gemma)


def test_the_fused_residual_add_returns_the_output_and_the_new_residual():
    gen = torch.Generator().manual_seed(2)
    x, r = (torch.randn(2, 8, generator=gen, dtype=f64) for _ in range(2))
    w = torch.randn(8, generator=gen, dtype=f64)
    y, h = rms_norm(x, 8, w, residual=r)
    assert torch.equal(h, x + r)
    assert_close(y, rms_norm(x + r, 8, w))


@given(norm_inputs(), st.floats(1e-3, 1e3))
def test_rms_norm_without_eps_is_scale_invariant_and_idempotent(inputs, c):
    x, shape, _, _ = inputs
    x = x + 1.0  # no all-zero slice
    y = rms_norm(x, shape, eps=0.0)
    assert_close(rms_norm(c * x, shape, eps=0.0), y, kind="impl")
    assert_close(rms_norm(y, shape, eps=0.0), y, kind="impl")
    dims = tuple(range(-len(shape), 0))
    if y.numel():
        assert_close(y.square().mean(dims), torch.ones(y.shape[:y.ndim - len(shape)], dtype=f64),
                     kind="impl")


@given(norm_inputs())
def test_layer_norm_output_has_zero_mean_and_unit_variance_per_slice(inputs):
    x, shape, _, _ = inputs
    dims = tuple(range(-len(shape), 0))
    if x.numel() and math.prod(shape) > 1 and (x.var(dims, correction=0) > 1e-20).all():
        y = layer_norm(x, shape, eps=0.0)
        lead = y.shape[:y.ndim - len(shape)]
        assert_close(y.mean(dims), torch.zeros(lead, dtype=f64), kind="impl")
        assert_close(y.var(dims, correction=0), torch.ones(lead, dtype=f64), kind="impl")


def test_a_large_common_offset_does_not_cancel_in_layer_norm():
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(4, 256, generator=gen, dtype=f64)
    x = (1e4 + noise).float()  # float32: one-pass E[x^2] - E[x]^2 loses every digit here
    exact = layer_norm_naive(x.double(), 256)
    # the float32 mean is off by ~eps * |x|, which the output shows divided by the slice's std:
    # the conditioning of the problem, 2 eps * 1e4 / 1 = 2.4e-3 here (measured: 7.6e-4; PyTorch's
    # F.layer_norm 9.0e-4)
    bound = 2 * torch.finfo(torch.float32).eps * x.abs().max().item() / noise.std().item()
    assert (layer_norm(x, 256).double() - exact).abs().max().item() <= bound
    m = x.mean(-1, keepdim=True)
    one_pass = (x - m) * torch.rsqrt((x * x).mean(-1, keepdim=True) - m * m + 1e-5)
    err = (one_pass.double() - exact).abs().max()
    assert err.isnan() or err > 0.1  # the formula this test guards against (here: a negative var)


@pytest.mark.parametrize("fn", [rms_norm, layer_norm])
def test_norms_pass_gradcheck_in_float64(fn):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, generator=gen, dtype=f64, requires_grad=True)
    w = torch.randn(3, 5, generator=gen, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: fn(x, (3, 5), w), (x, w))
    assert torch.autograd.gradgradcheck(lambda x, w: fn(x, (3, 5), w), (x, w))


@pytest.mark.parametrize("fn", [rms_norm, rms_norm_naive, layer_norm, layer_norm_naive])
@pytest.mark.parametrize("args, kwargs, error, words", [
    ((torch.ones(2, 3), 4), {}, ValueError, "normalized_shape (4,) must be the input's last"),
    ((torch.ones(2, 3), (2, 3, 1)), {}, ValueError, "normalized_shape (2, 3, 1)"),
    ((torch.ones(2, 3), ()), {}, ValueError, "at least one"),
    ((torch.ones(2, 3), "3"), {}, TypeError, "normalized_shape must be an int"),
    ((torch.ones(2, 3), 3, torch.ones(4)), {}, ValueError, "weight must have the normalized_shape"),
    ((torch.ones(2, 3), 3, torch.ones(3, dtype=f64)), {}, TypeError,
     "weight must have the input's"),
    ((torch.ones(2, 3, dtype=torch.int64), 3), {}, TypeError, "input must be a floating-point"),
    ((torch.ones(2, 3), 3), {"eps": -1.0}, ValueError, "eps"),
])
def test_bad_arguments_are_named(fn, args, kwargs, error, words):
    with pytest.raises(error, match=None) as info:
        fn(*args, **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize("fn", [rms_norm, rms_norm_naive])
@pytest.mark.parametrize("kwargs, error, words", [
    ({"cast": "late"}, ValueError, "cast"),
    ({"residual": torch.ones(2, 4)}, ValueError, "residual must have the input's shape"),
    ({"weight_offset": "1"}, TypeError, "weight_offset"),
])
def test_bad_rms_norm_options_are_named(fn, kwargs, error, words):
    with pytest.raises(error) as info:
        fn(torch.ones(2, 3), 3, **kwargs)
    assert words in str(info.value)
