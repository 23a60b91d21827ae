"""linear_cross_entropy's refllm extensions, z-loss and logit soft-capping: chunked == naive == the
loss written plainly on materialised logits (values and gradients), gradcheck, the default
unchanged, properties of each, and bad arguments named."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_naive
from refllm.testing import assert_close
from tests.ops.test_linear_cross_entropy import problems

f64 = torch.float64
extensions = st.fixed_dictionaries({
    "z_loss": st.sampled_from([0.0, 1e-4, 0.5]),
    "softcap": st.sampled_from([None, 0.5, 5.0, 30.0]),
})


def materialised(h, w, target, *, linear_bias=None, weight=None, reduction="mean",
                 ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None):
    """The whole (rows x V) logits, capped, then F.cross_entropy plus z_loss * w[y] * lse^2."""
    logits = h @ w.T if linear_bias is None else h @ w.T + linear_bias
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    logits, y = logits.reshape(-1, w.shape[0]), target.reshape(-1)
    ce = F.cross_entropy(logits, y, weight=weight, ignore_index=ignore_index, reduction="none",
                         label_smoothing=label_smoothing)
    kept = y != ignore_index
    wy = (weight[y.clamp(0)] if weight is not None else torch.ones_like(ce)) * kept
    per_row = ce + z_loss * wy * torch.logsumexp(logits, dim=1) ** 2
    if reduction == "none":
        return per_row.reshape(target.shape)
    return per_row.sum() if reduction == "sum" else per_row.sum() / wy.sum()


def _loss_and_grads(fn, leaves, target, options, seed):
    xs = [t.detach().clone().requires_grad_() for t in leaves]
    kw = dict(options)
    if len(xs) == 3:
        kw["linear_bias"] = xs[2]
    loss = fn(xs[0], xs[1], target, **kw)
    g = torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed), dtype=f64)
    return (loss, *torch.autograd.grad(loss, xs, g))  # a drawn upstream gradient


@given(problems(), extensions, st.integers(0, 2**16))
def test_chunked_values_and_gradients_equal_the_materialised_loss_and_the_naive_one(
        problem, extra, seed):
    h, w, target, options, chunks = problem
    if options["reduction"] == "mean" and bool((target == -100).all()):
        return  # 0 / 0 (nan): the all-ignored case has its own test
    options = dict(options, **extra)
    leaves = [h, w] + ([options["linear_bias"]] if "linear_bias" in options else [])
    ours = _loss_and_grads(linear_cross_entropy, leaves, target, dict(options, **chunks), seed)
    plain = _loss_and_grads(materialised, leaves, target, options, seed)
    for a, e in zip(ours, plain):
        assert_close(a, e, kind="impl")
    assert_close(ours[0], linear_cross_entropy_naive(h, w, target, **options), kind="impl")


@given(problems(), extensions)
def test_the_returned_z_term_is_the_difference_the_z_loss_makes(problem, extra):
    h, w, target, options, chunks = problem
    if options["reduction"] == "mean" and bool((target == -100).all()):
        return
    kw = dict(options, **chunks, softcap=extra["softcap"])
    loss, z = linear_cross_entropy(h, w, target, z_loss=extra["z_loss"], return_z_loss=True, **kw)
    assert_close(loss - z, linear_cross_entropy(h, w, target, **kw), kind="impl")
    assert bool((z >= 0).all())
    naive_loss, naive_z = linear_cross_entropy_naive(h, w, target, **options, **extra,
                                                     return_z_loss=True)
    assert_close(loss, naive_loss, kind="impl")
    assert_close(z, naive_z, kind="impl")


def test_the_defaults_are_bit_identical_to_the_loss_without_the_extensions():
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(19, 8, generator=gen, requires_grad=True)
    w = torch.randn(53, 8, generator=gen, requires_grad=True)
    target = torch.randint(0, 53, (19,), generator=gen)
    target[::4] = -100
    kw = {"label_smoothing": 0.1, "chunk_rows": 5, "chunk_vocab": 7}
    plain = linear_cross_entropy(h, w, target, **kw)
    explicit, z = linear_cross_entropy(h, w, target, z_loss=0.0, softcap=None,
                                       return_z_loss=True, **kw)
    assert torch.equal(plain, explicit) and z.item() == 0.0
    for a, b in zip(torch.autograd.grad(plain, (h, w)), torch.autograd.grad(explicit, (h, w))):
        assert torch.equal(a, b)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_in_float64_with_both_extensions_and_both_outputs(reduction):
    gen = torch.Generator().manual_seed(4)
    h = torch.randn(5, 3, generator=gen, dtype=f64, requires_grad=True)
    w = torch.randn(7, 3, generator=gen, dtype=f64, requires_grad=True)
    b = torch.randn(7, generator=gen, dtype=f64, requires_grad=True)
    weight = torch.rand(7, generator=gen, dtype=f64) + 0.1
    target = torch.tensor([0, 6, -100, 3, 3])
    assert torch.autograd.gradcheck(
        lambda h, w, b: linear_cross_entropy(
            h, w, target, linear_bias=b, weight=weight, label_smoothing=0.2, reduction=reduction,
            z_loss=0.3, softcap=1.5, return_z_loss=True, chunk_rows=2, chunk_vocab=3), (h, w, b))


def test_a_worked_example_by_hand():
    # logits (1, 0, 0) and (0, 1, 0): each row's lse is log(e + 2) and its loss log(e + 2) - 1
    h = torch.eye(2, dtype=f64)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=f64)
    target = torch.tensor([0, 1])
    lse = math.log(math.e + 2)
    loss, z = linear_cross_entropy(h, w, target, z_loss=0.01, return_z_loss=True)
    assert math.isclose(z.item(), 0.01 * lse**2, rel_tol=1e-15)
    assert math.isclose(loss.item(), lse - 1 + 0.01 * lse**2, rel_tol=1e-15)
    # capped at c = 1: the logits become (tanh 1, 0, 0)
    capped = linear_cross_entropy(h, w, target, softcap=1.0)
    t1 = math.tanh(1.0)
    assert math.isclose(capped.item(), math.log(math.exp(t1) + 2) - t1, rel_tol=1e-15)


def test_capped_logits_bound_the_loss_by_log_v_plus_twice_the_cap_even_for_huge_logits():
    # |s| <= c, so lse - s_y <= log V + 2c; the gradient through tanh stays finite too
    h = (torch.tensor([[1.0, -2.0], [-3.0, 0.5]]) * 1e4).requires_grad_()
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    cap = 3.0
    loss = linear_cross_entropy(h, w, torch.tensor([1, 0]), softcap=cap, z_loss=1e-4,
                                reduction="none", chunk_vocab=2)
    assert torch.isfinite(loss).all()
    assert bool((loss <= math.log(3) + 2 * cap + 1e-4 * (cap + math.log(3)) ** 2).all())
    (grad,) = torch.autograd.grad(loss.sum(), h)
    assert torch.isfinite(grad).all()


def test_a_cap_far_above_the_logits_changes_them_by_at_most_z_cubed_over_three_c_squared():
    gen = torch.Generator().manual_seed(5)
    h, w = torch.randn(6, 4, generator=gen, dtype=f64), torch.randn(9, 4, generator=gen, dtype=f64)
    target = torch.randint(0, 9, (6,), generator=gen)
    cap = 1e3
    zmax = float((h @ w.T).abs().max())
    # |c tanh(z/c) - z| <= |z|^3 / (3 c^2) for each logit; the loss is 2-Lipschitz in max-norm
    bound = 2 * zmax**3 / (3 * cap**2)
    diff = (linear_cross_entropy(h, w, target, softcap=cap, reduction="none")
            - linear_cross_entropy(h, w, target, reduction="none")).abs().max()
    assert 0 < diff <= bound


def test_half_precision_extensions_are_computed_in_float32():
    gen = torch.Generator().manual_seed(6)
    h, w = torch.randn(8, 4, generator=gen).bfloat16(), torch.randn(11, 4, generator=gen).bfloat16()
    target = torch.randint(0, 11, (8,), generator=gen)
    loss, z = linear_cross_entropy(h, w, target, z_loss=0.1, softcap=2.0, return_z_loss=True,
                                   chunk_vocab=3)
    assert loss.dtype == z.dtype == torch.bfloat16
    exact = materialised(h.double(), w.double(), target, z_loss=0.1, softcap=2.0)
    # the inputs are exact in float64; rounding the float32 result to bfloat16 errs by at most
    # eps / 2 relative, and float32's own error (~1e-6 here) fits in the other half
    assert abs(loss.double() - exact) <= torch.finfo(torch.bfloat16).eps * exact


def test_an_all_ignored_batch_has_a_nan_z_term_under_mean_and_zero_under_sum():
    h, w, target = torch.randn(3, 2), torch.randn(4, 2), torch.full((3,), -100)
    loss, z = linear_cross_entropy(h, w, target, z_loss=0.1, return_z_loss=True)
    assert loss.isnan() and z.isnan()
    loss, z = linear_cross_entropy(h, w, target, z_loss=0.1, return_z_loss=True, reduction="sum")
    assert loss.item() == 0.0 and z.item() == 0.0


def _call(fn, **kw):
    return fn(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(2, dtype=torch.long), **kw)


@pytest.mark.parametrize("fn", [linear_cross_entropy, linear_cross_entropy_naive])
@pytest.mark.parametrize("kw, error, words", [
    ({"z_loss": -0.1}, ValueError, "z_loss must lie in [0.0"),
    ({"z_loss": math.nan}, ValueError, "z_loss must be finite"),
    ({"z_loss": "1e-4"}, TypeError, "z_loss must be a real number"),
    ({"z_loss": torch.tensor(1e-4)}, TypeError, "z_loss must be a real number"),
    ({"softcap": 0.0}, ValueError, "softcap must be None (no capping) or a positive finite"),
    ({"softcap": -30.0}, ValueError, "got -30.0"),
    ({"softcap": math.inf}, ValueError, "softcap must be None"),
    ({"softcap": math.nan}, ValueError, "softcap must be None"),
    ({"softcap": True}, TypeError, "softcap must be None (no capping) or a positive real"),
    ({"softcap": "30"}, TypeError, "softcap must be"),
    ({"return_z_loss": 1}, TypeError, "return_z_loss must be a bool"),
])
def test_bad_extension_arguments_are_named(fn, kw, error, words):
    with pytest.raises(error) as info:
        _call(fn, **kw)
    assert words in str(info.value)
