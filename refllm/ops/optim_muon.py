"""Muon (momentum orthogonalised by Newton–Schulz), as a pure update rule for 2-D parameters.

Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks",
https://kellerjordan.github.io/posts/muon/), in PyTorch's form (``torch.optim.Muon``, torch 2.13;
g_t the gradient of an m × n matrix parameter θ)::

    B_t ← μ B_{t−1} + (1 − μ) g_t                   (an exponential moving average; B_0 = 0)
    B̃_t ← (1 − μ) g_t + μ B_t  if nesterov, else B_t
    O_t ← NS_k(B̃_t)                                 (≈ the orthogonal polar factor U Vᵀ of B̃_t)
    θ_{t−1} ← (1 − γ λ) θ_{t−1}                     (decoupled weight decay, with the unadjusted γ)
    θ_t ← θ_{t−1} − γ' O_t,    γ' = γ · max(1, m/n)^½          (adjust_lr_fn "original")
                               γ' = γ · 0.2 · √max(m, n)       (adjust_lr_fn "match_rms_adamw")

NS_k is k steps of the quintic Newton–Schulz iteration, on the short side (X ← Xᵀ when m > n)::

    X_0 = B̃ / max(‖B̃‖_F, ε)
    A = X Xᵀ;   X ← a X + (b A + c A²) X          (coefficients (a, b, c), k = ns_steps)

For B̃ = U Σ Vᵀ each step maps every singular value s ↦ a s + b s³ + c s⁵ and keeps U and V, so
NS_k(B̃) = U p^k(Σ/‖B̃‖_F) Vᵀ. The default coefficients (3.4445, −4.7750, 2.0315) maximise the slope
at 0 and do not converge to 1: for s = σ/‖B̃‖_F in [1/500, 1] five steps give p⁵(s) in
[0.68, 1.21] (measured on a fine grid: min 0.6818, max 1.2024; p⁵(1) = 0.696), and for smaller s
less (s = 10⁻³ gives 0.47). The exact target is the orthogonal polar factor U Vᵀ, whose singular
values are all 1 (Higham 2008, "Functions of Matrices", §8.1 and Chapter 8's Newton–Schulz).

Second source for the learning-rate conventions: Liu et al. 2025, "Muon is Scalable for LLM
Training" (arXiv:2502.16982), §2.2, Eq. 4 ("match_rms_adamw": 0.2 √max(A, B) matches AdamW's RMS).

Notation map (PyTorch → Jordan et al.): ``lr`` γ is η; ``momentum`` μ is μ (their buffer is the
plain sum B ← μB + g, PyTorch's the average, a rescaling by (1 − μ) that orthogonalisation undoes
up to ε); ``ns_coefficients`` (a, b, c) and ``ns_steps`` k as in their code; ``eps`` ε floors the
Frobenius norm; ``weight_decay`` λ is PyTorch's (decoupled, AdamW-style, scaled by γ); state key
``momentum_buffer`` B. There is no step counter and no ``maximize``.

Deviations and conventions:

* The fast rule is torch's for-loop rule operation for operation, which runs Newton–Schulz in
  bfloat16 (``grad.bfloat16()``); ``ns_dtype`` (a refllm extension, default ``torch.bfloat16``)
  chooses that dtype, so ``ns_dtype=torch.float64`` gives the float64 iteration.
* The naive rule's default reference is the exact orthogonal polar factor U Vᵀ from a float64 SVD
  (``orthogonalize="svd"``), with singular values at most max(m, n) · ε_f64 · σ_max treated as
  zero (mapped to 0, as Newton–Schulz maps them; the polar factor of a rank-deficient matrix is
  otherwise not unique). Newton–Schulz only approximates it (the band above), so the naive and fast
  rules then differ by design. ``orthogonalize="newton_schulz"`` gives the iteration written as
  explicit loops over matrix entries in Python floats, which the fast rule with
  ``ns_dtype=torch.float64`` reproduces to float64 rounding.
* Weight decay multiplies by 1 − γλ with the unadjusted γ, as torch does (the adjustment only
  scales the orthogonalised step).
* One place where the fast rule is not torch's: for bfloat16 parameters with ``nesterov=False``,
  torch 2.13's ``grad.bfloat16()`` returns the momentum buffer itself and its in-place division by
  ‖B‖_F overwrites the buffer with B/‖B‖_F (so the next step's momentum is wrong). Here the
  normalisation is out of place and the buffer keeps B_t; every other dtype and setting is
  bit-equal to torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from refllm._validation import describe, require_choice, require_int, require_real
from refllm.ops.optim_sgd import (
    Params,
    State,
    _elements,
    _tensor,
    check_lists,
    check_number,
    pure,
)

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def check_muon_hyper(params: Params, *, lr: float, weight_decay: float, momentum: float,
                     ns_coefficients: tuple[float, float, float], eps: float, ns_steps: int,
                     adjust_lr_fn: str | None) -> None:
    """torch.optim.Muon's checks (and those of its Newton–Schulz), each naming its argument."""
    check_number("lr", lr)
    check_number("weight_decay", weight_decay)
    check_number("momentum", momentum)
    check_number("eps", eps)
    require_int("ns_steps", ns_steps, low=0)
    if ns_steps >= 100:
        raise ValueError(f"ns_steps must be < 100, got {ns_steps!r}")
    if not isinstance(ns_coefficients, (tuple, list)) or len(ns_coefficients) != 3:
        raise ValueError(f"ns_coefficients must be a triple (a, b, c), got {ns_coefficients!r}")
    for name, x in zip("abc", ns_coefficients):
        require_real(f"ns_coefficients ({name})", x)
    require_choice("adjust_lr_fn", adjust_lr_fn, ADJUST_LR_FNS)
    for i, p in enumerate(params):
        if p.ndim != 2:
            raise ValueError(f"params[{i}] must be a 2-D matrix (Muon is for hidden-layer "
                             f"weights), got shape {tuple(p.shape)} ({describe(p)})")


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: Sequence[int]) -> float:
    """γ' = γ · max(1, m/n)^½ ("original", the default) or γ · 0.2 · √max(m, n)
    ("match_rms_adamw")."""
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return lr * (0.2 * math.sqrt(max(rows, cols)))
    return lr * math.sqrt(max(1, rows / cols))


