"""The kernel-sized tier: one long axis in a measured share of cases, at boundary lengths, within
the element budget; the fixed default calls include kernel-sized ones."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from refllm.testing.cross_entropy.strategy import cross_entropy_default_calls
from refllm.testing.engine.search import hermetic_generation
from refllm.testing.engine.sizes import DEFAULT_BUDGET, LONG_LENGTHS
from refllm.testing.mse.strategy import mse_default_calls
from refllm.testing.multihead.strategy import multihead_default_calls
from refllm.testing.optimizer.strategy import optimizer_default_problems
from refllm.testing.sdpa.strategy import HEAD_DIM_LENGTHS, sdpa_default_calls
from refllm.testing.strategies import (
    cross_entropy_cases,
    mse_cases,
    multihead_cases,
    optimizer_problems,
    sdpa_cases,
)

DRAWS = {"sdpa": 200, "cross-entropy": 200, "mse": 200, "multihead": 120,
         "optimizer": 120}


def draw_many(strategy: st.SearchStrategy, n: int, at: int = 0) -> list[Any]:
    """``n`` examples of ``strategy`` as a check draws them (generate phase only)."""
    out: list[Any] = []

    @seed(at)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x: Any) -> None:
        out.append(x)

    with hermetic_generation():
        collect()
    return out


def sdpa_tensors(case: Any) -> list[int]:
    q, k, v = case.args
    mask = case.kwargs.get("attn_mask")
    scores = math.prod(q.shape[:-1]) * k.shape[-2]
    return [q.numel(), k.numel(), v.numel(), scores] + ([mask.numel()] if mask is not None else [])


def sdpa_long(case: Any) -> list[int]:
    """The long sequence lengths of a case."""
    q, k, _ = case.args
    return [n for n in (q.shape[-2], k.shape[-2]) if n > 6]


def sdpa_any_long(case: Any) -> list[int]:
    """Every long axis: t or s, the head dim, or the number of (batch x head) slices (short
    axes give at most 3 * 3 * 6 = 54 slices)."""
    q = case.args[0]
    slices = math.prod(q.shape[:-2])
    return sdpa_long(case) + ([q.shape[-1]] if q.shape[-1] > 6 else []) + (
        [slices] if slices > 54 else [])


def mha_tensors(case: Any) -> list[int]:
    q, k, _ = case.forward.args
    h = case.init_kwargs["num_heads"]
    b = 1 if q.dim() == 2 else q.shape[1 - case.init_kwargs["batch_first"]]
    return [q.numel(), k.numel(), b * h * q.shape[-3 + (q.dim() == 2)] * k.shape[-3 + (
        k.dim() == 2)]]


def mha_long(case: Any) -> list[int]:
    q, k, _ = case.forward.args
    seq = 0 if q.dim() == 2 or not case.init_kwargs["batch_first"] else 1
    return [n for n in (q.shape[seq], k.shape[seq]) if n > 6]


def ce_long(case: Any) -> list[int]:
    logits = case.args[0]
    return [n for n in logits.shape[:2] if n > 6]


def mse_long(case: Any) -> list[int]:
    return [n for n in case.args[0].shape if n > 6]


def opt_long(problem: Any) -> list[int]:
    return [p.numel() for p in problem.params if p.numel() > 6]


STRATEGIES: dict[str, tuple[Callable[..., st.SearchStrategy], Callable[[Any], list[int]],
                            Callable[[Any], list[int]]]] = {
    "sdpa": (sdpa_cases, sdpa_tensors, sdpa_any_long),
    "cross-entropy": (lambda **kw: cross_entropy_cases(write_defaults=False, **kw),
                      lambda c: [c.args[0].numel()], ce_long),
    "mse": (lambda **kw: mse_cases(write_defaults=False, **kw),
            lambda c: [c.args[0].numel()], mse_long),
    "multihead": (multihead_cases, mha_tensors, mha_long),
    "optimizer": (lambda **kw: optimizer_problems(like="adamw", **kw),
                  lambda p: [x.numel() for x in p.params], opt_long),
}


@pytest.fixture(scope="module", params=list(STRATEGIES))
def drawn(request):
    # three runs: Hypothesis repeats and mutates a run's drawn keys, so one run is clumpy
    make, sizes, long = STRATEGIES[request.param]
    n = DRAWS[request.param]
    cases = [c for at in (0, 1, 2) for c in draw_many(make(), n, at=at)]
    return request.param, cases, sizes, long


def test_about_one_case_in_five_has_a_long_axis_of_a_boundary_length(drawn):
    name, cases, _, long = drawn
    lengths = [long(c) for c in cases]
    share = sum(bool(n) for n in lengths) / len(cases)
    assert 0.12 <= share <= 0.35, (name, share)
    seen = {n for ns in lengths for n in ns}
    if name == "sdpa":  # the sequence axes at boundary lengths (the others: test below)
        seen = {n for c in cases for n in sdpa_long(c)}
    if name == "mse":  # a long axis of an MSE case is one of the boundary lengths
        assert seen & set(LONG_LENGTHS) and max(seen) > 512, (name, sorted(seen))
    elif name != "optimizer":
        assert seen <= set(LONG_LENGTHS), (name, sorted(seen - set(LONG_LENGTHS)))
        assert len(seen) >= 3 and max(seen) > 256, (name, sorted(seen))
    else:
        assert seen <= set(LONG_LENGTHS) and max(seen) >= 1000, sorted(seen)


def test_a_long_case_has_one_long_axis_and_keeps_the_budget(drawn):
    name, cases, sizes, long = drawn
    assert max(max(sizes(c)) for c in cases) <= DEFAULT_BUDGET
    for c in cases:
        ns = long(c)
        # one long axis (attention's t == s self-attention counts as one: the same length)
        assert len(set(ns)) <= 1, (name, ns)


def test_sdpa_draws_many_slices_and_wide_heads_within_the_budget():
    """The "bh" tier passes 64, 256 and 65535 (batch x head) slices, each group as likely; the
    "d" tier draws head dims from 96 to 256, past 128 most of the time, with e = d."""
    slices, dims = [], []
    # three runs: Hypothesis repeats a run's drawn keys, so one run of 600 is clumpier
    for case in (c for at in (2, 3, 4) for c in draw_many(sdpa_cases(), 250, at=at)):
        q, k, v = case.args
        n = math.prod(q.shape[:-2])
        if n > 54:
            slices.append(n)
        if q.shape[-1] > 6:
            dims.append(q.shape[-1])
            assert v.shape[-1] == q.shape[-1]
        assert max(sdpa_tensors(case)) <= DEFAULT_BUDGET
    assert min(slices) >= 63 and sum(n > 256 for n in slices) >= 3, sorted(slices)
    assert sum(n > 65535 for n in slices) >= 3, sorted(slices)
    assert set(dims) <= set(HEAD_DIM_LENGTHS) and sum(d > 128 for d in dims) >= 5, sorted(dims)


@pytest.mark.parametrize("name", ["sdpa", "multihead"])
def test_attention_draws_keys_queries_and_both_long(name):
    make, _, long = STRATEGIES[name]
    kinds = set()
    # the sequence axes are three of sdpa's five long axes: three runs (see above)
    runs = (1, 2, 3) if name == "sdpa" else (1,)
    for case in (c for at in runs for c in draw_many(make(), DRAWS[name], at=at)):
        args = case.args if name == "sdpa" else case.forward.args
        seq = -2 if name == "sdpa" else (0 if args[0].dim() == 2 or not case.init_kwargs[
            "batch_first"] else 1)
        t, s = args[0].shape[seq], args[1].shape[seq]
        if (sdpa_long if name == "sdpa" else long)(case):
            kinds.add("ts" if t == s else "t" if t > 6 else "s")
    assert kinds == {"t", "s", "ts"}


def test_a_small_budget_caps_every_tensor():
    for case in draw_many(sdpa_cases(budget=4096), 150):
        assert max(sdpa_tensors(case)) <= 4096
    for case in draw_many(cross_entropy_cases(budget=500), 150):
        assert case.args[0].numel() <= 500


def test_a_large_max_size_no_longer_draws_hundreds_of_heads_of_hundreds_of_widths():
    # one max_size=200 once drew 200 heads of width 200 (4.9 s, 2.5 GB per example)
    for case in draw_many(sdpa_cases(max_size=200), 60):
        assert max(sdpa_tensors(case)) <= DEFAULT_BUDGET


def test_long_axes_false_draws_only_small_axes():
    for case in draw_many(sdpa_cases(long_axes=False), 150):
        assert not sdpa_long(case)


def test_the_fixed_default_calls_include_kernel_sized_ones():
    long_sdpa = [c for c in sdpa_default_calls() if max(c.args[1].shape[-2], 1) > 256]
    assert {tuple(sorted(c.kwargs)) for c in long_sdpa} == {(), ("is_causal",)}
    assert not [c for c in sdpa_default_calls(long=False) if c.args[1].shape[-2] > 6]
    (ce,) = [c for c in cross_entropy_default_calls() if c.args[0].numel() > 36]
    assert ce.kwargs == {} and ce.args[0].shape[0] > 32 and ce.args[0].shape[1] > 256
    (mse,) = [c for c in mse_default_calls() if c.args[0].numel() > 30]
    assert mse.args[0].numel() > 2048 and mse.args[0].numel() % 1024
    mha = [c for c in multihead_default_calls() if c.forward.args[0].shape[0] > 6]
    assert [sorted(c.forward.kwargs) for c in mha] == [[], ["attn_mask", "is_causal"]]
    problems = optimizer_default_problems(like="adamw")
    assert max(p.numel() for p in problems[-1].params) % 16 and max(
        p.numel() for p in problems[-1].params) > 1024


def test_the_kernel_sized_default_calls_respect_a_small_budget():
    assert max(max(sdpa_tensors(c)) for c in sdpa_default_calls(budget=20_000)) <= 20_000
    assert max(c.args[0].numel() for c in cross_entropy_default_calls(budget=1000)) <= 1000
    assert max(p.numel() for pr in optimizer_default_problems(budget=100) for p in pr.params) \
        <= 100


def test_a_bad_budget_or_range_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="budget"):
        draw_many(sdpa_cases(budget=0), 1)
    with pytest.raises(ValueError, match="unknown axis 'x'"):
        draw_many(sdpa_cases(sizes={"x": (1, 2)}), 1)
    with pytest.raises(ValueError, match=r"sizes\['t'\]"):
        draw_many(sdpa_cases(sizes={"t": (5, 2)}), 1)
    with pytest.raises(TypeError, match=r"sizes\['classes'\]"):
        draw_many(cross_entropy_cases(sizes={"classes": (1.5, 2)}), 1)


def test_per_axis_ranges_replace_max_size():
    cases = draw_many(sdpa_cases(sizes={"h": (2, 2), "d": (8, 8), "s": (1, 300)},
                                 long_axes=True), 150)
    for c in cases:
        q, k, v = c.args
        assert q.shape[-1] == 8 and k.shape[-2] <= 300
        if q.dim() >= 3 and q.shape[-3] != 1:  # the head axis, when drawn, holds 2 heads
            assert q.shape[-3] == 2 or c.kwargs.get("enable_gqa")
    assert torch.tensor([c.args[1].shape[-2] for c in cases]).max() > 16  # the long tier


@pytest.mark.parametrize(("needs", "shortest"), [
    (lambda q, k: k.shape[-2] > 16, lambda q, k: k.shape[-2] == 17),
    (lambda q, k: q.shape[-1] > 128, lambda q, k: q.shape[-1] == 129),
    # 65 slices as b x h with h from a keyed pick of (65, 1, 2, 4, 8): at most 9 x 8 = 72
    (lambda q, k: math.prod(q.shape[:-2]) > 64, lambda q, k: math.prod(q.shape[:-2]) <= 72),
], ids=["keys past 16", "head dim past 128", "slices past 64"])
def test_shrinking_walks_a_long_axis_down_to_the_shortest_length_that_still_fails(needs,
                                                                                  shortest):
    """A keyed pick alone does not shrink (any smaller key picks another length at random): the
    shrink knob of `LongRng` lets Hypothesis walk the length down. A bug past a tile of 16 is
    reported at 17 keys, not at the 4,097 it was found with."""
    from hypothesis import find

    with hermetic_generation():
        case = find(sdpa_cases(), lambda c: needs(*c.args[:2]),
                    settings=settings(database=None, max_examples=2000, derandomize=True,
                                      suppress_health_check=list(HealthCheck)))
    assert shortest(*case.args[:2]), [tuple(x.shape) for x in case.args]
