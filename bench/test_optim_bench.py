"""Optimizer step time: refllm's SGD(momentum) and AdamW against torch's for-loop and foreach paths.

A ~10M-parameter float32 "model" (ten 1000×1000 weights and their biases), gradients set once.
Each row times refllm's ``step()`` and torch's interleaved round by round, each on its own copy of
the model (``benchutil.compare``); the pytest-benchmark entry times refllm's step alone. Target:
refllm within 2x of torch. Before timing, refllm's steps are checked against torch's.
"""

from __future__ import annotations

import pytest
import torch
from benchutil import compare

from refllm.nn import optim as N
from refllm.testing import assert_close

SHAPES = [(1000, 1000), (1000,)] * 10  # 10.01M parameters
CASES = {
    "sgd-momentum": (N.SGD, torch.optim.SGD, dict(lr=1e-3, momentum=0.9, weight_decay=1e-4)),
    "adamw": (N.AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.1)),
}


def _model(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in SHAPES]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return params


def _check_one_step_agrees(name: str) -> None:
    ours_cls, torch_cls, hyper = CASES[name]
    a, b = _model(), _model()
    ours, theirs = ours_cls(a, **hyper), torch_cls(b, foreach=False, **hyper)
    for _ in range(2):  # the second step uses the state the first one made
        ours.step(), theirs.step()
    for p, q in zip(a, b):
        assert_close(p.detach(), q.detach(), kind="impl")


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("baseline", ["torch-for-loop", "torch-foreach"])
def test_optimizer_step_interleaved(benchmark, name, baseline):
    ours_cls, torch_cls, hyper = CASES[name]
    _check_one_step_agrees(name)
    ours = ours_cls(_model(), **hyper)
    theirs = torch_cls(_model(), foreach=baseline == "torch-foreach", **hyper)
    ours.step(), theirs.step()  # create the state outside the timed region
    row = compare(f"optim-{name}-10M-f32", "refllm", baseline, ours.step, theirs.step,
                  target=2.0, rounds=15, cpu_rounds=5)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(ours.step, rounds=5, warmup_rounds=1, iterations=1)
