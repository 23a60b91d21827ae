"""Scaling laws: the equations, naive (a transcription) beside the numerically safe form.

Saturating power law (Kaplan et al. 2020 fit the pure form; the constant is Hoffmann et al.'s E)::

    L(x) = E + A * x**-alpha            x = N (parameters), D (tokens) or C (FLOPs)
    L(x) =     A * x**-alpha            the pure power law (E = 0): a line in log-log

Chinchilla, Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", §3.3, Eq. (2)::

    L(N, D) = E + A / N**alpha + B / D**beta

fitted (Approach 3, their Appendix D.2) in log-sum-exp form, e = log E, a = log A, b = log B::

    log L = LSE(a - alpha log N, b - beta log D, e)

Compute-optimal allocation under C ~ 6 N D (Hoffmann et al. 2022, §3.3, Eq. (4))::

    N_opt(C) = G (C/6)**a_exp,   D_opt(C) = G**-1 (C/6)**b_exp,
    a_exp = beta / (alpha + beta),   b_exp = alpha / (alpha + beta),
    G = (alpha A / (beta B)) ** (1 / (alpha + beta))

Derivation: put D = C/(6N) into Eq. (2); d/dN (A N**-alpha + B (C/6)**-beta N**beta) = 0 gives
alpha A N**-alpha = beta B (C/6)**-beta N**beta, so
N**(alpha+beta) = (alpha A / (beta B)) (C/6)**beta.
Notation: the paper's exponents a, b of the allocation are our ``a_exp``, ``b_exp`` (our ``a``,
``b`` are the logs of A and B, as in the paper's Appendix D.2).

>>> float(saturating_power_law(100.0, E=1.0, A=10.0, alpha=0.5))
2.0
>>> n, d = chinchilla_allocation(6e4, A=1.0, B=1.0, alpha=0.5, beta=0.5)
>>> float(n), float(d)
(100.0, 100.0)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def saturating_power_law(x: ArrayLike, E: float, A: float, alpha: float) -> np.ndarray:
    """``E + A * x**-alpha`` (naive transcription; float64)."""
    return E + A * np.asarray(x, dtype=np.float64) ** -alpha


def power_law(x: ArrayLike, A: float, alpha: float) -> np.ndarray:
    """``A * x**-alpha``."""
    return A * np.asarray(x, dtype=np.float64) ** -alpha


def chinchilla_loss(n: ArrayLike, d: ArrayLike, E: float, A: float, B: float, alpha: float,
                    beta: float) -> np.ndarray:
    """``E + A / N**alpha + B / D**beta`` (Hoffmann et al. 2022, Eq. (2)); naive transcription."""
    n, d = np.asarray(n, dtype=np.float64), np.asarray(d, dtype=np.float64)
    return E + A / n**alpha + B / d**beta


def chinchilla_log_loss(log_n: np.ndarray, log_d: np.ndarray, e: np.ndarray, a: np.ndarray,
                        b: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``LSE(a - alpha log N, b - beta log D, e)``: log of Eq. (2), safe for any magnitude.

    Parameters broadcast against the data (a leading axis of parameter sets is allowed).
    """
    t1, t2 = a - alpha * log_n, b - beta * log_d
    t3 = np.broadcast_to(e, np.broadcast(t1, t2).shape)
    top = np.maximum(np.maximum(t1, t2), t3)
    return top + np.log(np.exp(t1 - top) + np.exp(t2 - top) + np.exp(t3 - top))


def chinchilla_allocation(c: ArrayLike, A: float, B: float, alpha: float,
                          beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(N_opt, D_opt)`` minimising Eq. (2) at compute ``C = 6 N D`` (Hoffmann et al., Eq. (4))."""
    c6 = np.asarray(c, dtype=np.float64) / 6.0
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return g * c6 ** (beta / (alpha + beta)), c6 ** (alpha / (alpha + beta)) / g
