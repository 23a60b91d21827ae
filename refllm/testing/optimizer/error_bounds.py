"""A-priori rounding-error bounds of optimizer trajectories, elementwise, by running error analysis.

Every update rule of torch.optim's SGD, Adam and AdamW is elementwise, so each element of each
parameter follows its own scalar recurrence. We run that recurrence once more in float64 and carry
beside every value ``x`` a first-order bound ``e`` on the absolute error of the same value computed
in the checked dtype (unit roundoff ``u = eps / 2``, standard model
``fl(a op b) = (a op b)(1 + d)``, ``|d| <= u``; Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., §2.2 and §3.1)::

    c * a     |c| e_a + 2u |c a|              (c: a Python scalar, itself rounded to the dtype)
    a + b     e_a + e_b + u |a + b|
    a * b     |a| e_b + |b| e_a + u |a b|
    a / b     e_a / |b| + |a| e_b / b^2 + u |a / b|
    sqrt(a)   min(e_a / (sqrt(a) + sqrt(max(a - e_a, 0))), sqrt(e_a)) + u sqrt(a)
    lerp      (1 - w) e_a + w e_b + 2u (|(1 - w) a| + |w b|) + (3u min(w, 1 - w) + dw) (|a| + |b|)
              + u |(1 - w) a + w b|       (the moments, in any of three forms; see lerp)
    max(a, b) max(e_a, e_b)

Errors carry over from step to step through the parameter and the state (momentum buffer, first
and second moments), so the bound grows where the recurrence amplifies them: a parameter that
went out to 200 and came back to 8 keeps the rounding error it made at 200; an Adam step
``m / (sqrt(v) + eps)`` with ``v`` near zero and a tiny ``eps`` magnifies the error of ``m``. The
bias corrections ``1 - beta^t`` are bounded as if computed in the dtype too (PyTorch's
capturable path does), which matters for beta near 1. A different but equivalent order of the
same operations (fused ``addcdiv``, ``lr / bias1`` folded into the step) makes errors of the same
first order; the policy's ``ERROR_BOUND_FACTOR`` covers that and the dropped second-order terms.
A bug (coupled weight decay, eps inside the root, a missing bias correction, a dampened first
momentum step) moves a parameter by a fraction of its step, far beyond these bounds on every
well-conditioned element.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


@dataclasses.dataclass
class Rounded:
    """A float64 value ``x`` and a bound ``e`` on the error of computing it in the dtype."""

    x: Tensor
    e: Tensor


class Arithmetic:
    """The seven operations of the module docstring, for a dtype of unit roundoff ``u``."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.u = torch.finfo(dtype).eps / 2

    def exact(self, x: Tensor) -> Rounded:
        return Rounded(x, torch.zeros_like(x))

    def scale(self, c: float, a: Rounded) -> Rounded:
        x = c * a.x
        return Rounded(x, abs(c) * a.e + 2 * self.u * x.abs())

    def add(self, a: Rounded, b: Rounded) -> Rounded:
        x = a.x + b.x
        return Rounded(x, a.e + b.e + self.u * x.abs())

    def mul(self, a: Rounded, b: Rounded) -> Rounded:
        x = a.x * b.x
        return Rounded(x, a.x.abs() * b.e + b.x.abs() * a.e + self.u * x.abs())

    def div(self, a: Rounded, b: Rounded) -> Rounded:
        x = a.x / b.x
        return Rounded(x, a.e / b.x.abs() + a.x.abs() * b.e / b.x**2 + self.u * x.abs())

    def sqrt(self, a: Rounded) -> Rounded:
        root = a.x.clamp(min=0).sqrt()
        low = (a.x - a.e).clamp(min=0).sqrt()
        spread = torch.where(root + low > 0, a.e / (root + low), a.e.sqrt())
        return Rounded(root, torch.minimum(spread, a.e.sqrt()) + self.u * root)

    def lerp(self, a: Rounded, b: Rounded, w: float) -> Rounded:
        """``(1 - w) a + w b`` in any of three forms: the two scaled terms added, ``a + w (b - a)``
        or ``b - (1 - w) (b - a)`` (torch's ``lerp``). The last two cancel in ``b - a``; their
        error is the convex form's plus ``3u min(w, 1 - w) (|a| + |b|)``, plus ``dw (|a| + |b|)``
        for the weight rounded to the dtype (``dw = u max(w, 1 - w)`` unless w and 1 - w are
        exact there, as 0 and 1 are): an Adam moment falling from 3 to 0.008 with w = 0.9999
        keeps an error of about u * 3 in float32 (measured on PyTorch's CPU ``lerp_``)."""
        x = (1 - w) * a.x + w * b.x
        mag = a.x.abs() + b.x.abs()
        convex = 2 * self.u * (abs(1 - w) * a.x.abs() + abs(w) * b.x.abs())
        cancel = 3 * self.u * min(abs(w), abs(1 - w)) * mag
        dw = 0.0 if self.representable(w) and self.representable(1 - w) else \
            self.u * max(abs(w), abs(1 - w))
        return Rounded(x, abs(1 - w) * a.e + abs(w) * b.e + convex + cancel + dw * mag
                       + self.u * x.abs())

    def representable(self, c: float) -> bool:
        return float(torch.tensor(c, dtype=self.dtype)) == c

    def maximum(self, a: Rounded, b: Rounded) -> Rounded:
        return Rounded(torch.maximum(a.x, b.x), torch.maximum(a.e, b.e))

    def bias_correction(self, beta: float, t: int) -> Rounded:
        """``1 - beta^t`` computed in the dtype (pow within (t + 1) u, then one subtraction)."""
        power = beta**t
        x = torch.tensor(1 - power, dtype=torch.float64)
        return Rounded(x, torch.tensor((t + 1) * self.u * power, dtype=torch.float64)
                       + self.u * x.abs())


