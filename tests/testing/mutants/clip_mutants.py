"""Planted bugs in gradient clipping by the global norm (``clip_grad_norm_``'s signature).

Each is a bug class of real training code: the inf-norm returned as 1.0 (a kernel library's
bug), a coefficient not capped at 1 (small gradients scaled up), the norm taken over a generator
that was read once already, the norm returned after clipping, the p-norm of the tensors taken as
the sum of their norms, ``error_if_nonfinite`` ignored, parameters without a gradient crashing.
"""

from __future__ import annotations

import math

import torch


def _grads(parameters):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _norm(grads, p):
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack([torch.linalg.vector_norm(g, p) for g in grads])
    return torch.linalg.vector_norm(norms, p)


def _guard(grads, error_if_nonfinite):
    if error_if_nonfinite and any(not bool(g.isfinite().all()) for g in grads):
        raise RuntimeError("the total norm is non-finite")


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                   foreach=None):
    """Correct: PyTorch's formula in plain torch."""
    grads = _grads(parameters)
    total = _norm(grads, float(norm_type))
    if error_if_nonfinite and not bool(total.isfinite()):
        raise RuntimeError("the total norm is non-finite")
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def clip_inf_norm_is_one(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                         foreach=None):
    grads = _grads(parameters)
    _guard(grads, error_if_nonfinite)
    if math.isinf(float(norm_type)):
        total = torch.tensor(1.0)  # the reported bug: every inf-norm came out 1.0
    else:
        total = _norm(grads, float(norm_type))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def clip_coefficient_not_capped(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                                foreach=None):
    grads = _grads(parameters)
    _guard(grads, error_if_nonfinite)
    total = _norm(grads, float(norm_type))
    coef = max_norm / (total + 1e-6)  # scales small gradients up to max_norm
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def clip_reads_the_parameters_twice(parameters, max_norm, norm_type=2.0,
                                    error_if_nonfinite=False, foreach=None):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    _guard(grads, error_if_nonfinite)
    total = _norm(grads, float(norm_type))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in parameters:  # a generator is empty by now: nothing is clipped
        if p.grad is not None:
            p.grad.mul_(coef.to(p.grad.dtype))
    return total


def clip_returns_the_clipped_norm(parameters, max_norm, norm_type=2.0,
                                  error_if_nonfinite=False, foreach=None):
    grads = _grads(parameters)
    _guard(grads, error_if_nonfinite)
    clip_grad_norm(grads_as_params(grads), max_norm, norm_type)
    return _norm(grads, float(norm_type))  # N after clipping, not before


def grads_as_params(grads):
    out = []
    for g in grads:
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g  # the same tensor: clipping it clips the caller's
        out.append(p)
    return out


def clip_sums_the_tensor_norms(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                               foreach=None):
    grads = _grads(parameters)
    _guard(grads, error_if_nonfinite)
    p = float(norm_type)
    total = sum(torch.linalg.vector_norm(g, p) for g in grads) if grads else torch.tensor(0.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def clip_ignores_error_if_nonfinite(parameters, max_norm, norm_type=2.0,
                                    error_if_nonfinite=False, foreach=None):
    return clip_grad_norm(parameters, max_norm, norm_type, False, foreach)


def clip_crashes_on_missing_grads(parameters, max_norm, norm_type=2.0,
                                  error_if_nonfinite=False, foreach=None):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    _guard([p.grad for p in parameters if p.grad is not None], error_if_nonfinite)
    total = _norm([p.grad for p in parameters], float(norm_type))  # None has no norm
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in parameters:
        p.grad.mul_(coef.to(p.grad.dtype))
    return total


CORRECT = [clip_grad_norm]
