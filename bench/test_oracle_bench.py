"""What a check costs: examples per second of each oracle check on PyTorch's own ops (CPU), and
the seconds of a whole default check.

Two measurements, each on PyTorch's op in float32 with a fixed seed (so every round draws the same
examples):

* examples/s on the small sizes (``Contract(long_axes=False)``: no kernel-sized tier), 100
  examples, at the checks' default of one intra-op thread and, for SDPA and AdamW, also at two
  (``threads=2``), to show which is faster; the targets: ``check_sdpa`` >= 60 examples/s,
  ``check_optimizer(AdamW)`` >= 20;
* a whole default check: the call a user makes, ``check_x(op)`` with no option (40 examples, the
  fixed default calls, the kernel-sized tier included); target <= 2 s at one thread.

The check passing is asserted first (benchmarks check before they time). Wall clock and CPU time
(``time.process_time``) go to ``extra_info`` and to the ratio table of ``conftest.py``.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from benchutil import ROWS

from refllm.testing import (
    Contract,
    check_cross_entropy,
    check_mse,
    check_multihead_attention,
    check_optimizer,
    check_sdpa,
)

EXAMPLES = 100
TARGETS = {"check_sdpa(F.scaled_dot_product_attention)": 60.0,
           "check_optimizer(torch.optim.AdamW)": 20.0}  # examples/s
WHOLE_CHECK_TARGET = 2.0  # seconds of a default check, kernel-sized tier included
SMALL = Contract(long_axes=False)

CHECKS = {
    "check_sdpa(F.scaled_dot_product_attention)":
        lambda **kw: check_sdpa(F.scaled_dot_product_attention, seed=0, **kw),
    "check_cross_entropy(F.cross_entropy)":
        lambda **kw: check_cross_entropy(F.cross_entropy, seed=0, **kw),
    "check_mse(F.mse_loss)": lambda **kw: check_mse(F.mse_loss, seed=0, **kw),
    "check_optimizer(torch.optim.AdamW)":
        lambda **kw: check_optimizer(torch.optim.AdamW, like="adamw", seed=0, **kw),
    "check_optimizer(torch.optim.SGD)":
        lambda **kw: check_optimizer(torch.optim.SGD, like="sgd", seed=0, **kw),
    "check_multihead_attention(nn.MultiheadAttention)":
        lambda **kw: check_multihead_attention(torch.nn.MultiheadAttention, seed=0, **kw),
}


def _quiet(check, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check(**kwargs)


CASES = [(name, 1) for name in CHECKS] + [(name, 2) for name in TARGETS]


@pytest.mark.parametrize("name, threads", CASES)
def test_examples_per_second_of_a_check(benchmark, name, threads):
    check = CHECKS[name]
    kwargs = dict(threads=threads, examples=EXAMPLES, contract=SMALL)
    report = _quiet(check, **kwargs)  # also the warm-up
    assert report.passed and report.examples >= EXAMPLES, str(report)
    wall, cpu = time.perf_counter(), time.process_time()
    report = _quiet(check, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    target = TARGETS.get(name) if threads == 1 else None
    row = {"kind": "oracle", "group": "oracle checks, small sizes (float32, cpu)",
           "candidate": name, "baseline": "", "threads": threads,
           "caller_threads": torch.get_num_threads(), "examples": report.examples,
           "examples_per_s": report.examples / wall,
           "examples_per_cpu_s": report.examples / cpu, "target": target,
           "meets_target": None if target is None else report.examples / wall >= target}
    ROWS.append(row)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(_quiet, args=(check,), kwargs=kwargs, rounds=1, iterations=1)


@pytest.mark.parametrize("name", list(CHECKS))
def test_seconds_of_a_whole_default_check(benchmark, name):
    check = CHECKS[name]
    report = _quiet(check)  # also the warm-up
    assert report.passed, str(report)
    wall, cpu = time.perf_counter(), time.process_time()
    report = _quiet(check)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    row = {"kind": "oracle-whole", "group": "whole default check (float32, cpu)",
           "candidate": name, "baseline": "", "threads": 1,
           "caller_threads": torch.get_num_threads(), "examples": report.examples,
           "seconds": wall, "cpu_seconds": cpu, "target": WHOLE_CHECK_TARGET,
           "meets_target": wall <= WHOLE_CHECK_TARGET}
    ROWS.append(row)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(_quiet, args=(check,), rounds=1, iterations=1)


