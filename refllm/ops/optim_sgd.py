"""Gradient descent and stochastic gradient descent with momentum, as pure update rules.

Gradient descent (Cauchy 1847; any textbook, e.g. Nocedal & Wright 2006, §3)::

    θ_{t+1} = θ_t − η ∇L(θ_t)

SGD with momentum in PyTorch's form (``torch.optim.SGD``), with g_t the gradient::

    g_t ← −g_t                       if maximize
    g_t ← g_t + λ θ_{t−1}            (weight_decay λ: an L2 penalty folded into the gradient)
    b_t ← g_t                        if t = 1 (no dampening on the first step)
    b_t ← μ b_{t−1} + (1 − τ) g_t    otherwise (momentum μ, dampening τ)
    g_t ← g_t + μ b_t  (nesterov)    or   g_t ← b_t
    θ_t ← θ_{t−1} − γ g_t            (lr γ)

Source: Sutskever, Martens, Dahl & Hinton 2013, "On the importance of initialization and momentum in
deep learning", §2, Eqs. 1-2 (classical momentum) and Eqs. 3-4 (Nesterov's accelerated gradient).

Notation map (PyTorch → Sutskever et al.): ``lr`` γ is ε; ``momentum`` μ is μ; the buffer
``momentum_buffer`` b is −v/ε (their velocity v_{t+1} = μ v_t − ε ∇f(θ_t), θ_{t+1} = θ_t + v_{t+1});
``dampening`` τ and ``weight_decay`` λ are PyTorch's additions.

Deviation (PyTorch from the paper): the first buffer is b_1 = g_1, with no dampening, where the
paper's v_0 = 0 gives b_1 = (1 − τ) g_1; the two agree when τ = 0. ``sgd_naive(...,
convention="paper")`` follows the paper (b_0 = 0). Nesterov's momentum is PyTorch's reformulation
g + μ b (Bengio, Boulanger-Lewandowski & Pascanu 2013, §3.5) in which the gradient is taken at the
current point, not at the look-ahead point θ + μ v of Sutskever et al.'s Eq. 3; the iterates are the
paper's under the change of variables, not its θ.

Every rule has the signature ``(params, grads, state, **hyper) -> (new_params, new_state)`` and
never mutates its inputs; ``state`` is a list (one entry per parameter) of dicts keyed as
torch.optim keys them (``'momentum_buffer'``), or ``None`` for a fresh start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from refllm._validation import describe, require_float, require_real

State = list[dict[str, Any]]
Params = Sequence[Float[Tensor, "..."]]


# --- checks shared by every rule (also used by refllm.ops.optim_adam and refllm.nn.optim) ---

def check_lists(params: Params, grads: Params, state: Sequence[dict] | None) -> State:
    """Check params, grads and state line up one to one; return the state (fresh dicts if None)."""
    params, grads = list(params), list(grads)
    if len(params) != len(grads):
        raise ValueError(f"params and grads must have the same length, got {len(params)} params "
                         f"and {len(grads)} grads")
    state = [{} for _ in params] if state is None else list(state)
    if len(state) != len(params):
        raise ValueError(f"state must hold one dict per parameter: {len(params)} params, got "
                         f"{len(state)} state entries")
    for i, (p, g, s) in enumerate(zip(params, grads, state)):
        require_float(f"params[{i}]", p)
        require_float(f"grads[{i}]", g)
        if p.shape != g.shape:
            raise ValueError(f"grads[{i}] must have the shape of params[{i}] "
                             f"{tuple(p.shape)}, got {tuple(g.shape)}")
        if p.dtype != g.dtype:
            raise TypeError(f"grads[{i}] must have the dtype of params[{i}] ({p.dtype}), got "
                            f"{describe(g)}")
        if not isinstance(s, dict):
            raise TypeError(f"state[{i}] must be a dict, got {describe(s)}")
        for key, value in s.items():
            if key != "step" and isinstance(value, Tensor) and value.shape != p.shape:
                raise ValueError(f"state[{i}][{key!r}] must have the shape of params[{i}] "
                                 f"{tuple(p.shape)}, got {tuple(value.shape)}")
    return state


def check_number(name: str, value: object, *, low: float = 0.0, high: float | None = None,
                 high_open: bool = False) -> None:
    """Raise unless ``value`` is a finite real number in [low, high] (or [low, high))."""
    require_real(name, value, low=low, high=high, high_open=high_open)


def check_sgd_hyper(*, lr: float, momentum: float, dampening: float, nesterov: bool,
                    weight_decay: float) -> None:
    """torch.optim.SGD's checks, each naming its argument (and dampening in [0, 1])."""
    check_number("lr", lr)
    check_number("momentum", momentum)
    check_number("dampening", dampening, high=1.0)
    check_number("weight_decay", weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"nesterov momentum requires momentum > 0 and dampening = 0, got "
                         f"momentum={momentum!r}, dampening={dampening!r}")


# --- naive: one element at a time, in Python floats --------------------------------------------

