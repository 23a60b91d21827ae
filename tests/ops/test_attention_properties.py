"""Scaled dot-product attention: mathematical properties and a worked example by hand."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.attention import (
    scaled_dot_product_attention,
    scaled_dot_product_attention_naive,
    scaled_dot_product_attention_with_weights,
)
from refllm.testing import assert_close
from refllm.testing.sdpa.strategy import sdpa_cases

F64 = torch.float64
sdpa = scaled_dot_product_attention


def _cases(**kwargs):
    """Short cases only (no kernel-sized tier): the fast path has no tiles for a long axis to
    cross, and the naive loops grow with t * s (refllm against PyTorch's tiled kernels at kernel
    sizes: tests/ops/test_attention.py)."""
    return sdpa_cases(long_axes=False, scales=False, **kwargs)


@given(case=_cases(dropout=False))
def test_rows_of_attention_weights_sum_to_one_or_zero_when_fully_masked(case):
    _, probs = case.call(scaled_dot_product_attention_with_weights)
    sums = probs.sum(-1)
    assert_close(sums, torch.where(sums > 0.5, 1.0, 0.0).to(F64))
    assert (probs >= 0).all()


@given(case=_cases(dropout=True), seed=st.integers(0, 2**31))
def test_returned_weights_are_after_dropout_and_give_the_output(case, seed):
    p = case.kwargs.get("dropout_p", 0.0)
    kw = {**case.kwargs, "generator": torch.Generator().manual_seed(seed)}
    out, probs = scaled_dot_product_attention_with_weights(*case.args, **kw)
    _, clean = scaled_dot_product_attention_with_weights(*case.args, **{**case.kwargs,
                                                                       "dropout_p": 0.0})
    kept = probs != 0
    assert_close(probs[kept] * (1 - p), clean[kept])  # survivors scaled by 1 / (1 - p)
    q, k, v = case.args
    if case.kwargs.get("enable_gqa"):
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
    assert_close(out, probs @ v)


@given(case=_cases(causal=False), data=st.data())
def test_permuting_keys_and_values_together_leaves_the_output_unchanged(case, data):
    q, k, v = case.args
    perm = torch.tensor(data.draw(st.permutations(range(k.shape[-2]))))
    kw = dict(case.kwargs)
    if "attn_mask" in kw:
        kw["attn_mask"] = kw["attn_mask"][..., perm]
    assert_close(sdpa(q, k[..., perm, :], v[..., perm, :], **kw), case.call(sdpa))


@given(case=_cases(), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_attention_is_linear_in_the_values(case, a, b):
    q, k, v = case.args
    v2 = torch.flip(v, dims=[-1]) + 1.0
    lhs = sdpa(q, k, a * v + b * v2, **case.kwargs)
    rhs = a * sdpa(q, k, v, **case.kwargs) + b * sdpa(q, k, v2, **case.kwargs)
    assert_close(lhs, rhs)


@given(case=_cases(masks=False, causal=False), data=st.data())
def test_keys_and_values_at_masked_positions_do_not_matter(case, data):
    q, k, v = case.args
    s = k.shape[-2]
    j = data.draw(st.integers(0, s - 1))
    mask = torch.ones(q.shape[-2], s, dtype=torch.bool)
    mask[:, j] = False  # no query sees key j
    k2, v2 = k.clone(), v.clone()
    k2[..., j, :] += 100.0
    v2[..., j, :] = float(data.draw(st.floats(-1e6, 1e6)))
    kw = {**case.kwargs, "attn_mask": mask}
    assert_close(sdpa(q, k2, v2, **kw), sdpa(q, k, v, **kw))


@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
@given(case=_cases(masks=False, causal=False), data=st.data())
def test_causal_perturbing_the_future_changes_neither_outputs_nor_gradients_of_the_past(
        alignment, case, data):
    q, k, v = case.args
    t, s = q.shape[-2], k.shape[-2]
    offset = 0 if alignment == "top_left" else s - t
    i = data.draw(st.integers(0, t - 1))  # the last query position we watch
    future = i + offset + 1  # first key position that query i may not see
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    q2[..., i + 1:, :] += 3.0
    k2[..., max(future, 0):, :] -= 2.0
    v2[..., max(future, 0):, :] *= 5.0

    def watched(q, k, v):
        q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
        out = sdpa(q, k, v, **case.kwargs, is_causal=True, causal_alignment=alignment)
        grads = torch.autograd.grad(out[..., : i + 1, :].sum(), (q, k, v))
        cut = max(min(future, s), 0)
        return out[..., : i + 1, :], grads[0][..., : i + 1, :], grads[1][..., :cut, :], \
            grads[2][..., :cut, :]

    for a, b in zip(watched(q2, k2, v2), watched(q, k, v)):
        assert_close(a, b)


@given(case=_cases(gqa=False, masks=True), r=st.integers(1, 3))
def test_gqa_equals_multi_head_attention_with_repeated_key_value_heads(case, r):
    q, k, v = case.args
    if q.ndim < 3:
        q, k, v = (x.unsqueeze(0) for x in (q, k, v))
    q = torch.cat([q] * r, dim=-3)  # h = g * r query heads
    mha = sdpa(q, k.repeat_interleave(r, -3), v.repeat_interleave(r, -3),
               **{n: x for n, x in case.kwargs.items() if n != "attn_mask"})
    gqa = sdpa(q, k, v, enable_gqa=True,
               **{n: x for n, x in case.kwargs.items() if n != "attn_mask"})
    assert_close(gqa, mha)


@given(case=_cases(scale=False), c=st.floats(0.05, 3.0))
def test_an_explicit_scale_equals_scaling_the_query_with_scale_one(case, c):
    q, k, v = case.args
    assert_close(sdpa(q, k, v, **case.kwargs, scale=c),
                 scaled_dot_product_attention_naive(q * c, k, v, **case.kwargs, scale=1.0))


@given(case=_cases(scale=False))
def test_the_default_scale_is_one_over_the_square_root_of_d(case):
    q = case.args[0]
    assert_close(case.call(sdpa), sdpa(*case.args, **case.kwargs, scale=1 / math.sqrt(q.shape[-1])))


@pytest.mark.parametrize("fn", [sdpa, scaled_dot_product_attention_naive])
def test_worked_example_by_hand(fn):
    # t = s = 2, d = 2, e = 1; scale = 1/sqrt(2).
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    k = torch.tensor([[math.sqrt(2) * math.log(3), 0.0], [0.0, 0.0]], dtype=F64)
    v = torch.tensor([[4.0], [8.0]], dtype=F64)
    # scores = q k^T / sqrt(2) = [[ln 3, 0], [0, 0]]
    # row 0: softmax([ln 3, 0]) = [3/4, 1/4] -> out = 3/4 * 4 + 1/4 * 8 = 5
    # row 1: softmax([0, 0])    = [1/2, 1/2] -> out = 2 + 4 = 6
    assert_close(fn(q, k, v), torch.tensor([[5.0], [6.0]], dtype=F64))
    # causal (top-left): row 0 sees only key 0 -> out = 4; row 1 unchanged -> 6
    assert_close(fn(q, k, v, is_causal=True), torch.tensor([[4.0], [6.0]], dtype=F64))
    # boolean mask: row 0 may not see key 0 -> out = 8; row 1 sees nothing -> 0 (refllm's rule)
    mask = torch.tensor([[False, True], [False, False]])
    assert_close(fn(q, k, v, attn_mask=mask), torch.tensor([[8.0], [0.0]], dtype=F64))


def test_dropout_is_reproducible_with_a_seeded_generator_and_varies_without():
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=F64) for _ in range(3))

    def run(seed):
        return sdpa(q, k, v, dropout_p=0.5, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
