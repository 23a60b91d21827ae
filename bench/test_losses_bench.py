"""refllm's fast cross-entropy against ``F.cross_entropy`` (float32, forward + backward, CPU).

N = 8192 rows of C in {256, 32768} classes (the second is a GPT-2-sized vocabulary: 1 GiB of
logits), class-index targets, reduction "mean". Target: refllm within 2x of PyTorch. Before timing,
each benchmark checks its loss and gradient: on the first rows against PyTorch in float64, and on
the whole batch against PyTorch in float32 (both ``kind="impl"``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from benchutil import role

from refllm.ops.losses import cross_entropy
from refllm.testing import assert_close

N = 8192
CLASSES = [256, 32768]
CHECK_ROWS = 256

IMPLS = {
    "torch": (F.cross_entropy, "baseline", None),
    "refllm-fast": (cross_entropy, "candidate", 2.0),
}


def _inputs(c: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(c)
    logits = torch.randn(N, c, generator=g) * 4
    return logits.requires_grad_(), torch.randint(0, c, (N,), generator=g)


def _forward_backward(fn, logits, target):
    loss = fn(logits, target)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


def _check(fn, logits, target) -> None:
    head = logits.detach()[:CHECK_ROWS].requires_grad_()
    ref = _forward_backward(F.cross_entropy, head.double(), target[:CHECK_ROWS])
    for got, want in zip(_forward_backward(fn, head, target[:CHECK_ROWS]), ref):
        assert_close(got, want, kind="impl", dtype=torch.float32)
    if fn is not F.cross_entropy:
        for got, want in zip(_forward_backward(fn, logits, target),
                             _forward_backward(F.cross_entropy, logits, target)):
            assert_close(got, want, kind="impl", dtype=torch.float32)


@pytest.mark.parametrize("name", list(IMPLS))
@pytest.mark.parametrize("c", CLASSES)
def test_cross_entropy_forward_backward_float32(benchmark, c, name):
    fn, kind, target_ratio = IMPLS[name]
    logits, target = _inputs(c)
    _check(fn, logits, target)
    role(benchmark, f"cross-entropy-fwd-bwd-f32-n{N}c{c}", name, baseline=kind == "baseline",
         target=target_ratio)
    rounds = 20 if c <= 256 else 5
    benchmark.pedantic(_forward_backward, args=(fn, logits, target), rounds=rounds, iterations=1,
                       warmup_rounds=1)
