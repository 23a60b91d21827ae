"""Token-weighted accumulation: fast == naive, == what refllm.train builds on 1 or 2 processes."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from refllm.ops.grad_accumulation import (
    accumulate_token_weighted,
    accumulate_token_weighted_naive,
    accumulation_scale,
)
from refllm.testing import assert_close
from refllm.train.objective import (
    IGNORE_INDEX,
    accumulate_gradients,
    count_tokens,
    loss_sum,
    step_loss_naive,
)

f64 = torch.float64


@st.composite
def micro_batches(draw):
    """1-5 micro-batch gradients of one drawn shape (0-3 axes, sizes 0-4) and their token counts
    (0-50 each, not all 0)."""
    k = draw(st.integers(1, 5), label="micro-batches")
    shape = draw(st.lists(st.integers(0, 4), max_size=3), label="shape")
    counts = draw(st.lists(st.integers(0, 50), min_size=k, max_size=k).filter(any),
                  label="counts")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16), label="seed"))
    return [torch.randn(shape, generator=gen, dtype=f64) for _ in range(k)], counts


@given(micro_batches())
def test_fast_equals_naive_and_the_sum_and_mean_forms_agree(inputs):
    grads, counts = inputs
    fast = accumulate_token_weighted(grads, counts)
    assert_close(fast, accumulate_token_weighted_naive(grads, counts))
    if all(counts):  # g_m = G_m / n_m: the mean form of the same step
        means = [g / n for g, n in zip(grads, counts)]
        assert_close(accumulate_token_weighted(means, counts, reduction="mean"), fast,
                     kind="impl")
        assert_close(accumulate_token_weighted_naive(means, counts, reduction="mean"), fast,
                     kind="impl")


def _uneven_batch():
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 11, (6, 5), generator=gen)
    targets = torch.randint(0, 11, (6, 5), generator=gen)
    targets[0, 1:] = IGNORE_INDEX  # micro-batch 0 (rows 0-1) keeps 6 targets, 1 keeps 10, 2 keeps 2
    targets[4:, 1:] = IGNORE_INDEX
    return list(zip(idx.chunk(3), targets.chunk(3)))


def test_it_is_what_refllm_train_accumulates_on_one_process_and_on_two():
    torch.manual_seed(0)
    model = nn.Embedding(11, 11).double()  # logits (b, t, v) straight from the token ids
    micro = _uneven_batch()
    counts = [count_tokens(t) for _, t in micro]
    assert counts == [6, 10, 2]
    sums = []
    for idx, targets in micro:
        model.zero_grad()
        loss_sum(model(idx), targets).backward()
        sums.append(model.weight.grad.clone())
    expected = accumulate_token_weighted(sums, counts)
    model.zero_grad()
    step_loss_naive(model, micro).backward()  # one batch, mean over its tokens
    assert_close(model.weight.grad, expected)
    model.zero_grad()
    accumulate_gradients(model, micro, sum(counts))
    assert_close(model.weight.grad, expected)
    per_rank = []  # two processes; DDP's all-reduce averages their gradients
    for rank_micro in (micro[:2], micro[2:]):
        model.zero_grad()
        accumulate_gradients(model, rank_micro, sum(counts), world_size=2)
        per_rank.append(model.weight.grad.clone())
    assert_close((per_rank[0] + per_rank[1]) / 2, expected)
    means = [g / n for g, n in zip(sums, counts)]  # the unweighted mean of means is not it
    assert (sum(means) / len(means) - expected).abs().max() > 1e-2


def test_the_scale_is_world_size_over_the_steps_tokens():
    assert accumulation_scale(18) == 1 / 18
    assert accumulation_scale(18, world_size=2) == 2 / 18


@pytest.mark.parametrize("call, error, words", [
    (lambda: accumulate_token_weighted([], []), TypeError, "grads must be a non-empty sequence"),
    (lambda: accumulate_token_weighted(torch.ones(2, 3), [1, 2]), TypeError, "grads must be"),
    (lambda: accumulate_token_weighted([torch.ones(2), torch.ones(3)], [1, 2]), ValueError,
     "grads[1] must have the shape of grads[0]"),
    (lambda: accumulate_token_weighted([torch.ones(2), torch.ones(2, dtype=f64)], [1, 2]),
     TypeError, "must share one dtype"),
    (lambda: accumulate_token_weighted([torch.ones(2)], [1, 2]), ValueError,
     "one count per micro-batch"),
    (lambda: accumulate_token_weighted([torch.ones(2)], [-1]), ValueError, "n_tokens[0] must"),
    (lambda: accumulate_token_weighted([torch.ones(2)], [0]), ValueError, "must not all be 0"),
    (lambda: accumulate_token_weighted([torch.ones(2)], 3), TypeError, "n_tokens must be a seq"),
    (lambda: accumulate_token_weighted([torch.ones(2)], [2], reduction="avg"), ValueError,
     "reduction must be one of"),
    (lambda: accumulate_token_weighted([torch.ones(2)] * 2, [0, 2], reduction="mean"),
     ValueError, "n_tokens[0] is 0"),
    (lambda: accumulation_scale(0), ValueError, "n_tokens must be >= 1"),
    (lambda: accumulation_scale(8, world_size=0), ValueError, "world_size must be >= 1"),
])
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
