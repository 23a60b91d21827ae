"""SGD, Adam, AdamW, Muon and Adafactor as ``torch.optim.Optimizer`` subclasses on refllm's rules.

Each ``step()`` gathers, per param group, the parameters whose ``.grad`` is not None, calls the fast
in-place rule of :mod:`refllm.ops.optim_sgd`, :mod:`refllm.ops.optim_adam`,
:mod:`refllm.ops.optim_muon` or :mod:`refllm.ops.optim_adafactor` on them (``sgd_``, ``adam_``,
``adamw_``, ``muon_``, ``adafactor_``), which updates the parameters and stores the new state under
the keys torch.optim uses (``'momentum_buffer'``; ``'step'`` as a 0-d float tensor, ``'exp_avg'``,
``'exp_avg_sq'``, ``'max_exp_avg_sq'``; Adafactor's ``'row_var'``, ``'col_var'`` or
``'variance'``). Parameters whose grad is None are untouched and get no state. State dicts have
torch's structure, so a refllm optimizer loads torch's state dict and torch's loads refllm's.

Deviations from torch.optim: no ``fused``, ``capturable`` or ``differentiable`` options, and
``foreach`` (which torch.optim.Adafactor's signature has) is accepted but changes nothing (the
rules have one implementation, torch's for-loop one, on CPU or GPU alike); tensor learning rates
and sparse or complex gradients are not supported. Muon keeps its momentum buffer for bfloat16
parameters without Nesterov, where torch 2.13 overwrites it (see :mod:`refllm.ops.optim_muon`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from refllm._validation import describe
from refllm.ops.optim_adafactor import adafactor_, check_adafactor_hyper
from refllm.ops.optim_adam import adam_, adamw_, check_adam_hyper
from refllm.ops.optim_muon import NS_COEFFICIENTS, check_muon_hyper, muon_
from refllm.ops.optim_sgd import check_sgd_hyper, sgd_


class _RuleOptimizer(torch.optim.Optimizer):
    """An Optimizer whose update is an in-place rule ``(params, grads, state, **hyper)``."""

    def _rule(self, group: dict[str, Any]) -> tuple[Callable[..., Any], dict[str, Any]]:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            rule, hyper = self._rule(group)
            states = [self.state[p] if p in self.state else {} for p in params]
            rule(params, [p.grad for p in params], states, **hyper)
            for p, s in zip(params, states):
                if s:  # like torch.optim, no entry for a parameter the rule keeps no state for
                    self.state[p] = s
        return loss


class SGD(_RuleOptimizer):
    """Stochastic gradient descent with momentum, Nesterov and weight decay (torch.optim.SGD).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = SGD([w], lr=0.5)
    >>> w.grad = torch.tensor([1.0, 1.0])
    >>> opt.step()
    >>> w.tolist()
    [0.5, -2.5]
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 maximize: bool = False) -> None:
        check_sgd_hyper(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=weight_decay)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    def _rule(self, group):
        keys = ("lr", "momentum", "dampening", "nesterov", "weight_decay", "maximize")
        return sgd_, {k: group[k] for k in keys}


class Adam(_RuleOptimizer):
    """Adam (Kingma & Ba 2015) with L2 weight decay and AMSGrad (torch.optim.Adam).

    ``decoupled_weight_decay=True`` makes it AdamW, as in torch.optim.Adam.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        check_adam_hyper(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("decoupled_weight_decay", False)

    def _rule(self, group):
        keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")
        rule = adamw_ if group["decoupled_weight_decay"] else adam_
        return rule, {k: group[k] for k in keys}


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay (torch.optim.AdamW).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = torch.tensor([0.0])
    >>> opt.step()
    >>> w.item()  # zero gradient: only the decay (1 - lr * weight_decay) acts
    0.949999988079071
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


class Muon(_RuleOptimizer):
    """Muon (Jordan et al. 2024): momentum orthogonalised by Newton–Schulz (torch.optim.Muon).

    For 2-D parameters only, as torch's: any other is a ValueError at construction. Newton–Schulz
    runs in bfloat16, as torch's does.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(2, 2))
    >>> opt = Muon([w], lr=0.1, weight_decay=0.0)
    >>> w.grad = torch.eye(2)
    >>> opt.step()
    >>> w.abs().max().item() > 0  # stepped along the (approximate) polar factor of the momentum
    True
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None) -> None:
        check_muon_hyper([], lr=lr, weight_decay=weight_decay, momentum=momentum,
                         ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                         adjust_lr_fn=adjust_lr_fn)
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=tuple(ns_coefficients), eps=eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.ndim != 2:
                    raise ValueError(
                        f"params (group {g}, parameter {i}) must be a 2-D matrix for Muon "
                        f"(hidden-layer weights; give the others to AdamW), got shape "
                        f"{tuple(p.shape)} ({describe(p)})")

    def _rule(self, group):
        keys = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps",
                "ns_steps", "adjust_lr_fn")
        return muon_, {k: group[k] for k in keys}


class Adafactor(_RuleOptimizer):
    """Adafactor (Shazeer & Stern 2018): factored second moments, relative steps, update
    clipping (torch.optim.Adafactor). ``foreach`` is accepted and changes nothing.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(2, 3))
    >>> opt = Adafactor([w], lr=0.01)
    >>> w.grad = torch.ones(2, 3)
    >>> opt.step()
    >>> sorted(opt.state[w])  # a 2-D parameter keeps a row and a column second moment
    ['col_var', 'row_var', 'step']
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, foreach: bool | None = None,
                 maximize: bool = False) -> None:
        check_adafactor_hyper(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                              weight_decay=weight_decay, maximize=maximize)
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=tuple(eps), d=d,
                        weight_decay=weight_decay, foreach=foreach, maximize=maximize)
        super().__init__(params, defaults)

    def _rule(self, group):
        keys = ("lr", "beta2_decay", "eps", "d", "weight_decay", "maximize")
        return adafactor_, {k: group[k] for k in keys}
