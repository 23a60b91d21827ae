"""Checks run at one intra-op thread by default, restore the caller's count, and take ``threads=``;
the optimizer problems draw their values from a seed and keep the edge-case odds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from refllm.testing import OracleFailure, check_mse, check_optimizer, check_sdpa
from refllm.testing.engine.search import DEFAULT_THREADS, intra_op_threads
from refllm.testing.optimizer.strategy import ZERO_ODDS, optimizer_problems


@pytest.fixture
def three_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def _recording(seen: list[int]):
    def sdpa(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return F.scaled_dot_product_attention(*args, **kwargs)
    return sdpa


def test_a_check_runs_its_target_at_one_thread_and_restores_the_callers_count(three_threads):
    seen: list[int] = []
    check_sdpa(_recording(seen), examples=5, seed=0)
    assert DEFAULT_THREADS == 1 and seen and set(seen) == {1}
    assert torch.get_num_threads() == three_threads


def test_threads_asks_for_another_count_and_none_leaves_the_callers(three_threads):
    seen: list[int] = []
    check_sdpa(_recording(seen), examples=3, seed=0, threads=2)
    assert set(seen) == {2}
    seen.clear()
    check_sdpa(_recording(seen), examples=3, seed=0, threads=None)
    assert set(seen) == {three_threads}
    assert torch.get_num_threads() == three_threads


def test_the_count_is_restored_when_the_check_raises(three_threads):
    with pytest.raises(OracleFailure):
        check_mse(lambda a, b, **kw: F.mse_loss(a, b, **kw) * 2, examples=5, seed=0)
    assert torch.get_num_threads() == three_threads
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("the user's code failed")
    assert torch.get_num_threads() == three_threads


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                        (True, TypeError)])
def test_a_bad_thread_count_is_refused_naming_the_argument(bad, error):
    with pytest.raises(error, match="threads"):
        check_optimizer(torch.optim.SGD, like="sgd", examples=1, seed=0, threads=bad)


def test_optimizer_values_come_from_the_drawn_seed_with_the_edge_case_odds():
    problems = []

    @settings(max_examples=40, database=None)
    @given(optimizer_problems(like="adamw"), st.just(None))
    def collect(problem, _):
        problems.append(problem)

    collect()
    tensors = [t for p in problems for t in p.params]
    tensors += [g for p in problems for row in p.grads for g in row if g is not None]
    values = torch.cat([t.reshape(-1) for t in tensors])
    magnitude = values.abs()
    zeros = float((magnitude == 0).double().mean())
    assert 0.5 * ZERO_ODDS < zeros < 2 * ZERO_ODDS
    nonzero = magnitude[magnitude > 0]
    assert float(nonzero.min()) >= 1e-3 and float(nonzero.max()) <= 4.0
    assert float((nonzero < 0.01).double().mean()) > 0.1  # small values are common...
    assert float((nonzero > 1.0).double().mean()) > 0.2   # ...and so are large ones
    assert (values < 0).any() and (values > 0).any()
    assert any(g is None for p in problems for row in p.grads for g in row)
