"""Adam and AdamW, as pure update rules.

Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1), in PyTorch's
form (``torch.optim.Adam``; g_t the gradient, t the step counted from 1)::

    g_t ← −g_t                               if maximize
    g_t ← g_t + λ θ_{t−1}                    (Adam: weight_decay λ as an L2 penalty, "coupled")
    θ_{t−1} ← (1 − γ λ) θ_{t−1}              (AdamW: decoupled decay, instead of the line above)
    m_t ← β₁ m_{t−1} + (1 − β₁) g_t
    v_t ← β₂ v_{t−1} + (1 − β₂) g_t²
    v_t^max ← max(v_{t−1}^max, v_t)          (amsgrad; v_t^max replaces v_t below)
    θ_t ← θ_{t−1} − (γ / (1 − β₁^t)) · m_t / (√v_t / √(1 − β₂^t) + ε)

AdamW: Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Algorithm 2 (lines 6-12).
AMSGrad: Reddi, Kale & Kumar 2018, "On the Convergence of Adam and Beyond", Algorithm 2.

Notation map (PyTorch → papers): ``lr`` γ is Kingma & Ba's α (and Loshchilov & Hutter's α·η_t);
``betas`` (β₁, β₂), ``eps`` ε as in the papers; state ``exp_avg`` m, ``exp_avg_sq`` v,
``max_exp_avg_sq`` v^max, ``step`` t; AdamW's ``weight_decay`` is Loshchilov & Hutter's λ/α (PyTorch
multiplies it by lr, the paper by the schedule multiplier η_t alone).

Deviations (PyTorch from the papers; our rules follow PyTorch):

* ε is added to √v_t / √(1 − β₂^t), as in Algorithm 1, not to √v_t as in the "more efficient"
  ordering of Kingma & Ba §2 (which uses ε̂ = ε √(1 − β₂^t)); ``adam_naive(...,
  convention="paper")`` gives that §2 ordering: θ_t ← θ_{t−1} − α_t m_t / (√v_t + ε) with
  α_t = γ √(1 − β₂^t) / (1 − β₁^t). The two agree when ε = 0.
* Where ε goes differs between libraries; ``adam_eps`` names it (``ADAM_EPS``):
  ``"after_correction"`` (PyTorch, Algorithm 1: √v_t / √(1 − β₂^t) + ε), ``"before_correction"``
  (Kingma & Ba §2's ordering above, as Keras has it) or ``"floor"`` (max(√v_t / √(1 − β₂^t), ε),
  ε as a lower bound of the denominator, as heavyball has it). The three agree when ε = 0.
* AdamW's schedule multiplier η_t is folded into ``lr`` (use an LR schedule); the decay is γλθ.
* AMSGrad keeps the maximum of the *uncorrected* v_t (torch 2.x) and still divides by
  √(1 − β₂^t); Reddi et al. keep the max of v_t without any bias correction.
* The step t is stored as a float tensor (``state['step']``), as torch.optim does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from refllm.ops._ieee import ieee_div
from refllm.ops.optim_sgd import (
    Params,
    State,
    _elements,
    _tensor,
    check_lists,
    check_number,
    pure,
)

ADAM_EPS = ("after_correction", "before_correction", "floor")
"""Where ε enters Adam's denominator (module docs); PyTorch's first."""


def _denominator(v: Tensor, bias2: float, eps: float, adam_eps: str) -> tuple[Tensor, float]:
    """Adam's denominator for ``adam_eps`` and the factor of its step size (√(1 − β₂^t) for
    ``"before_correction"``, else 1), as the libraries that place ε so compute it."""
    if adam_eps == "after_correction":
        return (v.sqrt() / bias2**0.5).add_(eps), 1.0
    if adam_eps == "floor":
        return (v.sqrt() / bias2**0.5).clamp_(min=eps), 1.0
    if adam_eps == "before_correction":
        return v.sqrt().add_(eps), bias2**0.5
    raise ValueError(f"adam_eps must be one of {ADAM_EPS}, got {adam_eps!r}")


def check_adam_hyper(*, lr: float, betas: tuple[float, float], eps: float,
                     weight_decay: float) -> None:
    """torch.optim.Adam's checks, each naming its argument."""
    check_number("lr", lr)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    check_number("betas[0]", betas[0], high=1.0, high_open=True)
    check_number("betas[1]", betas[1], high=1.0, high_open=True)
    check_number("eps", eps)
    check_number("weight_decay", weight_decay)


def _step_tensor(s: dict) -> Tensor:
    """The stored step (0 on a fresh state) as torch.optim stores it: a 0-d float tensor."""
    step = s.get("step")
    if step is None:
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return torch.tensor(0.0, dtype=dtype)
    return step if isinstance(step, Tensor) else torch.tensor(float(step))


