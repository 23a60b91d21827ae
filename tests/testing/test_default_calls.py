"""The fixed default calls are PyTorch's default calls, and torch's optimizer defaults are right."""

from __future__ import annotations

import pytest
import torch

from refllm.testing.cross_entropy.strategy import cross_entropy_default_calls
from refllm.testing.mse.strategy import mse_default_calls
from refllm.testing.multihead.strategy import multihead_default_calls
from refllm.testing.optimizer.strategy import TORCH_DEFAULTS, optimizer_default_problems
from refllm.testing.sdpa.strategy import sdpa_default_calls

CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@pytest.mark.parametrize("like", list(CLASSES))
def test_torch_defaults_are_those_of_the_installed_torch(like):
    defaults = CLASSES[like]([torch.zeros(1, requires_grad=True)], lr=0.1).defaults
    for key, value in TORCH_DEFAULTS[like].items():
        assert defaults[key] == value, (like, key, defaults[key], value)


@pytest.mark.parametrize("like", ["gd", *CLASSES])
def test_default_problems_use_torch_defaults_in_every_group(like):
    problems = optimizer_default_problems(like=like, steps=(1, 3), hyper={"amsgrad": False})
    assert len(problems) == 3  # one group, two groups, one kernel-sized parameter
    for problem in problems:
        assert 1 <= len(problem.grads) <= 3
        assert all(g is not None for row in problem.grads for g in row)
        for h in problem.hyper:
            assert {k: v for k, v in h.items() if k not in ("lr", "amsgrad")} == {
                k: v for k, v in TORCH_DEFAULTS[like].items() if k != "amsgrad"}


def test_the_default_calls_have_no_keyword_but_is_causal():
    sdpa = sdpa_default_calls()
    # then the kernel-sized ones (tests/testing/test_size_tier.py)
    assert [c.kwargs for c in sdpa] == [{}, {"is_causal": True}, {}, {"is_causal": True}, {},
                                        {}]
    assert all(c.args[0].dim() == 4 for c in sdpa)
    assert sdpa[-1].args[0].shape[0] > 65535  # past CUDA's limit on one grid axis
    q, k, _ = sdpa[1].args
    assert q.shape[-2] == k.shape[-2]  # causal with t == s
    for case in cross_entropy_default_calls():
        logits, target = case.args
        assert case.kwargs == {} and logits.dim() == 2 and logits.shape[0] > 1
        assert target.dtype == torch.int64 and bool((target < logits.shape[1]).all())
    assert all(c.kwargs == {} for c in mse_default_calls())


def test_the_default_calls_stay_within_max_size_but_the_kernel_sized_ones():
    for case in [*sdpa_default_calls(max_size=2, max_batch_dims=0, long=False),
                 *cross_entropy_default_calls(max_size=2, long=False),
                 *mse_default_calls(max_size=2, long=False)]:
        assert all(n <= 2 for a in case.args for n in a.shape), case.note


def test_the_multihead_default_call_is_torch_s_and_runs():
    case = multihead_default_calls()[0]
    q, k, v = case.forward.args
    assert q is k is v and case.forward.kwargs == {}
    module = torch.nn.MultiheadAttention(case.init_kwargs["embed_dim"],
                                         case.init_kwargs["num_heads"], dtype=torch.float64)
    module.load_state_dict(case.state_dict)
    out, weights = case.call(module)
    assert out.shape == q.shape and weights is not None  # need_weights defaults to True