def _elements(t: Tensor) -> list[float]:
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def _tensor(values: list[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(like.shape)


def gd_naive(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
             lr: float) -> tuple[list[Tensor], State]:
    """One gradient-descent step θ ← θ − η g, element by element (state passes through).

    >>> import torch
    >>> (p,), _ = gd_naive([torch.tensor([1.0, 2.0])], [torch.tensor([0.5, -1.0])], lr=0.1)
    >>> p.tolist()
    [0.949999988079071, 2.0999999046325684]
    """
    state = check_lists(params, grads, state)
    check_number("lr", lr)
    new_params = []
    for p, g in zip(params, grads):
        new_params.append(_tensor([x - lr * dx for x, dx in zip(_elements(p), _elements(g))], p))
    return new_params, [dict(s) for s in state]


def sgd_naive(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
              lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
              nesterov: bool = False, weight_decay: float = 0.0, maximize: bool = False,
              convention: str = "pytorch") -> tuple[list[Tensor], State]:
    """SGD with momentum, element by element (Sutskever et al. 2013, Eqs. 1-4 in PyTorch's form).

    ``convention="pytorch"`` starts the buffer at b_1 = g_1; ``"paper"`` at b_0 = 0, so that
    b_1 = (1 − τ) g_1 (the two agree unless dampening τ ≠ 0).
    """
    if convention not in ("pytorch", "paper"):
        raise ValueError(f"convention must be 'pytorch' or 'paper', got {convention!r}")
    state = check_lists(params, grads, state)
    check_sgd_hyper(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                    weight_decay=weight_decay)
    new_params, new_state = [], []
    for p, g, s in zip(params, grads, state):
        s = dict(s)
        old_buf = s.get("momentum_buffer") if momentum != 0 else None
        bufs = _elements(old_buf) if old_buf is not None else None
        theta, new_buf = [], []
        for i, (x, dx) in enumerate(zip(_elements(p), _elements(g))):
            d = -dx if maximize else dx
            d = d + weight_decay * x
            if momentum != 0:
                if bufs is not None:
                    b = momentum * bufs[i] + (1 - dampening) * d
                else:
                    b = d if convention == "pytorch" else (1 - dampening) * d
                new_buf.append(b)
                d = d + momentum * b if nesterov else b
            theta.append(x - lr * d)
        new_params.append(_tensor(theta, p))
        if momentum != 0:
            s["momentum_buffer"] = _tensor(new_buf, p)
        new_state.append(s)
    return new_params, new_state


# --- fast: whole tensors, the same operations as torch.optim.SGD's for-loop path -----------------

def gd(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
       lr: float) -> tuple[list[Tensor], State]:
    """One gradient-descent step θ ← θ − η g on whole tensors (state passes through).

    >>> import torch
    >>> (p,), _ = gd([torch.tensor([1.0, 2.0])], [torch.tensor([0.5, -1.0])], lr=0.1)
    >>> p.tolist()
    [0.949999988079071, 2.0999999046325684]
    """
    state = check_lists(params, grads, state)
    check_number("lr", lr)
    return [p.add(g, alpha=-lr) for p, g in zip(params, grads)], [dict(s) for s in state]


def pure(rule_: Callable[..., None], *,
         check: Callable[..., State] = check_lists) -> Callable[..., tuple[list[Tensor], State]]:
    """The pure form of an in-place rule: run it on copies, return ``(new_params, new_state)``.

    The in-place rules (``sgd_``, ``adam_``, ``adamw_``; PyTorch's trailing-underscore convention)
    update ``params`` and the tensors of ``state`` as ``torch.optim`` does, which is what
    `refllm.nn.optim` calls; the pure rules are the same code on clones, so neither can drift.
    ``check`` checks the lists first (a rule whose state is not shaped like its parameters, such
    as Adafactor's, passes its own).
    """

    def rule(params: Params, grads: Params, state: Sequence[dict] | None = None,
             **hyper: Any) -> tuple[list[Tensor], State]:
        checked = check(params, grads, state)
        new_params = [p.detach().clone() for p in params]
        new_state = [{k: v.clone() if isinstance(v, Tensor) else v for k, v in s.items()}
                     for s in checked]
        rule_(new_params, grads, new_state, **hyper)
        return new_params, new_state

    functools.update_wrapper(rule, rule_)  # the in-place rule's signature, for introspection
    rule.__name__ = rule.__qualname__ = rule_.__name__.rstrip("_")
    rule.__doc__ = (rule_.__doc__ or "").replace("in place", "on copies (inputs untouched)")
    return rule


@torch.no_grad()
def sgd_(params: Params, grads: Params, state: Sequence[dict] | None = None, *,
         lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
         weight_decay: float = 0.0, maximize: bool = False) -> None:
    """SGD with momentum in place; torch.optim.SGD's for-loop rule, operation for operation.

    ``state`` dicts gain ``'momentum_buffer'`` (with momentum) and are updated in place.
    """
    state = check_lists(params, grads, state)
    check_sgd_hyper(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                    weight_decay=weight_decay)
    for p, g, s in zip(params, grads, state):
        d_p = -g if maximize else g
        if weight_decay != 0:
            d_p = d_p.add(p, alpha=weight_decay)
        if momentum != 0:
            buf = s.get("momentum_buffer")
            if buf is None:
                buf = s["momentum_buffer"] = d_p.detach().clone()  # first step: b = g
            else:
                buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
            d_p = d_p.add(buf, alpha=momentum) if nesterov else buf
        p.add_(d_p, alpha=-lr)


sgd = pure(sgd_)
