"""refllm's chunked ``linear_cross_entropy`` against materialising the logits
(``F.cross_entropy(F.linear(h, W), y)``), forward + backward (gradients wrt h and W), float32, CPU.

Shape: N = 4096 rows, d = 256, V = 32768 (a GPT-2-sized vocabulary), the chunks at their defaults
(1024 rows x 8192 classes), reduction "mean". The baseline holds the N x V logits, 512 MiB.

Memory, two meters, each candidate and baseline in the same run:

* ``benchutil.compare_memory``: the rise of the peak resident memory (VmHWM, reset through
  /proc/self/clear_refs) of one call over the resident size just before it, in a fresh process per
  side at one thread, malloc's mmap threshold fixed so that freed blocks go back to the kernel.
  It sees everything the process touched, page by page. A calibration test holds it to two
  known allocations.
* ``benchutil.allocator_peak``: the peak of the bytes torch's allocator held during the call, from
  the profiler's allocation events: exact for tensors, blind to memory outside torch.

Target, from the shapes: the baseline holds at least the logits, N V floats. The candidate holds
at most its two gradients ((N + V) d floats, which the baseline holds too), two chunk-sized blocks
at once (the backward's probabilities, computed in place over the chunk's logits, and their
gradient: 2 x 1024 x 8192), a (cv x d) and a (cr x d) product, and some vectors of N (at most
sixteen of int64 allowed). So the ratio must be below
(2 cr cv + (N + V) d + (cv + cr) d + 32 N) / (N V) = 0.213 on both meters, and the candidate's
own peak below that numerator, 109.5 MiB (plus, for the resident meter, the METER_SLACK of 2 MiB
within which it reads a known allocation). The time row is interleaved round by round
(``benchutil.compare``); its target, 2x, allows the backward's recomputation of the logits (a
fourth matmul beside the baseline's three, 4/3) and the chunk loop; it is recorded, not asserted.
Before anything is measured, loss and gradients are checked against the materialised loss in
float32 on the whole batch and in float64 on its first rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from benchutil import allocator_peak, compare, compare_memory, peak_memory

from refllm.ops.linear_cross_entropy import linear_cross_entropy
from refllm.testing import assert_close

N, D, V = 4096, 256, 32768
CHUNK_ROWS, CHUNK_VOCAB = 1024, 8192
CHECK_ROWS = 256
FLOAT = 4  # bytes
LOGITS_BYTES = N * V * FLOAT
BOUND_BYTES = ((2 * CHUNK_ROWS * CHUNK_VOCAB + (N + V) * D + (CHUNK_VOCAB + CHUNK_ROWS) * D)
               * FLOAT + 16 * N * 8)
RATIO_TARGET = BOUND_BYTES / LOGITS_BYTES  # 0.213
MIB = 2.0**20
METER_SLACK = 2 * MIB  # the resident meter reads a known allocation within this (tested below)


def _chunked(h, w, y):
    return linear_cross_entropy(h, w, y, chunk_rows=CHUNK_ROWS, chunk_vocab=CHUNK_VOCAB)


def _materialised(h, w, y):
    return F.cross_entropy(F.linear(h, w), y)


IMPLS = {"refllm-chunked": _chunked, "materialised": _materialised}


def _inputs(n: int = N) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, D, generator=g)
    w = torch.randn(V, D, generator=g) / D**0.5 * 2  # logits of standard deviation about 2
    return h.requires_grad_(), w.requires_grad_(), torch.randint(0, V, (n,), generator=g)


def _forward_backward(fn, h, w, y):
    loss = fn(h, w, y)
    dh, dw = torch.autograd.grad(loss, (h, w))
    return loss.detach(), dh, dw


def _check() -> None:
    h, w, y = _inputs()
    head = [h.detach()[:CHECK_ROWS].requires_grad_(), w, y[:CHECK_ROWS]]
    exact = _forward_backward(_materialised, head[0].double(), w.double(), head[2])
    for got, want in zip(_forward_backward(_chunked, *head), exact):
        assert_close(got, want.float(), kind="impl", dtype=torch.float32)
    for got, want in zip(_forward_backward(_chunked, h, w, y),
                         _forward_backward(_materialised, h, w, y)):
        assert_close(got, want, kind="impl", dtype=torch.float32)


def test_linear_cross_entropy_fwd_bwd_time_interleaved(benchmark):
    _check()
    h, w, y = _inputs()
    row = compare(f"linear-ce-fwd+bwd-f32-n{N}d{D}v{V}", "refllm-chunked", "materialised",
                  lambda: _forward_backward(_chunked, h, w, y),
                  lambda: _forward_backward(_materialised, h, w, y), target=2.0, rounds=5)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(_forward_backward, args=(_chunked, h, w, y), rounds=1, iterations=1)


def memory_case(name: str):
    """For ``benchutil.peak_memory``: the call of implementation ``name`` to measure."""
    h, w, y = _inputs()
    return lambda: _forward_backward(IMPLS[name], h, w, y)


def known_allocation(n_bytes: int):
    """For ``benchutil.peak_memory``: a call that allocates and touches exactly n_bytes."""
    return lambda: torch.ones(n_bytes // FLOAT).sum()


def test_the_resident_memory_meter_reads_a_known_allocation(benchmark):
    # every page of the tensor is touched; beside it only the interpreter's pages move (by a
    # fraction of a MiB either way: freed garbage can make the reading a little low)
    got = {size: peak_memory(f"{__name__}:known_allocation", size)
           for size in (LOGITS_BYTES, CHUNK_ROWS * CHUNK_VOCAB * FLOAT)}
    benchmark.extra_info.update({f"known_{n}_bytes_read_mib": v / MIB for n, v in got.items()})
    print("\nresident meter, known allocations: " + ", ".join(
        f"{size / MIB:.0f} MiB read as {read / MIB:.2f} MiB" for size, read in got.items()))
    for size, read in got.items():
        assert abs(read - size) <= METER_SLACK, (size / MIB, read / MIB)
    benchmark.pedantic(known_allocation(CHUNK_ROWS * CHUNK_VOCAB * FLOAT), rounds=1, iterations=1)


def test_linear_cross_entropy_peak_memory_against_materialising_the_logits(benchmark):
    row = compare_memory(f"linear-ce-fwd+bwd-f32-n{N}d{D}v{V}-memory", "refllm-chunked",
                         "materialised", f"{__name__}:memory_case",
                         target_mib=(BOUND_BYTES + METER_SLACK) / MIB)
    allocator = {name: allocator_peak(memory_case(name)) / MIB for name in IMPLS}
    row.update(allocator_candidate_mib=allocator["refllm-chunked"],
               allocator_baseline_mib=allocator["materialised"],
               allocator_ratio=allocator["refllm-chunked"] / allocator["materialised"],
               ratio_target=RATIO_TARGET)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    print(f"\n{row['group']}: resident {row['candidate_peak_mib']:.0f} / "
          f"{row['baseline_peak_mib']:.0f} MiB = {row['ratio']:.3f}; torch's allocator "
          f"{allocator['refllm-chunked']:.0f} / {allocator['materialised']:.0f} MiB = "
          f"{row['allocator_ratio']:.3f}; target ratio < {RATIO_TARGET:.3f}, candidate < "
          f"{BOUND_BYTES / MIB:.1f} MiB")
    assert row["baseline_peak_mib"] * MIB >= LOGITS_BYTES  # the meter saw the logits
    assert allocator["materialised"] * MIB >= LOGITS_BYTES
    assert row["ratio"] < RATIO_TARGET and row["allocator_ratio"] < RATIO_TARGET
    assert row["candidate_peak_mib"] * MIB < BOUND_BYTES + METER_SLACK
    assert allocator["refllm-chunked"] < BOUND_BYTES / MIB
    benchmark.pedantic(memory_case("refllm-chunked"), rounds=1, iterations=1)
