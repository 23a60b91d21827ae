"""Token-weighted accumulation: k micro-batches give the gradient of one k-times batch."""

import pytest
import torch

from refllm.model import GPT, GPTConfig
from refllm.testing import assert_close
from refllm.train.objective import (
    IGNORE_INDEX,
    accumulate_gradients,
    count_tokens,
    loss_sum,
    step_loss_naive,
)

CONFIG = GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_head=2, d_model=8)


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 11, (6, 8), generator=g)
    targets = torch.randint(0, 11, (6, 8), generator=g)
    # uneven: micro-batch 0 (rows 0-1) keeps 3 targets, micro-batch 1 all 16, micro-batch 2 keeps 9
    targets[0, :] = IGNORE_INDEX
    targets[1, 3:] = IGNORE_INDEX
    targets[4:, :] = torch.where(torch.rand(2, 8, generator=g) < 0.45, IGNORE_INDEX,
                                 targets[4:, :])
    return idx, targets


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("impl", ["torch", "refllm"])
def test_micro_batches_with_uneven_ignored_targets_equal_one_big_batch(impl):
    torch.manual_seed(0)
    model = GPT(CONFIG).double()
    idx, targets = _batch(1)
    micro = list(zip(idx.chunk(3), targets.chunk(3)))
    assert len({count_tokens(t) for _, t in micro}) == 3  # the micro-batches really are uneven
    total = accumulate_gradients(model, micro, count_tokens(targets), impl=impl)
    accumulated = _grads(model)
    model.zero_grad()
    reference = step_loss_naive(model, micro)
    reference.backward()
    assert_close(total / count_tokens(targets), reference.detach())
    assert_close(accumulated, _grads(model))


def test_averaging_micro_batch_means_would_differ():  # the test above can fail
    torch.manual_seed(0)
    model = GPT(CONFIG).double()
    idx, targets = _batch(1)
    micro = list(zip(idx.chunk(3), targets.chunk(3)))
    with torch.no_grad():
        mean_of_means = sum(loss_sum(model(i), t) / count_tokens(t) for i, t in micro) / 3
        assert abs(float(mean_of_means - step_loss_naive(model, micro))) > 1e-3


def test_the_torch_and_refllm_losses_agree_in_value_and_gradient():
    torch.manual_seed(0)
    idx, targets = _batch(2)
    logits = torch.randn(6, 8, 11, requires_grad=True)
    a = loss_sum(logits, targets, "torch")
    (ga,) = torch.autograd.grad(a, logits)
    b = loss_sum(logits, targets, "refllm")
    (gb,) = torch.autograd.grad(b, logits)
    assert_close(a, b, kind="impl", dtype=torch.float32)
    assert_close(ga, gb, kind="impl", dtype=torch.float32)
