"""What a check costs: examples per second of each oracle check on PyTorch's own ops (CPU).

Each benchmark runs one check on PyTorch's op, float32, a fixed number of examples and a fixed
seed (so every round draws the same examples), at the checks' default of one intra-op thread and,
for SDPA and AdamW, also at two (``threads=2``), to show which is faster. The check passing is
asserted first (benchmarks check before they time). Examples/s (wall clock, and CPU time from
``time.process_time``) go to ``extra_info`` and to the ratio table of ``conftest.py``, with the
targets of issue 13: ``check_sdpa`` >= 60 examples/s, ``check_optimizer(AdamW)`` >= 20.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from benchutil import ROWS

from refllm.testing import (
    check_cross_entropy,
    check_mse,
    check_multihead_attention,
    check_optimizer,
    check_sdpa,
)

EXAMPLES = 100
TARGETS = {"check_sdpa(F.scaled_dot_product_attention)": 60.0,
           "check_optimizer(torch.optim.AdamW)": 20.0}  # examples/s

CHECKS = {
    "check_sdpa(F.scaled_dot_product_attention)":
        lambda **kw: check_sdpa(F.scaled_dot_product_attention, examples=EXAMPLES, seed=0,
                                **kw),
    "check_cross_entropy(F.cross_entropy)":
        lambda **kw: check_cross_entropy(F.cross_entropy, examples=EXAMPLES, seed=0, **kw),
    "check_mse(F.mse_loss)": lambda **kw: check_mse(F.mse_loss, examples=EXAMPLES, seed=0,
                                            **kw),
    "check_optimizer(torch.optim.AdamW)":
        lambda **kw: check_optimizer(torch.optim.AdamW, like="adamw", examples=EXAMPLES,
                                     seed=0, **kw),
    "check_optimizer(torch.optim.SGD)":
        lambda **kw: check_optimizer(torch.optim.SGD, like="sgd", examples=EXAMPLES, seed=0,
                                     **kw),
    "check_multihead_attention(nn.MultiheadAttention)":
        lambda **kw: check_multihead_attention(torch.nn.MultiheadAttention,
                                              examples=EXAMPLES, seed=0, **kw),
}


def _quiet(check, threads):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check(threads=threads)


CASES = [(name, 1) for name in CHECKS] + [(name, 2) for name in TARGETS]


@pytest.mark.parametrize("name, threads", CASES)
def test_examples_per_second_of_a_check(benchmark, name, threads):
    check = CHECKS[name]
    report = _quiet(check, threads)  # also the warm-up
    assert report.passed and report.examples == EXAMPLES, str(report)
    wall, cpu = time.perf_counter(), time.process_time()
    _quiet(check, threads)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    target = TARGETS.get(name) if threads == 1 else None
    row = {"kind": "oracle", "group": "oracle checks (float32, cpu)", "candidate": name,
           "baseline": "", "threads": threads, "caller_threads": torch.get_num_threads(),
           "examples": EXAMPLES, "examples_per_s": EXAMPLES / wall,
           "examples_per_cpu_s": EXAMPLES / cpu, "target": target,
           "meets_target": None if target is None else EXAMPLES / wall >= target}
    ROWS.append(row)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(_quiet, args=(check, threads), rounds=1, iterations=1)


