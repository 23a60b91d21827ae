"""Targets under reentrant activation checkpointing are checked (gradients through .backward())."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from refllm.testing import check_cross_entropy, check_sdpa
from refllm.testing.checks import check_multihead_attention
from refllm.testing.engine.gradients import gradients, refuses_grad


def checkpointed_sdpa(query, key, value, **kwargs):
    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, **kwargs)

    return checkpoint(attend, query, key, value, use_reentrant=True)


def checkpointed_sdpa_wrong_query_grad(query, key, value, **kwargs):
    def attend(q, k, v):  # the forward is exact, d/dq is 1.5 times too large
        return F.scaled_dot_product_attention(q + 0.5 * (q - q.detach()), k, v, **kwargs)

    return checkpoint(attend, query, key, value, use_reentrant=True)


def checkpointed_cross_entropy(input, target, **kwargs):
    return checkpoint(lambda x: F.cross_entropy(x, target, **kwargs), input, use_reentrant=True)


class CheckpointedMHA(torch.nn.MultiheadAttention):
    def forward(self, query, key, value, **kwargs):
        def attend(q, k, v):
            return torch.nn.MultiheadAttention.forward(self, q, k, v, **kwargs)

        return checkpoint(attend, query, key, value, use_reentrant=True)


def test_reentrant_checkpointing_refuses_autograd_grad():
    q = torch.randn(2, 3, 4, requires_grad=True)
    out = checkpointed_sdpa(q, q, q)
    with pytest.raises(RuntimeError) as info:
        torch.autograd.grad(out, [q], torch.ones_like(out))
    assert refuses_grad(info.value)


def test_gradients_fall_back_to_backward_on_a_fresh_forward():
    q = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 4, dtype=torch.float64)

    def rerun():
        fresh = q.detach().clone().requires_grad_()
        return [checkpointed_sdpa(fresh, fresh, fresh)], [fresh]

    (got,) = gradients([checkpointed_sdpa(q, q, q)], [q], [g], rerun)
    plain = q.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(F.scaled_dot_product_attention(plain, plain, plain), [plain], g)
    torch.testing.assert_close(got, want)


def test_a_checkpointed_sdpa_passes_check_sdpa():
    report = check_sdpa(checkpointed_sdpa, examples=8, seed=0)
    assert report.passed and report.property("grad wrt query").examples > 0


def test_a_wrong_gradient_under_checkpointing_is_still_caught():
    report = check_sdpa(checkpointed_sdpa_wrong_query_grad, examples=8, seed=0,
                        raise_on_failure=False)
    assert not report.passed
    assert [d.property for d in report.discrepancies] == ["grad wrt query"]


def test_a_checkpointed_cross_entropy_passes_check_cross_entropy():
    report = check_cross_entropy(checkpointed_cross_entropy, examples=8, seed=0)
    assert report.passed and report.property("grad wrt input").examples > 0


@pytest.mark.filterwarnings("ignore::UserWarning")  # checkpoint under no_grad, PyTorch's masks
def test_a_checkpointed_multihead_module_passes_check_multihead_attention():
    report = check_multihead_attention(CheckpointedMHA, examples=4, seed=0)
    assert report.passed and report.property("grad wrt parameter 'out_proj.weight'").examples
