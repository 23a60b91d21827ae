"""refllm's fast scaled dot-product attention against PyTorch's SDPA (float32, CPU).

Baselines: PyTorch with the MATH backend (the same algorithm, unfused) and with the default CPU
backend (fused, flash-style). Each row times refllm and one baseline interleaved round by round
(``benchutil.compare``), forward only and forward + backward (gradients wrt q, k, v under a fixed
upstream gradient); the pytest-benchmark entry times refllm alone. Target: refllm within 2x of the
MATH backend. Peak-memory rows measure one call of each in a fresh process at t = s = MEM_T.
Every implementation is checked against a float64 MATH-backend reference (``kind="impl"``),
output and gradients, before it is timed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from benchutil import compare, compare_memory
from torch.nn.attention import SDPBackend, sdpa_kernel

from refllm.ops.attention import scaled_dot_product_attention
from refllm.testing import assert_close

B, H, D = 4, 8, 64
LENGTHS = [128, 512, 1024]
MEM_B, MEM_T = 1, 2048


def _torch_math(q, k, v):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


IMPLS = {"refllm-fast": scaled_dot_product_attention, "torch-math": _torch_math,
         "torch-default": F.scaled_dot_product_attention}
TARGETS = {"torch-math": 2.0}  # baseline -> largest acceptable ratio of refllm's median to it


def _inputs(b: int, t: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(t)
    q, k, v, up = (torch.randn(b, H, t, D, generator=g) for _ in range(4))
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), up


def _forward(fn, q, k, v, up):
    with torch.no_grad():
        return fn(q, k, v)


def _forward_backward(fn, q, k, v, up):
    out = fn(q, k, v)
    return (out.detach(), *torch.autograd.grad(out, (q, k, v), up))


MODES = {"fwd": _forward, "fwd+bwd": _forward_backward}


def _check(name: str, mode: str, q, k, v, up) -> None:
    run = MODES[mode]
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    want = run(_torch_math, q64, k64, v64, up.double())
    got = run(IMPLS[name], q, k, v, up)
    for a, e in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        assert_close(a, e, kind="impl", dtype=torch.float32)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("baseline", ["torch-math", "torch-default"])
@pytest.mark.parametrize("t", LENGTHS)
def test_sdpa_float32_interleaved(benchmark, t, baseline, mode):
    inputs = _inputs(B, t)
    for name in ("refllm-fast", baseline):
        _check(name, mode, *inputs)
    run = MODES[mode]
    rounds = 7 if t <= 512 else 5
    row = compare(f"sdpa-{mode}-f32-b{B}h{H}t{t}d{D}", "refllm-fast", baseline,
                  lambda: run(scaled_dot_product_attention, *inputs),
                  lambda: run(IMPLS[baseline], *inputs), target=TARGETS.get(baseline),
                  rounds=rounds)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(run, args=(scaled_dot_product_attention, *inputs), rounds=3,
                       iterations=1, warmup_rounds=1)


def memory_case(name: str, mode: str, b: int, t: int):
    """For ``benchutil.peak_memory``: the call of implementation ``name`` to measure."""
    inputs = _inputs(b, t)
    return lambda: MODES[mode](IMPLS[name], *inputs)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("baseline", ["torch-math", "torch-default"])
def test_sdpa_peak_memory(benchmark, baseline, mode):
    row = compare_memory(f"sdpa-{mode}-f32-b{MEM_B}h{H}t{MEM_T}d{D}-memory", "refllm-fast",
                         baseline, f"{__name__}:memory_case", mode, MEM_B, MEM_T)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    assert row["candidate_peak_mib"] > 0  # refllm builds the t x s scores: never free
    benchmark.pedantic(memory_case("refllm-fast", mode, MEM_B, MEM_T), rounds=1, iterations=1)
