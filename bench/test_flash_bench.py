"""Tiled (FlashAttention-2) attention and refllm's fast SDPA against PyTorch (float32, CPU):
forward + backward time, and peak extra memory.

Time: forward + backward (``torch.autograd.grad`` of a fixed dO wrt q, k, v) at b=1, h=8, d=64,
t=s in (1024, 2048), causal and not, each row timed interleaved round by round against PyTorch's
MATH backend (the same maths, unfused; ``benchutil.compare``: median per-round ratio, IQR, and the
one-thread CPU-time ratio). Targets: refllm's ``flash_attention`` within 1.5x of MATH, refllm's
fast path within 1.3x. PyTorch's default CPU kernel (fused, flash-style) and two other tilings of
``flash_attention`` are listed without a target. Every implementation is checked against a float64
MATH reference (output and gradients, ``kind="impl"``) before it is timed.

Memory: peak extra resident memory of one call at b=1, h=8, t=s=4096, d=64 (forward with the graph
kept; forward + backward), each in a fresh subprocess (``benchutil.compare_memory``: growth of the
peak RSS, ``ru_maxrss``, over the resident size just before the call, with a fixed malloc mmap
threshold so that freed blocks go back to the kernel). On the CPU this is reliable where
``torch.profiler``'s ``profile_memory`` is not (it reports allocations per op, not the process'
peak, and misses memory outside torch's allocator). Targets for ``flash_attention``: under 64 MiB
forward and under 128 MiB forward + backward (dq, dk, dv alone take 24 MiB). Baseline: MATH.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from benchutil import compare, compare_memory
from torch.nn.attention import SDPBackend, sdpa_kernel

from refllm.ops.attention import scaled_dot_product_attention
from refllm.ops.flash_attention import flash_attention
from refllm.testing import assert_close

B, H, D = 1, 8, 64


def _torch_math(q, k, v, **kw):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, **kw)


def _tiles(bq: int, bk: int):
    return lambda q, k, v, **kw: flash_attention(q, k, v, **kw, block_q=bq, block_k=bk)


# name -> (function, target ratio to MATH, lengths it runs at)
IMPLS = {
    "refllm-flash": (flash_attention, 1.5, (1024, 2048)),
    "refllm-fast": (scaled_dot_product_attention, 1.3, (1024, 2048)),
    "torch-default": (F.scaled_dot_product_attention, None, (1024, 2048)),
    "refllm-flash-64x64": (_tiles(64, 64), None, (1024,)),
    "refllm-flash-128x128": (_tiles(128, 128), None, (1024,)),
}


def _qkv(t: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(t)
    q, k, v, up = (torch.randn(B, H, t, D, generator=g).to(dtype) for _ in range(4))
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), up


def _fwd_bwd(fn, q, k, v, up, causal=False):
    out = fn(q, k, v, is_causal=causal)
    return out, torch.autograd.grad(out, (q, k, v), up)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("t", [1024, 2048])
@pytest.mark.parametrize("name", list(IMPLS))
def test_sdpa_forward_backward_float32_against_math(name, t, causal):
    fn, target, lengths = IMPLS[name]
    if t not in lengths:
        pytest.skip(f"{name} runs at t in {lengths}")
    inputs = _qkv(t)
    ref, ref_grads = _fwd_bwd(_torch_math, *_qkv(t, torch.float64), causal)
    out, grads = _fwd_bwd(fn, *inputs, causal)
    for got, want in zip((out, *grads), (ref, *ref_grads)):
        assert_close(got, want, kind="impl", dtype=torch.float32)
    row = compare(f"sdpa-fwd+bwd-f32-b{B}h{H}t{t}d{D}-{'causal' if causal else 'full'}", name,
                  "torch-math", lambda: _fwd_bwd(fn, *inputs, causal),
                  lambda: _fwd_bwd(_torch_math, *inputs, causal), target=target, rounds=5,
                  cpu_rounds=3)
    print(f"\n{row['group']} {name} / torch-math = {row['ratio']:.2f} "
          f"(IQR {row['ratio_q1']:.2f}-{row['ratio_q3']:.2f}, "
          f"CPU 1 thread {row['cpu1_ratio']:.2f})")


MEM = {"torch-math": _torch_math, "refllm-fast": scaled_dot_product_attention,
       "refllm-flash": flash_attention}


def memory_call(name: str, mode: str, t: int = 4096):
    """The zero-argument call whose memory ``compare_memory`` measures (in a subprocess)."""
    fn, inputs = MEM[name], _qkv(t)
    if mode == "fwd":
        return lambda: fn(*inputs[:3])  # the graph (what backward needs) is kept until it returns
    return lambda: _fwd_bwd(fn, *inputs)


MEMORY_TARGETS_MIB = {"fwd": 64.0, "fwd+bwd": 128.0}


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("name", ["refllm-flash", "refllm-fast"])
def test_peak_extra_memory_at_t4096_against_math(name, mode):
    target = MEMORY_TARGETS_MIB[mode] if name == "refllm-flash" else None
    row = compare_memory(f"sdpa-{mode}-memory-b{B}h{H}t4096d{D}", name, "torch-math",
                         "test_flash_bench:memory_call", mode, target_mib=target)
    print(f"\n{row['group']}: {name} {row['candidate_peak_mib']:.0f} MiB, torch-math "
          f"{row['baseline_peak_mib']:.0f} MiB")
    if target is not None:
        assert row["candidate_peak_mib"] < target
