"""Trajectories of an update rule and of a torch.optim optimizer on one gradient sequence, and
their comparison step by step (parameters and every state entry)."""

import torch

from refllm.testing import assert_close


def run_rule(rule, params, grads, hyper, **extra):
    """[(params, state)] after each step of a pure rule ``rule(params, g, state, **hyper)``."""
    state, trajectory = None, []
    for g in grads:
        params, state = rule(params, g, state, **hyper, **extra)
        trajectory.append((params, state))
    return trajectory


def run_torch(optimizer, params, grads, hyper, **options):
    """The same for ``optimizer(params, **hyper, **options)``, a torch.optim class."""
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = optimizer(ps, **hyper, **options)
    trajectory = []
    for g in grads:
        for p, gi in zip(ps, g):
            p.grad = gi.clone()
        opt.step()
        trajectory.append(([p.detach().clone() for p in ps],
                           [{k: v.clone() for k, v in opt.state[p].items()} for p in ps]))
    return trajectory


def assert_trajectories(actual, expected, keys=None, **kw):
    """Every step's parameters and state entries close (``assert_close(**kw)``), the state's keys
    equal (and equal to ``keys`` when given) and of one dtype."""
    for (pa, sa), (pe, se) in zip(actual, expected, strict=True):
        for a, e in zip(pa, pe, strict=True):
            assert_close(a, e, **kw)
        for a, e in zip(sa, se, strict=True):
            assert sorted(a) == sorted(e)
            if keys is not None:
                assert sorted(a) == sorted(keys)
            for k in a:
                assert a[k].dtype == e[k].dtype, k
                assert_close(a[k], e[k], **kw)
