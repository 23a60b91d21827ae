"""`check_clip_grad_norm`: any function with the signature of ``torch.nn.utils.clip_grad_norm_``.

    N = ||(g_1, ..., g_K)||_p,     g_j <- g_j * min(max_norm / (N + 1e-6), 1)

The function is called as PyTorch's is, ``fn(parameters, max_norm, **kwargs)`` with non-default
keywords only (``norm_type``, ``error_if_nonfinite``, ``foreach``), on fresh parameters of the
checked dtype and device whose ``.grad`` holds the drawn gradients; ``parameters`` is a list, a
lone tensor or a generator (read once, as ``model.parameters()`` is). Judged against
:func:`refllm.ops.clip_grad.clip_grad_norm_` run in float64 on the same (rounded) gradients:

* "total norm": the returned N;
* "clipped gradients": every ``.grad`` after the call (a parameter without a gradient keeps none);
* "parameters unchanged": the parameters' values;
* "raises on a non-finite norm": with ``error_if_nonfinite=True`` and an infinite gradient, the
  call raises ``RuntimeError`` (PyTorch's).

The tolerance is the policy's (:mod:`refllm.testing.engine.policy`) with an a-priori bound: N is
a sum of n terms |g|^p (relative ``gamma_{n+2}``, and ``1/p`` of it after the root; the inf-norm
is exact), the clipped gradient ``g * c`` inherits N's relative error in c, plus two roundings.
The default call ``clip_grad_norm_(params, 1.0)`` is judged first on fixed gradients.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.clip_grad_norm.record import RECORD
from refllm.testing.clip_grad_norm.strategy import (
    ClipProblem,
    clip_default_problems,
    clip_problems,
)
from refllm.testing.engine.calls import call_guarded, describe_exception
from refllm.testing.engine.case import to_source
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.policy import compare
from refllm.testing.engine.record import OpRecord
from refllm.testing.engine.report import Report
from refllm.testing.engine.search import Outcome
from refllm.testing.engine.targets import import_lines
from refllm.testing.engine.tolerances import gamma

PROPERTIES = ["raises on valid input", "returns a tensor", "total norm", "clipped gradients",
              "parameters unchanged", "raises on a non-finite norm"]


def check_clip_grad_norm(fn: Callable[..., Any] | str, *, features: Iterable[str] | None = None,
                         **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's global-norm gradient clipping.

    ``features``: which of `refllm.testing.clip_grad_norm.strategy.CLIP_FEATURES` to exercise
    (default: all); ``contract``: a `refllm.testing.contract.Contract` (``sizes={"numel": (lo,
    hi)}`` per gradient, ``dtypes``, ``long_axes``, ``budget``, ``unsupported``). The other
    options are every check's (`refllm.testing.engine.options.CheckOptions`: see
    `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, fn, features=features, **options)


def build(record: OpRecord, ctx: CheckContext) -> ClipSpec:
    """The spec of one clipping check (the record's ``build`` hook)."""
    c = ctx.contract
    problems = clip_problems(features=ctx.features, max_size=ctx.max_size,
                             long_axes=c.long_axes, budget=c.budget, sizes=ctx.ranges,
                             dtype_max=float(torch.finfo(ctx.dtype).max))
    return ClipSpec(fn=ctx.impl, target=ctx.target, dtype=ctx.dtype, device=ctx.device,
                    problems=problems, unsupported=c.unsupported,
                    explicit=clip_default_problems(max_size=ctx.max_size, long=c.long_axes))


@dataclasses.dataclass
class ClipSpec:
    fn: Callable[..., Any]
    target: str
    dtype: torch.dtype
    device: str
    problems: st.SearchStrategy
    unsupported: tuple[type[BaseException], ...]
    explicit: list[ClipProblem] = dataclasses.field(default_factory=list)
    op: str = "clip-grad-norm"
    properties: list[str] = dataclasses.field(default_factory=lambda: list(PROPERTIES))

    def strategy(self) -> st.SearchStrategy:
        return self.problems

    def case_of(self, problem: ClipProblem) -> ClipProblem:
        return dataclasses.replace(problem, grads=[_rounded(g, self.dtype) for g in problem.grads])

    def evaluate(self, problem: ClipProblem) -> list[Outcome]:
        problem = self.case_of(problem)
        params = _params(problem.grads, self.dtype, self.device)
        result, exc = call_guarded(lambda: self.fn(_passed(params, problem.how),
                                                   problem.max_norm, **problem.kwargs))
        if problem.kwargs.get("error_if_nonfinite") and _nonfinite(problem.grads):
            raised = isinstance(exc, RuntimeError)
            return [Outcome("raises on a non-finite norm", raised,
                            "returned though error_if_nonfinite=True and a gradient is "
                            "infinite (PyTorch raises RuntimeError)" if exc is None else
                            f"raised {describe_exception(exc)}, expected a RuntimeError")]
        if exc is not None:
            return [Outcome("raises on valid input", False, describe_exception(exc))]
        out = [Outcome("raises on valid input", True)]
        expected_norm, expected_grads = _reference(problem)
        plain_norm, plain_grads = _reference(problem, self.dtype)
        norm_bound, grad_bounds = _bounds(problem, expected_norm, self.dtype)
        if not isinstance(result, torch.Tensor) or result.numel() != 1:
            seen = type(result).__name__ if not isinstance(result, torch.Tensor) else \
                f"a tensor of shape {tuple(result.shape)}"
            out.append(Outcome("returns a tensor", False, f"returned {seen}, expected N as a "
                                                          "0-d tensor"))
        else:
            out.append(Outcome("returns a tensor", True))
            v = compare(result.reshape(()), expected_norm, dtype=self.dtype, plain=plain_norm,
                        bound=norm_bound)
            out.append(Outcome("total norm", v.passed, "disagrees with refllm's float64 "
                                                       "reference", v))
        out.append(self._grads(params, expected_grads, plain_grads, grad_bounds))
        moved = [i for i, p in enumerate(params) if bool((p.detach() != 0).any())]
        out.append(Outcome("parameters unchanged", not moved,
                           f"the values of parameter {moved[:1]} changed (only .grad may)"))
        return out

    def _grads(self, params: list[torch.Tensor], expected: list[torch.Tensor | None],
               plain: list[torch.Tensor | None],
               bounds: list[torch.Tensor | None]) -> Outcome:
        for i, (p, e, q, b) in enumerate(zip(params, expected, plain, bounds)):
            if e is None:
                if p.grad is not None:
                    return Outcome("clipped gradients", False, f"parameter {i} had no gradient "
                                                               "and has one after the call")
                continue
            if p.grad is None or p.grad.shape != e.shape:
                return Outcome("clipped gradients", False, f"parameter {i}'s gradient is "
                               f"{None if p.grad is None else tuple(p.grad.shape)} after the "
                               f"call, expected {tuple(e.shape)}")
            v = compare(p.grad, e, dtype=self.dtype, plain=q, bound=b)
            if not v.passed:
                return Outcome("clipped gradients", False, f"the gradient of parameter {i} "
                               "disagrees with refllm's float64 reference", v)
        return Outcome("clipped gradients", True)

    def snippet(self, problem: ClipProblem, failed: list[str]) -> str:
        problem = self.case_of(problem)
        return SNIPPET.format(target=self.target or repr(self.fn), failed=", ".join(failed),
                              import_fn=import_lines(self.target, "fn", self.fn),
                              dtype=self.dtype, device=self.device,
                              grads=to_source(problem.grads), max_norm=problem.max_norm,
                              kwargs=to_source(problem.kwargs), how=problem.how)


def _rounded(g: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """The gradient as the checked dtype holds it, in float64."""
    return None if g is None else g.to(dtype).to(torch.float64)


def _nonfinite(grads: list[torch.Tensor | None]) -> bool:
    return any(g is not None and not bool(g.isfinite().all()) for g in grads)


def _params(grads: list[torch.Tensor | None], dtype: torch.dtype,
            device: str) -> list[torch.Tensor]:
    """Fresh zero parameters of each gradient's shape whose ``.grad`` holds it."""
    out = []
    for g in grads:
        shape = g.shape if g is not None else (2,)
        p = torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
        p.grad = None if g is None else g.to(dtype=dtype, device=device, copy=True)
        out.append(p)
    return out


def _passed(params: list[torch.Tensor], how: str) -> Any:
    if how == "tensor":
        return params[0]
    return iter(params) if how == "generator" else params


def _reference(problem: ClipProblem,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, list]:
    """refllm's N and clipped gradients (float64 on the CPU; ``dtype``: the plain computation
    in the checked dtype, for the low-precision policy)."""
    from refllm.ops.clip_grad import clip_grad_norm_

    params = _params(problem.grads, dtype, "cpu")
    n = clip_grad_norm_(params, problem.max_norm, **problem.kwargs)
    return n.double(), [None if p.grad is None else p.grad.double() for p in params]


def _bounds(problem: ClipProblem, norm: torch.Tensor,
            dtype: torch.dtype) -> tuple[torch.Tensor | None, list]:
    """A-priori bounds (module docs) of N and of every clipped gradient, in ``dtype``; none
    where ``gamma_n`` is no bound (n u >= 1/2: the policy's same-dtype rule decides)."""
    live = [g for g in problem.grads if g is not None]
    n = sum(g.numel() for g in live) + len(live)  # the elements, then the per-tensor norms
    p = float(problem.kwargs.get("norm_type", 2.0))
    u = torch.finfo(dtype).eps / 2
    if n * u >= 0.5:
        return None, [None for _ in problem.grads]
    rel = 0.0 if math.isinf(p) else gamma(n + 2, dtype) * max(1.0, 1.0 / p)
    value = float(norm)
    coef_rel = rel + 3 * u  # N + eps, the division, the min
    grads = [None if g is None else g.abs() * (coef_rel + u) for g in problem.grads]
    return torch.tensor(rel * value + u * value), grads


SNIPPET = '''\
# refllm oracle repro: clip-grad-norm of {target} disagrees with refllm's float64 reference
# failing: {failed}
import torch

{import_fn}
from refllm.ops.clip_grad import clip_grad_norm_ as reference

dtype, device = {dtype}, {device!r}
grads = {grads}  # None: a parameter without a gradient
max_norm, kwargs, how = {max_norm!r}, {kwargs}, {how!r}  # how the parameters are passed


def params(to_dtype, to_device):
    out = []
    for g in grads:
        p = torch.zeros(g.shape if g is not None else (2,), dtype=to_dtype, device=to_device,
                        requires_grad=True)
        p.grad = None if g is None else g.to(dtype=to_dtype, device=to_device, copy=True)
        out.append(p)
    return out


def passed(ps):
    return ps[0] if how == "tensor" else iter(ps) if how == "generator" else ps


expected_params, actual_params = params(torch.float64, "cpu"), params(dtype, device)
expected = reference(passed(expected_params), max_norm, **kwargs)
actual = fn(passed(actual_params), max_norm, **kwargs)
print("total norm", actual, "expected", expected.item())
for i, (a, e) in enumerate(zip(actual_params, expected_params)):
    if a.grad is not None and e.grad is not None:
        print(f"grad {{i}}: max abs error {{(a.grad.double().cpu() - e.grad).abs().max():.3g}}")
'''

__all__ = ["ClipSpec", "check_clip_grad_norm"]
