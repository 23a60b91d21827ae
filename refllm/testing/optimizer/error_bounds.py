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

Adafactor (:mod:`refllm.ops.optim_adafactor`) is not elementwise: its second moments are means
over rows and columns, its step is relative to RMS(θ) and clipped by RMS(U). Two more rules cover
it: a sum of n terms in any order errs by ``sum e + (n - 1) u sum |x|`` (Higham §4.2), and a clamp
``max(a, c)`` by ``e_a`` (it is Lipschitz with constant 1, so crossing the threshold costs
nothing more). The Python scalars of torch's rule (``t^tau``, ``min(lr, 1/sqrt(t))``, the step
size ``alpha / max(1, RMS(U)/d)``) are float64 and exact here, but the step size is rounded to
the dtype where ``add_`` takes it.

Muon's state (the momentum buffer, a ``lerp``) is bounded; its parameters are not. Newton–Schulz
runs in bfloat16 whatever the parameter dtype (torch.optim.Muon's ``grad.bfloat16()``), and a
first-order bound of that matrix iteration is useless: each step multiplies an error by about
``|a| + |b| ||A|| + |c| ||A||^2`` (> 3.4 for torch's coefficients, and more at the absolute values a
worst-case bound takes), five steps by 10^3 to 10^7 times bfloat16's u = 2^-9, far above the
orthogonalised update itself. `muon_parameter_bounds` bounds them instead by the error that the
same iteration makes in bfloat16 in the ways real implementations write it, measured on the same
input (see there).
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
    """The operations of the module docstring, for a dtype of unit roundoff ``u``."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.u = torch.finfo(dtype).eps / 2

    def exact(self, x: Tensor) -> Rounded:
        return Rounded(x, torch.zeros_like(x))

    def times(self, c: float, a: Rounded) -> Rounded:
        """``c * a`` computed in float64 (a Python scalar times a value taken out with
        ``.item()``): exact here, so ``|c| e_a``."""
        return Rounded(c * a.x, abs(c) * a.e)

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

    def floor(self, a: Rounded, c: float) -> Rounded:
        """``max(a, c)`` for an exact constant ``c`` (a clamp): Lipschitz 1, so ``e_a``."""
        return self.maximum(a, self.exact(torch.full_like(a.x, c)))

    def sum(self, a: Rounded, dim: int | None = None) -> Rounded:
        """A sum of n terms in any order (over ``dim``, kept; or all): ``sum e + (n - 1) u sum
        |x|`` (Higham §4.2, first order)."""
        if dim is None:
            n, x, e, mag = a.x.numel(), a.x.sum(), a.e.sum(), a.x.abs().sum()
        else:
            n = a.x.shape[dim]
            x, e = a.x.sum(dim, keepdim=True), a.e.sum(dim, keepdim=True)
            mag = a.x.abs().sum(dim, keepdim=True)
        return Rounded(x, e + max(n - 1, 0) * self.u * mag)

    def bias_correction(self, beta: float, t: int) -> Rounded:
        """``1 - beta^t`` computed in the dtype (pow within (t + 1) u, then one subtraction)."""
        power = beta**t
        x = torch.tensor(1 - power, dtype=torch.float64)
        return Rounded(x, torch.tensor((t + 1) * self.u * power, dtype=torch.float64)
                       + self.u * x.abs())


def optimizer_error_bounds(problem: Any, dtype: torch.dtype,
                           adam_eps: str = "after_correction") -> list[list[dict[str, Tensor]]]:
    """``bounds[k][i]``: for step k (0-based) and parameter i, the error bound of ``"params"`` and
    of each state tensor the rule keeps, for ``problem`` (an `OptimizerProblem`) run in ``dtype``
    (Muon: no ``"params"``, see the module docs). ``adam_eps``: where Adam's ε goes
    (`refllm.ops.optim_adam.ADAM_EPS`).

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
                params[i] = _STEPS[like](ar, params[i], g, state[i],
                                         dict(hyper, adam_eps=adam_eps))
        out.append([{**({} if like in PARAMS_UNBOUNDED else {"params": p.e.clone()}),
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
    lr_t = ar.exact(torch.tensor(lr, dtype=torch.float64))
    placement = h.get("adam_eps", "after_correction")  # refllm.ops.optim_adam.ADAM_EPS
    if placement == "before_correction":  # lr sqrt(1 - b2^t) / (1 - b1^t) over sqrt(v) + eps
        lr_t, root = ar.mul(lr_t, ar.sqrt(bias2)), ar.sqrt(v)
    else:
        root = ar.div(ar.sqrt(v), ar.sqrt(bias2))
    step_size = ar.div(lr_t, bias1)
    if placement == "floor":
        denom = ar.floor(root, eps)
    else:
        denom = ar.add(root, ar.exact(torch.full_like(p.x, eps)))
    denom.e += 2 * ar.u * eps  # eps rounded to the dtype (then added, or the floor)
    update = ar.mul(step_size, ar.div(m, denom))
    return ar.add(p, ar.scale(-1.0, update))


def _muon(ar: Arithmetic, p: Rounded, g: Rounded, s: dict, h: dict) -> Rounded:
    """The momentum buffer ``B.lerp_(g, 1 - mu)`` only: the parameters are not bounded (module
    docs), so ``p`` is returned as it came."""
    zero = ar.exact(torch.zeros_like(g.x))
    s["momentum_buffer"] = ar.lerp(s.get("momentum_buffer", zero), g, 1 - h["momentum"])
    return p


def _adafactor(ar: Arithmetic, p: Rounded, g: Rounded, s: dict, h: dict) -> Rounded:
    """torch.optim.Adafactor's for-loop step (refllm.ops.optim_adafactor.adafactor_), operation
    for operation; scalars computed in Python (float64) are exact here."""
    eps1, eps2 = h["eps"]
    eps1 = torch.finfo(ar.dtype).eps if eps1 is None else eps1  # the dtype's, as torch's
    t = s["step"] = s.get("step", 0) + 1
    w = t ** h["beta2_decay"]
    n = p.x.numel()
    rms_p = ar.times(n**-0.5, ar.sqrt(ar.sum(ar.mul(p, p))))
    alpha = ar.times(min(h["lr"], t**-0.5), ar.floor(rms_p, eps2))
    if h["weight_decay"]:
        p = ar.scale(1 - h["lr"] * h["weight_decay"], p)
    if h["maximize"]:
        g = ar.scale(-1.0, g)
    sq = ar.mul(g, g)
    if p.x.ndim > 1:
        rows, cols = g.x.shape[-2], g.x.shape[-1]

        def mean_sq(dim: int, count: int) -> Rounded:  # torch.norm(g, dim).square_().div_(k)
            root = ar.sqrt(ar.sum(sq, dim))
            return ar.div(ar.mul(root, root), ar.exact(torch.tensor(float(count))))

        zero_r = ar.exact(torch.zeros_like(g.x.sum(-1, keepdim=True)))
        zero_c = ar.exact(torch.zeros_like(g.x.sum(-2, keepdim=True)))
        row = s["row_var"] = ar.lerp(s.get("row_var", zero_r), mean_sq(-1, cols), w)
        col = s["col_var"] = ar.lerp(s.get("col_var", zero_c), mean_sq(-2, rows), w)
        mean_row = ar.div(ar.sum(row, -2), ar.exact(torch.tensor(float(rows))))
        var = ar.div(ar.mul(row, col), ar.floor(mean_row, eps1))
    else:
        zero = ar.exact(torch.zeros_like(g.x))
        var = s["variance"] = ar.lerp(s.get("variance", zero), sq, w)
    root = ar.sqrt(ar.floor(var, eps1 * eps1))
    update = ar.mul(ar.div(ar.exact(torch.ones_like(root.x)), root), g)  # rsqrt, then times g
    rms_u = ar.times(1 / (n**0.5 * h["d"]), ar.sqrt(ar.sum(ar.mul(update, update))))
    step = ar.div(alpha, ar.floor(rms_u, 1.0))
    step.e += ar.u * step.x.abs()  # the step size rounded to the dtype by add_(alpha=)
    return ar.add(p, ar.scale(-1.0, ar.mul(step, update)))


NS_NOISE_FACTOR = 2.0
NS_FLOOR_ULPS = 8
"""Muon's per-step allowance: ``NS_NOISE_FACTOR * max_j max|O_j - O| + NS_FLOOR_ULPS * u_bf16 *
max|O|`` (`muon_parameter_bounds`)."""


def _ns_unfused(u: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                normalise_first: bool = False) -> Tensor:
    """Newton–Schulz in bfloat16 as Jordan et al.'s code writes it (``B = bA + cA@A; X = aX +
    B@X``), normalised in bfloat16 or (``normalise_first``) in the input's dtype."""
    a, b, c = coefficients
    tall = u.shape[0] > u.shape[1]
    if normalise_first:
        x = (u / u.norm().clamp(min=eps)).bfloat16()
    else:
        x = u.bfloat16()
        x = x / x.norm().clamp(min=eps)
    x = x.T if tall else x
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def _ns_on_the_right(u: Tensor, coefficients: tuple[float, float, float], steps: int,
                     eps: float) -> Tensor:
    """Newton–Schulz in bfloat16 on the right, ``X <- aX + X(bA + cA^2)`` with ``A = XᵀX``,
    never transposed: for a matrix with one row (or one column) the other three ways reduce to
    a scalar polynomial of ``|x|^2`` and err far less than this one, which forms a full Gram."""
    a, b, c = coefficients
    x = u.bfloat16()
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x.T @ x
        x = a * x + x @ (b * gram + c * (gram @ gram))
    return x


def _ns_horner(u: Tensor, coefficients: tuple[float, float, float], steps: int,
               eps: float) -> Tensor:
    """Newton–Schulz in bfloat16 in Horner's form applied to X, ``X <- aX + A(bX + c AX)`` with
    ``A = XXᵀ``, never transposed (no ``A @ A`` product)."""
    a, b, c = coefficients
    x = u.bfloat16()
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + gram @ (b * x + c * (gram @ x))
    return x


def _ns_noise(u: Tensor, h: dict) -> tuple[Tensor, float]:
    """(the float64 iteration's output O, the allowance of one step) for the update ``u``."""
    from refllm.ops.optim_muon import newton_schulz

    coef, steps, eps = tuple(h["ns_coefficients"]), h["ns_steps"], h["eps"]
    exact = newton_schulz(u, ns_coefficients=coef, ns_steps=steps, eps=eps,
                          ns_dtype=torch.float64)
    low = u.to(torch.float32)
    ways = [newton_schulz(low, ns_coefficients=coef, ns_steps=steps, eps=eps),  # torch's addmm
            _ns_unfused(low, coef, steps, eps), _ns_unfused(low, coef, steps, eps, True),
            _ns_on_the_right(low, coef, steps, eps), _ns_horner(low, coef, steps, eps)]
    noise = max(float((o.double() - exact).abs().max()) for o in ways)
    u_bf16 = torch.finfo(torch.bfloat16).eps / 2
    return exact, NS_NOISE_FACTOR * noise + NS_FLOOR_ULPS * u_bf16 * float(exact.abs().max())


def muon_parameter_bounds(problem: Any, expected: Any) -> list[list[Tensor]]:
    """``bounds[k][i]``: an allowance for Muon's parameter i after step k (a tensor of its
    shape), for a target whose Newton–Schulz runs in bfloat16 (as torch.optim.Muon's does).

    bfloat16 Newton–Schulz is chaotic: five correct ways of writing it (torch's ``addmm``,
    Jordan et al.'s ``B = bA + cA@A; X = aX + B@X``, the same normalised in float32, on the
    right, ``X <- aX + X(bA + cA^2)`` with A = XᵀX, and Horner's form applied to X,
    ``X <- aX + A(bX + c AX)``) err from the float64 iteration by up to 39% of max|O| on drawn
    inputs (6 steps of torch's quintic), and by very different amounts on the same input. So
    each step's allowance is measured on the step's own input ``u`` (the reference's Nesterov
    update, from ``expected``, the float64 trajectory): ``NS_NOISE_FACTOR`` times the largest
    error of those ways, plus ``NS_FLOOR_ULPS`` bfloat16 units of max|O| (for inputs where all
    happen to be exact), times the adjusted learning rate; steps accumulate it, decayed by
    ``1 - lr wd`` as the parameter is. It is a measured yardstick, not a bound: each way was
    held out in turn before it joined, and two exceeded the allowance of the others (on the
    right: 1.18 times, on a (1, 3) parameter where the first three reduce to a scalar
    polynomial of |x|^2; Horner's: on 3 of 300 drawn problems, 1.11 times at most).
    tests/testing/test_optim_error_bounds.py measures a sixth, held out, against its rate.
    """
    from refllm.ops.optim_muon import adjusted_lr

    acc = [0.0 for _ in problem.params]
    out = []
    for k, grads in enumerate(problem.grads):
        for idx, h in zip(problem.groups, problem.hyper):
            for i in idx:
                if grads[i] is None:
                    continue
                g = grads[i].detach().to("cpu", torch.float64)
                buf = expected.states[k][i]["momentum_buffer"].to(torch.float64)
                u = g.lerp(buf, h["momentum"]) if h["nesterov"] else buf
                _, allowance = _ns_noise(u, h)
                step = adjusted_lr(h["lr"], h["adjust_lr_fn"], tuple(g.shape))
                acc[i] = abs(1 - h["lr"] * h["weight_decay"]) * acc[i] + step * allowance
        out.append([torch.full(tuple(p.shape), a, dtype=torch.float64)
                    for p, a in zip(problem.params, acc)])
    return out


_STEPS: dict[str, Callable[..., Rounded]] = {
    "gd": _gd, "sgd": _sgd, "adam": functools.partial(_adam, decoupled=False),
    "adamw": functools.partial(_adam, decoupled=True), "muon": _muon, "adafactor": _adafactor}
PARAMS_UNBOUNDED = ("muon",)
"""Kinds whose parameters have no bound here (their bounds hold the state's only)."""

__all__ = ["optimizer_error_bounds", "muon_parameter_bounds", "Arithmetic", "Rounded"]
