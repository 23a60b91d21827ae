"""Adafactor (factored second moments, relative step sizes, update clipping), as a pure update rule.

Adafactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
Algorithms 4 and 5 with §7's relative step size), in PyTorch's form (``torch.optim.Adafactor``,
torch 2.13; g_t the gradient, t the step counted from 1, RMS(x) = ‖x‖₂/√numel(x))::

    g_t ← −g_t                                       if maximize
    β̂₂_t = 1 − t^τ                                   (beta2_decay τ ≤ 0; Shazeer & Stern's −c)
    ρ_t = min(γ, 1/√t);   α_t = max(ε₂, RMS(θ_{t−1})) · ρ_t
    θ_{t−1} ← (1 − γλ) θ_{t−1}                       (decoupled weight decay)
    for ≥2-D θ, factored over the last two dims (an n × m matrix per leading index):
        R_t = β̂₂_t R_{t−1} + (1 − β̂₂_t) mean_j(g_t²)     (n × 1, ``row_var``)
        C_t = β̂₂_t C_{t−1} + (1 − β̂₂_t) mean_i(g_t²)     (1 × m, ``col_var``)
        V̂_t = R_t C_t / max(mean_i(R_t), ε₁)
    for 0-D and 1-D θ:
        V̂_t = β̂₂_t V̂_{t−1} + (1 − β̂₂_t) g_t²             (``variance``)
    U_t = g_t / √max(V̂_t, ε₁²)
    Û_t = U_t / max(1, RMS(U_t)/d)                   (update clipping, threshold d)
    θ_t = θ_{t−1} − α_t Û_t

Notation map (PyTorch → Shazeer & Stern): ``lr`` γ caps their relative step size ρ_t = min(10⁻²,
1/√t) (they use no learning rate); ``beta2_decay`` τ is −c in β̂₂_t = 1 − t^{−c} (their c = 0.8);
``eps`` (ε₁, ε₂) as theirs (ε₁ = None means the parameter dtype's machine epsilon; their
ε₁ = 10⁻³⁰); ``d`` their clipping threshold d; ``row_var`` R_t/m and ``col_var`` C_t/n (means
where they keep sums: the ratio R C / (1ᵀR) is the same); ``variance`` V̂_t; ``step`` t (a 0-d float
tensor, as torch.optim stores it); ``weight_decay`` λ is PyTorch's addition.

Deviations (PyTorch from the paper; our rules follow PyTorch):

* ``lr`` caps ρ_t and scales the weight decay; the paper's cap is the constant 10⁻².
* ε₁ is applied at the end, to mean_i(R_t) and to V̂_t (as ε₁²), not added to g_t² inside R and C.
* No first moment (the paper's β₁ = 0 variant) and ρ_t is always relative (multiplied by
  max(ε₂, RMS(θ))).
* A parameter's factored state is over the last two dims; all leading dims are a batch.
* With ``eps=(None, …)`` torch resolves ε₁ from the *first* parameter's dtype and keeps it for the
  rest of the list; the fast rule does the same, the naive rule takes each parameter's own dtype
  (they differ only for lists of mixed dtypes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from refllm._validation import require_bool
from refllm.ops.optim_adam import _step_tensor
from refllm.ops.optim_sgd import Params, State, _elements, _tensor, check_lists, check_number, pure

FACTORED_KEYS = ("row_var", "col_var")


def factored_shapes(shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shapes of ``row_var`` (last dim 1) and ``col_var`` (second-to-last dim 1)."""
    return (*shape[:-1], 1), (*shape[:-2], 1, shape[-1])


def check_adafactor_lists(params: Params, grads: Params, state: Sequence[dict] | None) -> State:
    """`check_lists`, with the factored ``row_var`` and ``col_var`` checked for their own shapes."""
    state = [{} for _ in params] if state is None else list(state)
    check_lists(params, grads, [{k: v for k, v in s.items() if k not in FACTORED_KEYS}
                                if isinstance(s, dict) else s for s in state])
    for i, (p, s) in enumerate(zip(params, state)):
        for key, shape in zip(FACTORED_KEYS, factored_shapes(p.shape) if p.ndim > 1 else ()):
            value = s.get(key)
            if isinstance(value, Tensor) and tuple(value.shape) != shape:
                raise ValueError(f"state[{i}][{key!r}] must have shape {shape} for params[{i}] "
                                 f"of shape {tuple(p.shape)}, got {tuple(value.shape)}")
    return state


def check_adafactor_hyper(*, lr: float, beta2_decay: float, eps: tuple[float | None, float],
                          d: float, weight_decay: float, maximize: bool) -> None:
    """torch.optim.Adafactor's checks, each naming its argument."""
    check_number("lr", lr)
    check_number("beta2_decay", beta2_decay, low=-math.inf, high=0.0)
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise ValueError(f"eps must be a pair (eps1, eps2), got {eps!r}")
    if eps[0] is not None:
        check_number("eps[0]", eps[0])
    check_number("eps[1]", eps[1])
    check_number("d", d, low=1.0)
    check_number("weight_decay", weight_decay)
    require_bool("maximize", maximize)


def _rms(values: list[float]) -> float:
    return math.sqrt(sum(x * x for x in values) / len(values))


