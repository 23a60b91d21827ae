"""LR schedules: linear warmup, cosine decay to a floor, and nanoGPT's warmup + cosine."""

import math

import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st

from refllm.ops.schedules import as_lr_lambda, cosine_decay, linear_warmup, warmup_cosine
from refllm.testing import assert_close

F64 = torch.float64
lrs = st.floats(1e-6, 10.0)
counts = st.integers(1, 200)


def close(a: float, b: float) -> None:
    assert_close(torch.tensor(a, dtype=F64), torch.tensor(b, dtype=F64))


def nanogpt_get_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """nanoGPT train.py's get_lr, verbatim but for the globals."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


@given(max_lr=lrs, warmup=counts)
def test_warmup_is_linear_in_the_step_and_reaches_max_lr_exactly(max_lr, warmup):
    values = [linear_warmup(t, max_lr=max_lr, warmup_steps=warmup) for t in range(warmup + 3)]
    for t in range(warmup):
        close(values[t], max_lr * (t + 1) / warmup)
    for t in range(1, warmup):  # equal increments
        close(values[t] - values[t - 1], max_lr / warmup)
    assert values[warmup - 1] == values[warmup] == values[-1] == max_lr


@example(max_lr=1.0, min_lr=0.0, decay=2)
@given(max_lr=lrs, min_lr=lrs, decay=counts)
def test_cosine_decay_starts_at_max_falls_monotonically_and_stays_on_the_floor(max_lr, min_lr,
                                                                               decay):
    assume(min_lr <= max_lr)
    values = [cosine_decay(t, max_lr=max_lr, min_lr=min_lr, decay_steps=decay)
              for t in range(decay + 5)]
    assert values[0] == max_lr
    assert values[decay] == min_lr and all(v == min_lr for v in values[decay:])
    assert all(a >= b for a, b in zip(values, values[1:]))
    if decay % 2 == 0:
        close(values[decay // 2], (max_lr + min_lr) / 2)


@given(max_lr=lrs, min_lr=lrs, warmup=st.integers(0, 50), extra=counts)
def test_warmup_cosine_is_nanogpts_get_lr(max_lr, min_lr, warmup, extra):
    assume(min_lr <= max_lr)
    decay = warmup + extra
    for t in range(decay + 3):
        got = warmup_cosine(t, max_lr=max_lr, min_lr=min_lr, warmup_steps=warmup,
                            decay_steps=decay)
        assert got == nanogpt_get_lr(t, max_lr, min_lr, warmup, decay)


@given(max_lr=lrs, min_lr=lrs, warmup=st.integers(1, 50), extra=counts)
def test_warmup_cosine_rises_linearly_peaks_then_falls_to_the_floor(max_lr, min_lr, warmup,
                                                                     extra):
    assume(min_lr <= max_lr)
    decay = warmup + extra
    kw = dict(max_lr=max_lr, min_lr=min_lr, warmup_steps=warmup, decay_steps=decay)
    values = [warmup_cosine(t, **kw) for t in range(decay + 3)]
    assert all(a <= b for a, b in zip(values[:warmup + 1], values[1:warmup + 1]))
    close(values[warmup], max_lr)  # nanoGPT's rounding: η_min + 1 · (η_max − η_min)
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1:]))
    assert values[decay] == min_lr == values[-1]


def test_the_worked_example():
    kw = dict(max_lr=1.0, min_lr=0.1, warmup_steps=1, decay_steps=3)
    close(warmup_cosine(0, **kw), 0.5)       # (0 + 1) / (1 + 1)
    close(warmup_cosine(1, **kw), 1.0)       # cos(0)
    close(warmup_cosine(2, **kw), 0.55)      # 0.1 + ½ · 0.9 · (1 + cos(π/2))
    close(warmup_cosine(3, **kw), 0.1)       # cos(π)


def test_the_lr_lambda_adapter_divides_by_the_base_lr():
    f = as_lr_lambda(cosine_decay, base_lr=2.0, max_lr=2.0, min_lr=0.0, decay_steps=4)
    close(f(0), 1.0)
    close(f(4), 0.0)


@pytest.mark.parametrize("call, error, match", [
    (lambda: linear_warmup(-1, max_lr=1.0, warmup_steps=2), ValueError, "step must be >= 0"),
    (lambda: linear_warmup(1.5, max_lr=1.0, warmup_steps=2), TypeError, "step must be an int"),
    (lambda: linear_warmup(0, max_lr=-1.0, warmup_steps=2), ValueError,
     r"max_lr must lie in \[0.0, inf\], got -1.0"),
    (lambda: linear_warmup(0, max_lr=1.0, warmup_steps=-2), ValueError,
     "warmup_steps must be >= 0, got -2"),
    (lambda: cosine_decay(0, max_lr=1.0, min_lr=2.0, decay_steps=2), ValueError,
     "min_lr must be <= max_lr"),
    (lambda: cosine_decay(0, max_lr=1.0, min_lr=0.0, decay_steps=0), ValueError,
     "decay_steps must be >= 1, got 0"),
    (lambda: cosine_decay(0, max_lr=float("nan"), min_lr=0.0, decay_steps=2), ValueError,
     "max_lr must be finite, got nan"),
    (lambda: warmup_cosine(0, max_lr=1.0, min_lr=0.0, warmup_steps=5, decay_steps=5), ValueError,
     "decay_steps must be >= 6, got 5"),
    (lambda: as_lr_lambda(linear_warmup, base_lr=0.0, max_lr=1.0, warmup_steps=1), ValueError,
     r"base_lr must lie in \(0.0, inf\], got 0.0"),
    (lambda: as_lr_lambda(linear_warmup, base_lr=1.0, max_lr=1.0, warmup_steps=-1), ValueError,
     "warmup_steps must be >= 0"),
])
def test_bad_arguments_are_errors_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
