"""Attention masks: the causal rule and the conversions between PyTorch's conventions."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.masks import (
    NEG_INF,
    additive,
    allowed,
    apply,
    causal_allowed,
    combine,
    from_ignore,
    is_boolean,
)

F64 = torch.float64


@given(st.integers(1, 9), st.integers(1, 9), st.integers(-9, 9))
def test_the_causal_rule_is_the_lower_triangle_with_its_offset(t, s, offset):
    lower = torch.ones(t, s, dtype=torch.bool).tril(offset)
    assert torch.equal(causal_allowed(t, s, offset), lower)


@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 3), st.integers(0, 3),
       st.integers(-3, 3))
def test_a_causal_tile_is_the_same_block_of_the_whole_matrix(t, s, i0, j0, offset):
    whole = causal_allowed(i0 + t, j0 + s, offset)
    assert torch.equal(causal_allowed(t, s, offset, i0=i0, j0=j0), whole[i0:, j0:])


def test_boolean_and_additive_masks_convert_both_ways():
    keep = torch.tensor([[True, False], [False, True]])
    m = additive(keep, F64)
    assert m.dtype == F64 and m.tolist() == [[0.0, NEG_INF], [NEG_INF, 0.0]]
    assert torch.equal(allowed(m), keep) and allowed(keep) is keep
    bias = torch.tensor([0.5, NEG_INF], dtype=F64)
    assert additive(bias, F64) is bias and allowed(bias).tolist() == [True, False]


def test_multihead_attentions_ignore_mask_is_the_negation_of_sdpas():
    ignore = torch.tensor([True, False])
    assert from_ignore(ignore).tolist() == [False, True]
    bias = torch.tensor([1.0, NEG_INF])
    assert from_ignore(bias) is bias


def test_masks_combine_as_and_or_as_a_sum():
    a, b = torch.tensor([True, True, False]), torch.tensor([True, False, True])
    assert combine([a, b], F64).tolist() == [True, False, False]
    bias = torch.tensor([0.5, 0.5, 0.5], dtype=F64)
    assert combine([a, bias], F64).tolist() == [0.5, 0.5, NEG_INF]
    assert combine([], F64) is None and is_boolean(combine([a], F64))


@pytest.mark.parametrize("inplace", [False, True])
def test_applying_a_mask_masks_or_adds(inplace):
    scores = torch.zeros(2, 3, dtype=F64)
    keep = torch.tensor([True, False, True])  # broadcast over the rows
    out = apply(scores.clone(), keep, inplace=inplace)
    assert out.tolist() == [[0.0, NEG_INF, 0.0]] * 2
    assert torch.equal(apply(scores.clone(), additive(keep, F64), inplace=inplace), out)
    assert apply(scores, None) is scores