def adafactor_naive(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
                    lr: float = 1e-2, beta2_decay: float = -0.8,
                    eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                    weight_decay: float = 0.0,
                    maximize: bool = False) -> tuple[list[Tensor], State]:
    """Adafactor element by element in Python floats (PyTorch's form of Shazeer & Stern 2018)."""
    state = check_adafactor_lists(params, grads, state)
    check_adafactor_hyper(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                          weight_decay=weight_decay, maximize=maximize)
    new_params, new_state = [], []
    for p, g, s in zip(params, grads, state):
        eps1 = torch.finfo(p.dtype).eps if eps[0] is None else eps[0]
        step = _step_tensor(s)
        t = float(step) + 1
        w = t**beta2_decay  # 1 − β̂₂_t
        theta = _elements(p)
        alpha = max(eps[1], _rms(theta)) * min(lr, 1 / math.sqrt(t))
        theta = [x * (1 - lr * weight_decay) for x in theta]
        grad = [-x if maximize else x for x in _elements(g)]
        new = dict(s, step=torch.tensor(t, dtype=step.dtype))
        if p.ndim > 1:
            n, m = p.shape[-2], p.shape[-1]
            batches = p.numel() // (n * m)
            rows = _elements(s["row_var"]) if "row_var" in s else [0.0] * (batches * n)
            cols = _elements(s["col_var"]) if "col_var" in s else [0.0] * (batches * m)
            var = [0.0] * p.numel()
            for b in range(batches):
                at = [[grad[(b * n + i) * m + j] for j in range(m)] for i in range(n)]
                for i in range(n):
                    row_mean = sum(x * x for x in at[i]) / m
                    rows[b * n + i] = (1 - w) * rows[b * n + i] + w * row_mean
                for j in range(m):
                    col_mean = sum(at[i][j] ** 2 for i in range(n)) / n
                    cols[b * m + j] = (1 - w) * cols[b * m + j] + w * col_mean
                mean_r = max(sum(rows[b * n:(b + 1) * n]) / n, eps1)
                for i in range(n):
                    for j in range(m):
                        var[(b * n + i) * m + j] = rows[b * n + i] * cols[b * m + j] / mean_r
            row_shape, col_shape = factored_shapes(p.shape)
            new["row_var"] = _tensor(rows, p.new_empty(row_shape))
            new["col_var"] = _tensor(cols, p.new_empty(col_shape))
        else:
            var = _elements(s["variance"]) if "variance" in s else [0.0] * p.numel()
            var = [(1 - w) * v + w * x * x for v, x in zip(var, grad)]
            new["variance"] = _tensor(var, p)
        update = [x / math.sqrt(max(v, eps1 * eps1)) for x, v in zip(grad, var)]
        scale = alpha / max(1.0, _rms(update) / d)
        new_params.append(_tensor([x - scale * u for x, u in zip(theta, update)], p))
        new_state.append(new)
    return new_params, new_state


@torch.no_grad()
def adafactor_(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
               lr: float = 1e-2, beta2_decay: float = -0.8,
               eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
               weight_decay: float = 0.0, maximize: bool = False) -> None:
    """Adafactor in place: torch.optim.Adafactor's for-loop rule, operation for operation.

    ``state`` dicts gain ``'step'`` and ``'row_var'``/``'col_var'`` (≥2-D) or ``'variance'``.
    """
    state = check_adafactor_lists(params, grads, state)
    check_adafactor_hyper(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                          weight_decay=weight_decay, maximize=maximize)
    eps1, eps2 = eps
    for p, g, s in zip(params, grads, state):
        if "step" not in s:  # a fresh state, as torch.optim initialises it
            s["step"] = _step_tensor(s)
            if g.dim() > 1:
                row_shape, col_shape = factored_shapes(g.shape)
                s.update(row_var=g.new_zeros(row_shape), col_var=g.new_zeros(col_shape))
            else:
                s["variance"] = torch.zeros_like(g)
        if not isinstance(s["step"], Tensor):
            s["step"] = _step_tensor(s)
        g = -g if maximize else g
        if eps1 is None:
            eps1 = torch.finfo(p.dtype).eps  # kept for the later parameters, as torch does
        s["step"] += 1
        t = s["step"].item()
        one_minus_beta2 = t**beta2_decay
        alpha = max(eps2, p.norm(2).item() / (p.numel() ** 0.5)) * min(lr, 1 / (t**0.5))
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        if g.dim() > 1:
            row_var, col_var = s["row_var"], s["col_var"]
            row_var.lerp_(torch.norm(g, dim=-1, keepdim=True).square_().div_(g.size(-1)),
                          one_minus_beta2)
            col_var.lerp_(torch.norm(g, dim=-2, keepdim=True).square_().div_(g.size(-2)),
                          one_minus_beta2)
            var = row_var @ col_var
            var.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
        else:
            s["variance"].lerp_(g * g, one_minus_beta2)
            var = s["variance"].clone()
        update = var.clamp_(min=eps1 * eps1).rsqrt_().mul_(g)
        denom = max(1.0, update.norm(2).item() / ((update.numel() ** 0.5) * d))
        p.add_(update, alpha=-alpha / denom)


adafactor = pure(adafactor_, check=check_adafactor_lists)