def _adam_naive(params, grads, state, *, lr, betas, eps, weight_decay, amsgrad, maximize,
                decoupled, convention, adam_eps="after_correction"):
    if convention not in ("pytorch", "paper"):
        raise ValueError(f"convention must be 'pytorch' or 'paper', got {convention!r}")
    if adam_eps not in ADAM_EPS:
        raise ValueError(f"adam_eps must be one of {ADAM_EPS}, got {adam_eps!r}")
    if convention == "paper":  # Kingma & Ba §2's ordering: ε before the bias correction
        adam_eps = "before_correction"
    state = check_lists(params, grads, state)
    check_adam_hyper(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    beta1, beta2 = betas
    new_params, new_state = [], []
    for p, g, s in zip(params, grads, state):
        step = _step_tensor(s)
        t = float(step) + 1
        m, v, v_max = (_elements(s[k]) if k in s else [0.0] * p.numel()
                       for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"))
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        theta = _elements(p)
        for i, dx in enumerate(_elements(g)):
            d = -dx if maximize else dx
            if decoupled:
                theta[i] = theta[i] * (1 - lr * weight_decay)
            else:
                d = d + weight_decay * theta[i]
            m[i] = beta1 * m[i] + (1 - beta1) * d
            v[i] = beta2 * v[i] + (1 - beta2) * d * d
            v_max[i] = max(v_max[i], v[i])
            v_hat = v_max[i] if amsgrad else v[i]
            if adam_eps == "after_correction":
                denom = math.sqrt(v_hat) / math.sqrt(bias2) + eps
                theta[i] = theta[i] - lr / bias1 * ieee_div(m[i], denom)
            elif adam_eps == "floor":
                denom = max(math.sqrt(v_hat) / math.sqrt(bias2), eps)
                theta[i] = theta[i] - lr / bias1 * ieee_div(m[i], denom)
            else:
                alpha_t = lr * math.sqrt(bias2) / bias1
                theta[i] = theta[i] - alpha_t * ieee_div(m[i], math.sqrt(v_hat) + eps)
        new = dict(s, step=torch.tensor(t, dtype=step.dtype), exp_avg=_tensor(m, p),
                   exp_avg_sq=_tensor(v, p))
        if amsgrad:
            new["max_exp_avg_sq"] = _tensor(v_max, p)
        new_params.append(_tensor(theta, p))
        new_state.append(new)
    return new_params, new_state


def adam_naive(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
               lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
               convention: str = "pytorch",
               adam_eps: str = "after_correction") -> tuple[list[Tensor], State]:
    """Adam (Kingma & Ba 2015, Algorithm 1) element by element; weight decay as an L2 penalty.

    ``convention="paper"`` uses Kingma & Ba §2's ordering (ε added to √v_t, step α_t), the
    same as ``adam_eps="before_correction"``; ``adam_eps="floor"``: max(√v̂_t, ε) (`ADAM_EPS`).
    """
    return _adam_naive(params, grads, state, lr=lr, betas=betas, eps=eps,
                       weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                       decoupled=False, convention=convention, adam_eps=adam_eps)


def adamw_naive(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
                lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False,
                convention: str = "pytorch",
                adam_eps: str = "after_correction") -> tuple[list[Tensor], State]:
    """AdamW (Loshchilov & Hutter 2019, Algorithm 2) element by element: θ ← (1 − γλ)θ first."""
    return _adam_naive(params, grads, state, lr=lr, betas=betas, eps=eps,
                       weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                       decoupled=True, convention=convention, adam_eps=adam_eps)


@torch.no_grad()
def _adam_(params, grads, state, *, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled,
           adam_eps):
    """torch.optim.Adam's for-loop path, operation for operation, in place."""
    state = check_lists(params, grads, state)
    check_adam_hyper(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    beta1, beta2 = betas
    for p, g, s in zip(params, grads, state):
        if "step" not in s:  # a fresh state, as torch.optim initialises it
            s.update(step=_step_tensor(s), exp_avg=torch.zeros_like(p),
                     exp_avg_sq=torch.zeros_like(p))
        if amsgrad and "max_exp_avg_sq" not in s:
            s["max_exp_avg_sq"] = torch.zeros_like(p)
        if not isinstance(s["step"], Tensor):
            s["step"] = _step_tensor(s)
        s["step"] += 1
        g = -g if maximize else g
        if weight_decay != 0:
            if decoupled:
                p.mul_(1 - lr * weight_decay)
            else:
                g = g.add(p, alpha=weight_decay)
        m, v = s["exp_avg"], s["exp_avg_sq"]
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        t = s["step"].item()
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        if amsgrad:
            v = torch.maximum(s["max_exp_avg_sq"], v, out=s["max_exp_avg_sq"])
        denom, factor = _denominator(v, bias2, eps, adam_eps)
        p.addcdiv_(m, denom, value=-(lr * factor / bias1))


def adam_(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
          lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
          adam_eps: str = "after_correction") -> None:
    """Adam in place: torch.optim.Adam's rule (L2 weight decay); ``state`` updated in place."""
    _adam_(params, grads, state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
           amsgrad=amsgrad, maximize=maximize, decoupled=False, adam_eps=adam_eps)


def adamw_(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
           lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
           weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False,
           adam_eps: str = "after_correction") -> None:
    """AdamW in place: torch.optim.AdamW's rule (decoupled decay); ``state`` updated in place."""
    _adam_(params, grads, state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
           amsgrad=amsgrad, maximize=maximize, decoupled=True, adam_eps=adam_eps)


adam = pure(adam_)
adamw = pure(adamw_)
