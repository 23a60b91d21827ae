"""refllm's fast cross-entropy against ``F.cross_entropy`` (float32, CPU).

N = 4096 rows of C in {256, 32768} classes (the second is a GPT-2-sized vocabulary: 512 MiB of
logits), class-index targets, reduction "mean". Each row times refllm and PyTorch interleaved round
by round (``benchutil.compare``), forward only and forward + backward; the pytest-benchmark entry
times refllm alone. Target: refllm within 2x of PyTorch. Peak-memory rows measure one forward +
backward of each in a fresh process at C = 32768. Before timing, the loss and gradient are checked:
on the first rows against PyTorch in float64, and on the whole batch against PyTorch in float32
(both ``kind="impl"``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from benchutil import compare, compare_memory

from refllm.ops.cross_entropy import cross_entropy
from refllm.testing import assert_close

N = 4096
CLASSES = [256, 32768]
CHECK_ROWS = 256
IMPLS = {"refllm-fast": cross_entropy, "torch": F.cross_entropy}


def _inputs(c: int, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(c)
    logits = torch.randn(n, c, generator=g) * 4
    return logits.requires_grad_(), torch.randint(0, c, (n,), generator=g)


def _forward(fn, logits, target):
    with torch.no_grad():
        return fn(logits, target)


def _forward_backward(fn, logits, target):
    loss = fn(logits, target)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


MODES = {"fwd": _forward, "fwd+bwd": _forward_backward}


def _check(logits, target) -> None:
    head = logits.detach()[:CHECK_ROWS].requires_grad_()
    ref = _forward_backward(F.cross_entropy, head.double(), target[:CHECK_ROWS])
    for got, want in zip(_forward_backward(cross_entropy, head, target[:CHECK_ROWS]), ref):
        assert_close(got, want, kind="impl", dtype=torch.float32)
    for got, want in zip(_forward_backward(cross_entropy, logits, target),
                         _forward_backward(F.cross_entropy, logits, target)):
        assert_close(got, want, kind="impl", dtype=torch.float32)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("c", CLASSES)
def test_cross_entropy_float32_interleaved(benchmark, c, mode):
    logits, target = _inputs(c)
    _check(logits, target)
    run = MODES[mode]
    row = compare(f"cross-entropy-{mode}-f32-n{N}c{c}", "refllm-fast", "torch",
                  lambda: run(cross_entropy, logits, target),
                  lambda: run(F.cross_entropy, logits, target), target=2.0,
                  rounds=7 if c <= 256 else 5)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(run, args=(cross_entropy, logits, target), rounds=3, iterations=1,
                       warmup_rounds=1)


def memory_case(name: str, mode: str, c: int):
    """For ``benchutil.peak_memory``: the call of implementation ``name`` to measure."""
    logits, target = _inputs(c)
    return lambda: MODES[mode](IMPLS[name], logits, target)


def test_cross_entropy_peak_memory(benchmark):
    c = CLASSES[-1]
    row = compare_memory(f"cross-entropy-fwd+bwd-f32-n{N}c{c}-memory", "refllm-fast", "torch",
                         f"{__name__}:memory_case", "fwd+bwd", c)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    assert row["candidate_peak_mib"] > 0  # the gradient alone is N x C floats
    benchmark.pedantic(memory_case("refllm-fast", "fwd+bwd", c), rounds=1, iterations=1)
