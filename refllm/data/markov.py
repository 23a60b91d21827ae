"""A synthetic source whose entropy rate is known exactly: a random first-order Markov chain.

From ``seed``, draw a transition matrix P over V = ``vocab_size`` symbols, each row
(1 - m) * Dirichlet(alpha) + m / V with alpha = ``concentration`` and m = ``MIX`` = 0.01 (alpha < 1
gives peaked rows, so the rate is well below log V; the uniform share m keeps every P_ij >= m / V,
so the chain is irreducible and aperiodic and no state is nearly absorbing, however small alpha).
The stationary distribution pi solves pi P = pi, sum_i pi_i = 1 (one linear system; unique and
positive since every P_ij > 0). The entropy rate (Cover & Thomas 2006, "Elements of
Information Theory", §4.2, Theorem 4.2.4) is

    H = - sum_i pi_i sum_j P_ij log P_ij          (nats with ln, bits with log2)

the smallest average cross-entropy per token that any predictor can reach on this source, so a
language model trained on it can be judged against a known floor. ``sample(n, seed)`` starts
from pi (the sample is stationary from its first token) and is a function of (the chain's
``seed``, the sample's ``seed``) only.

>>> src = MarkovSource(vocab_size=4, seed=0)
>>> bool(0 < src.entropy_rate_bits < 2)
True
>>> src.sample(5, seed=1).tolist() == src.sample(5, seed=1).tolist()
True
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any

import numpy as np

from refllm._validation import require_int, require_real

MIX = 0.01  # the uniform share of every row


def stationary_distribution(P: np.ndarray) -> np.ndarray:
    """pi with pi P = pi and sum(pi) = 1, by solving (P^T - I) pi = 0 with one row for the sum."""
    V = P.shape[0]
    A = P.T - np.eye(V)
    A[-1, :] = 1.0  # replace one (redundant) balance equation by sum_i pi_i = 1
    b = np.zeros(V)
    b[-1] = 1.0
    return np.linalg.solve(A, b)


def stationary_distribution_naive(P: np.ndarray, steps: int = 10_000) -> np.ndarray:
    """pi by power iteration from the uniform distribution (a check of the linear solve)."""
    pi = np.full(P.shape[0], 1.0 / P.shape[0])
    for _ in range(steps):
        pi = pi @ P
    return pi


def entropy_rate(P: np.ndarray, pi: np.ndarray) -> float:
    """H = -sum_i pi_i sum_j P_ij ln P_ij in nats (0 ln 0 = 0)."""
    logs = np.log(np.where(P > 0, P, 1.0))
    return float(-(pi[:, None] * P * logs).sum())


class MarkovSource:
    """A random first-order Markov chain with exact stationary distribution and entropy rate."""

    def __init__(self, vocab_size: int = 8, seed: int = 0, concentration: float = 0.5):
        self.vocab_size = require_int("vocab_size", vocab_size, low=2)
        self.seed = require_int("seed", seed, low=0)
        self.concentration = require_real("concentration", concentration, low=1e-3)
        rng = np.random.default_rng([self.seed, 0])
        D = rng.dirichlet(np.full(self.vocab_size, self.concentration), size=self.vocab_size)
        self.P = (1 - MIX) * D + MIX / self.vocab_size
        self.pi = stationary_distribution(self.P)
        self.entropy_rate_nats = entropy_rate(self.P, self.pi)
        self.entropy_rate_bits = self.entropy_rate_nats / math.log(2)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` symbols of the chain (uint8/16/32 by vocab size), the first drawn from pi."""
        n = require_int("n", n, low=0)
        seed = require_int("seed", seed, low=0)
        rng = np.random.default_rng([self.seed, 1, seed])
        u = rng.random(n)
        cum = np.cumsum(self.P, axis=1)
        cum[:, -1] = 1.0 + 1e-12  # guard against a last cumulative value just below 1
        out = np.empty(n, dtype=np.int64)
        if n:
            state = min(int(np.searchsorted(np.cumsum(self.pi), u[0], side="right")),
                        self.vocab_size - 1)
            out[0] = state
            rows = cum.tolist()
            for i in range(1, n):
                state = bisect_right(rows[state], u[i])
                out[i] = state
        return out.astype(token_dtype(self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        """The chain's parameters and its exact rates, for records."""
        return {"kind": "markov", "vocab_size": self.vocab_size, "seed": self.seed,
                "concentration": self.concentration,
                "entropy_rate_nats": self.entropy_rate_nats,
                "entropy_rate_bits": self.entropy_rate_bits,
                "stationary": self.pi.tolist()}

    def __repr__(self) -> str:
        return (f"MarkovSource(vocab_size={self.vocab_size}, seed={self.seed}, "
                f"concentration={self.concentration})")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids < ``vocab_size``: uint8, uint16 or uint32."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)