# --- orthogonalisation --------------------------------------------------------------------------

def _matmul(x: list[list[float]], y: list[list[float]]) -> list[list[float]]:
    return [[sum(x[i][k] * y[k][j] for k in range(len(y))) for j in range(len(y[0]))]
            for i in range(len(x))]


def newton_schulz_naive(g: Float[Tensor, "m n"], *,
                        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                        ns_steps: int = 5, eps: float = 1e-7) -> Float[Tensor, "m n"]:
    """k quintic Newton–Schulz steps X ← aX + (bA + cA²)X, A = XXᵀ, in Python floats (float64)."""
    a, b, c = ns_coefficients
    rows = [[float(v) for v in row] for row in g.detach().double().tolist()]
    tall = len(rows) > len(rows[0])
    x = [list(col) for col in zip(*rows)] if tall else rows
    norm = math.sqrt(sum(v * v for row in x for v in row))
    x = [[v / max(norm, eps) for v in row] for row in x]
    for _ in range(ns_steps):
        xt = [list(col) for col in zip(*x)]
        gram = _matmul(x, xt)
        gram2 = _matmul(gram, gram)
        poly = [[b * gram[i][j] + c * gram2[i][j] for j in range(len(gram))]
                for i in range(len(gram))]
        px = _matmul(poly, x)
        x = [[a * x[i][j] + px[i][j] for j in range(len(x[0]))] for i in range(len(x))]
    if tall:
        x = [list(col) for col in zip(*x)]
    return torch.tensor(x, dtype=torch.float64).reshape(g.shape)


def polar_factor(g: Float[Tensor, "m n"]) -> Float[Tensor, "m n"]:
    """The orthogonal polar factor U Vᵀ of g = U Σ Vᵀ, from a float64 SVD.

    Singular values at most max(m, n) · ε_f64 · σ_max count as zero and map to 0 (numerical rank).
    """
    u, s, vh = torch.linalg.svd(g.detach().double(), full_matrices=False)
    tol = max(g.shape) * torch.finfo(torch.float64).eps * (s.max() if s.numel() else 0.0)
    return (u * (s > tol).double()) @ vh


