"""What a check costs: examples per second of each oracle check on PyTorch's own ops (CPU).

Each benchmark runs one check on PyTorch's op, float32, a fixed number of examples and a fixed
seed (so every round draws the same examples), 2 rounds; examples/s goes to ``extra_info`` and
a table is printed at the end. The check passing is asserted first (benchmarks check before
they time).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from refllm.testing import (
    check_cross_entropy,
    check_mse,
    check_multihead_attention,
    check_optimizer,
    check_sdpa,
)

EXAMPLES = 100
ROWS: dict[str, float] = {}

CHECKS = {
    "check_sdpa(F.scaled_dot_product_attention)":
        lambda: check_sdpa(F.scaled_dot_product_attention, examples=EXAMPLES, seed=0),
    "check_cross_entropy(F.cross_entropy)":
        lambda: check_cross_entropy(F.cross_entropy, examples=EXAMPLES, seed=0),
    "check_mse(F.mse_loss)": lambda: check_mse(F.mse_loss, examples=EXAMPLES, seed=0),
    "check_optimizer(torch.optim.AdamW)":
        lambda: check_optimizer(torch.optim.AdamW, like="adamw", examples=EXAMPLES, seed=0),
    "check_optimizer(torch.optim.SGD)":
        lambda: check_optimizer(torch.optim.SGD, like="sgd", examples=EXAMPLES, seed=0),
    "check_multihead_attention(nn.MultiheadAttention)":
        lambda: check_multihead_attention(torch.nn.MultiheadAttention, examples=EXAMPLES,
                                          seed=0),
}


def _quiet(check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check()


@pytest.mark.parametrize("name", list(CHECKS))
def test_examples_per_second_of_a_check(benchmark, name):
    check = CHECKS[name]
    report = _quiet(check)
    assert report.passed and report.examples == EXAMPLES, str(report)
    benchmark.group = "oracle checks (float32, cpu)"
    benchmark.extra_info.update({"label": name, "examples": EXAMPLES,
                                 "threads": torch.get_num_threads()})
    benchmark.pedantic(_quiet, args=(check,), rounds=2, iterations=1)
    rate = EXAMPLES / benchmark.stats.stats.median
    benchmark.extra_info["examples_per_s"] = rate
    ROWS[name] = rate


def teardown_module(module):
    if ROWS:
        print("\n\nrefllm oracle checks on PyTorch's own ops, float32, cpu, "
              f"{torch.get_num_threads()} threads, {EXAMPLES} examples each")
        print(f"  {'check':<52} {'examples/s':>10}  {'s per 100 examples':>18}")
        for name, rate in ROWS.items():
            print(f"  {name:<52} {rate:>10.1f}  {100 / rate:>18.2f}")