def optimizer_error_bounds(problem: Any, dtype: torch.dtype) -> list[list[dict[str, Tensor]]]:
    """``bounds[k][i]``: for step k (0-based) and parameter i, the error bound of ``"params"`` and
    of each state tensor the rule keeps, for ``problem`` (an `OptimizerProblem`) run in ``dtype``.

    >>> from refllm.testing.optimizer.strategy import OptimizerProblem
    >>> p = OptimizerProblem("gd", [torch.tensor([1.0], dtype=torch.float64)], [[0]],
    ...                      [{"lr": 0.5}], [[torch.tensor([2.0], dtype=torch.float64)]])
    >>> b = optimizer_error_bounds(p, torch.float32)[0][0]["params"]   # 1 - 0.5 * 2 = 0
    >>> u = 2.0 ** -24
    >>> bool(b == 2 * u)  # lr and lr * g rounded (2u |lr g|); p - lr g = 0 is exact
    True
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    like = problem.like
    if like not in _STEPS:
        raise ValueError(f"problem.like must be one of {sorted(_STEPS)}, got {like!r}")
    ar = Arithmetic(dtype)
    params = [ar.exact(p.detach().to("cpu", torch.float64)) for p in problem.params]
    state: list[dict[str, Any]] = [{} for _ in params]
    out = []
    for grads in problem.grads:
        for idx, hyper in zip(problem.groups, problem.hyper):
            for i in idx:
                if grads[i] is None:
                    continue
                g = ar.exact(grads[i].detach().to("cpu", torch.float64))
                params[i] = _STEPS[like](ar, params[i], g, state[i], hyper)
        out.append([{"params": p.e.clone(),
                     **{k: v.e.clone() for k, v in s.items() if isinstance(v, Rounded)}}
                    for p, s in zip(params, state)])
    return out


def _gd(ar: Arithmetic, p: Rounded, g: Rounded, s: dict, h: dict) -> Rounded:
    return ar.add(p, ar.scale(-h["lr"], g))


def _sgd(ar: Arithmetic, p: Rounded, g: Rounded, s: dict, h: dict) -> Rounded:
    d = ar.scale(-1.0, g) if h.get("maximize") else g
    if h.get("weight_decay", 0.0):
        d = ar.add(d, ar.scale(h["weight_decay"], p))
    mu = h.get("momentum", 0.0)
    if mu:
        buf = s.get("momentum_buffer")
        buf = d if buf is None else ar.add(ar.scale(mu, buf),
                                           ar.scale(1 - h.get("dampening", 0.0), d))
        s["momentum_buffer"] = buf
        d = ar.add(d, ar.scale(mu, buf)) if h.get("nesterov") else buf
    return ar.add(p, ar.scale(-h["lr"], d))


def _adam(ar: Arithmetic, p: Rounded, g: Rounded, s: dict, h: dict, decoupled: bool) -> Rounded:
    lr, (b1, b2), wd, eps = h["lr"], h["betas"], h["weight_decay"], h["eps"]
    d = ar.scale(-1.0, g) if h.get("maximize") else g
    if decoupled:
        p = ar.scale(1 - lr * wd, p)
    elif wd:
        d = ar.add(d, ar.scale(wd, p))
    t = s["step"] = s.get("step", 0) + 1
    zero = ar.exact(torch.zeros_like(p.x))
    m = ar.lerp(s.get("exp_avg", zero), d, 1 - b1)
    v = ar.lerp(s.get("exp_avg_sq", zero), ar.mul(d, d), 1 - b2)
    s["exp_avg"], s["exp_avg_sq"] = m, v
    if h.get("amsgrad"):
        v = s["max_exp_avg_sq"] = ar.maximum(s.get("max_exp_avg_sq", zero), v)
    bias1, bias2 = ar.bias_correction(b1, t), ar.bias_correction(b2, t)
    step_size = ar.div(ar.exact(torch.tensor(lr, dtype=torch.float64)), bias1)
    denom = ar.add(ar.div(ar.sqrt(v), ar.sqrt(bias2)),
                   ar.exact(torch.full_like(p.x, eps)))
    denom.e += 2 * ar.u * eps  # eps rounded to the dtype, then added
    update = ar.mul(step_size, ar.div(m, denom))
    return ar.add(p, ar.scale(-1.0, update))


_STEPS: dict[str, Callable[..., Rounded]] = {
    "gd": _gd, "sgd": _sgd, "adam": functools.partial(_adam, decoupled=False),
    "adamw": functools.partial(_adam, decoupled=True)}

__all__ = ["optimizer_error_bounds", "Arithmetic", "Rounded"]