def newton_schulz(g: Float[Tensor, "m n"], *,
                  ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  ns_steps: int = 5, eps: float = 1e-7,
                  ns_dtype: torch.dtype = torch.bfloat16) -> Float[Tensor, "m n"]:
    """torch.optim.Muon's Newton–Schulz, operation for operation, in ``ns_dtype``."""
    a, b, c = ns_coefficients
    x = g.to(ns_dtype)
    if g.size(0) > g.size(1):
        x = x.T
    x = x.div(x.norm().clamp(min=eps))  # out of place: x may be the caller's (bfloat16) buffer
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if g.size(0) > g.size(1) else x


# --- the rules -----------------------------------------------------------------------------------

def muon_naive(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
               lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
               nesterov: bool = True,
               ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
               eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None,
               orthogonalize: str = "svd") -> tuple[list[Tensor], State]:
    """Muon element by element in Python floats; the momentum orthogonalised exactly.

    ``orthogonalize="svd"`` (default) uses the polar factor U Vᵀ (what Newton–Schulz approximates);
    ``"newton_schulz"`` the float64 iteration as explicit loops.
    """
    require_choice("orthogonalize", orthogonalize, ("svd", "newton_schulz"))
    state = check_lists(params, grads, state)
    check_muon_hyper(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                     ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                     adjust_lr_fn=adjust_lr_fn)
    new_params, new_state = [], []
    for p, g, s in zip(params, grads, state):
        buf = _elements(s["momentum_buffer"]) if "momentum_buffer" in s else [0.0] * p.numel()
        update = []
        for i, dx in enumerate(_elements(g)):
            buf[i] = momentum * buf[i] + (1 - momentum) * dx
            update.append((1 - momentum) * dx + momentum * buf[i] if nesterov else buf[i])
        u = torch.tensor(update, dtype=torch.float64).reshape(p.shape)
        if orthogonalize == "svd":
            o = polar_factor(u)
        else:
            o = newton_schulz_naive(u, ns_coefficients=ns_coefficients, ns_steps=ns_steps,
                                    eps=eps)
        step = adjusted_lr(lr, adjust_lr_fn, p.shape)
        theta = [x * (1 - lr * weight_decay) - step * ox
                 for x, ox in zip(_elements(p), _elements(o))]
        new_params.append(_tensor(theta, p))
        new_state.append(dict(s, momentum_buffer=_tensor(buf, p)))
    return new_params, new_state


@torch.no_grad()
def muon_(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
          lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
          nesterov: bool = True, ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
          eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None,
          ns_dtype: torch.dtype = torch.bfloat16) -> None:
    """Muon in place: torch.optim.Muon's rule, operation for operation; ``state`` updated in place.

    ``ns_dtype`` (refllm's extension) is the dtype Newton–Schulz runs in (torch: bfloat16).
    """
    state = check_lists(params, grads, state)
    check_muon_hyper(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                     ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                     adjust_lr_fn=adjust_lr_fn)
    if not isinstance(ns_dtype, torch.dtype) or not ns_dtype.is_floating_point:
        raise TypeError(f"ns_dtype must be a floating torch.dtype, got {describe(ns_dtype)}")
    for p, g, s in zip(params, grads, state):
        if "momentum_buffer" not in s:
            s["momentum_buffer"] = torch.zeros_like(g)
        buf = s["momentum_buffer"]
        buf.lerp_(g, 1 - momentum)
        update = g.lerp(buf, momentum) if nesterov else buf
        update = newton_schulz(update, ns_coefficients=ns_coefficients, ns_steps=ns_steps,
                               eps=eps, ns_dtype=ns_dtype)
        p.mul_(1 - lr * weight_decay)
        p.add_(update, alpha=-adjusted_lr(lr, adjust_lr_fn, p.shape))


muon = pure(muon_)
