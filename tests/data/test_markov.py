"""MarkovSource: exact stationary distribution and entropy rate, checked against samples."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refllm.data import MarkovSource
from refllm.data.markov import MIX, stationary_distribution_naive


@given(st.integers(2, 40), st.integers(0, 2**32), st.floats(0.05, 5.0))
def test_the_stationary_distribution_is_stationary(vocab_size, seed, concentration):
    src = MarkovSource(vocab_size, seed, concentration)
    assert np.allclose(src.P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert src.P.min() >= MIX / vocab_size * (1 - 1e-12)  # irreducible, nothing absorbing
    assert np.all(src.pi > 0) and math.isclose(src.pi.sum(), 1.0, abs_tol=1e-12)
    assert np.allclose(src.pi @ src.P, src.pi, rtol=0, atol=1e-12)
    assert 0 < src.entropy_rate_bits < math.log2(vocab_size)
    assert math.isclose(src.entropy_rate_nats, src.entropy_rate_bits * math.log(2))


def test_the_linear_solve_agrees_with_power_iteration():
    src = MarkovSource(16, 7, 0.5)
    assert np.allclose(src.pi, stationary_distribution_naive(src.P), rtol=0, atol=1e-12)


def test_a_worked_two_state_chain():
    # P = [[1-a, a], [b, 1-b]]: pi = (b, a) / (a + b); H = pi_0 h(a) + pi_1 h(b), h binary entropy
    src = MarkovSource(2, 0, 1.0)
    a, b = src.P[0, 1], src.P[1, 0]
    assert np.allclose(src.pi, [b / (a + b), a / (a + b)], rtol=1e-12)

    def h(p):
        return -p * math.log(p) - (1 - p) * math.log(1 - p)

    want = src.pi[0] * h(a) + src.pi[1] * h(b)
    assert math.isclose(src.entropy_rate_nats, want, rel_tol=1e-12)


@pytest.mark.parametrize("vocab_size, concentration", [(8, 0.5), (32, 0.2)])
def test_the_empirical_conditional_entropy_of_a_long_sample_approaches_the_rate(
        vocab_size, concentration):
    # 400k tokens: the plug-in estimate is biased low by ~V(V-1) / (2N) nats (1.2e-3 for V = 32)
    # and its spread over 8 sample seeds was 0.6e-3 (V = 8) and 2.3e-3 (V = 32) nats; 0.01 nats
    # is the bias plus about 4 standard deviations.
    src = MarkovSource(vocab_size, 1, concentration)
    x = src.sample(400_000, seed=0).astype(np.int64)
    pairs = np.bincount(x[:-1] * vocab_size + x[1:], minlength=vocab_size**2)
    joint = pairs.reshape(vocab_size, vocab_size) / (x.size - 1)
    cond = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-300)
    empirical = -np.sum(joint[joint > 0] * np.log(cond[joint > 0]))
    assert abs(empirical - src.entropy_rate_nats) < 0.01
    freq = np.bincount(x, minlength=vocab_size) / x.size
    assert np.allclose(freq, src.pi, atol=0.01)


def test_samples_are_deterministic_and_depend_on_both_seeds():
    src = MarkovSource(8, 0)
    a = src.sample(1000, seed=5)
    assert a.dtype == np.uint8 and np.array_equal(a, MarkovSource(8, 0).sample(1000, seed=5))
    assert not np.array_equal(a, src.sample(1000, seed=6))
    assert not np.array_equal(a, MarkovSource(8, 1).sample(1000, seed=5))
    assert np.array_equal(src.sample(100, seed=5), a[:100])
    assert MarkovSource(300, 0).sample(10).dtype == np.uint16


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="vocab_size must be >= 2, got 1"):
        MarkovSource(1)
    with pytest.raises(ValueError, match="concentration must lie in"):
        MarkovSource(8, 0, 0.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        MarkovSource(8, 0.5)
    with pytest.raises(ValueError, match="n must be >= 0"):
        MarkovSource(8).sample(-1)
