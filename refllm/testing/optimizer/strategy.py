"""Hypothesis strategies for optimizers: hyper-parameters and whole optimization problems.

:func:`optimizer_problems` draws an :class:`OptimizerProblem`: initial parameter tensors (random
small shapes, 0-d and 1-element included), their grouping into param groups with per-group
hyper-parameters in torch.optim's names, and a gradient per parameter per step (some None). It runs
any ``torch.optim.Optimizer`` class (:meth:`OptimizerProblem.run`) or any pure update rule of
`refllm.ops.update_rule` (:meth:`OptimizerProblem.run_rule`) and returns a :class:`Trajectory` of
parameters and state after every step, which :meth:`Trajectory.assert_close` compares::

    @given(optimizer_problems(like="adamw"))
    def test_my_adamw(problem):
        problem.run(MyAdamW).assert_close(problem.run(torch.optim.AdamW, foreach=False),
                                          kind="impl")

>>> from hypothesis import given, settings
>>> import torch
>>> @settings(max_examples=5, deadline=None)
... @given(optimizer_problems(like="sgd", steps=(2, 3)))
... def check(problem):
...     problem.run(torch.optim.SGD, foreach=False).assert_close(
...         problem.run(torch.optim.SGD, foreach=True))
>>> check()
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm._validation import require_int
from refllm.ops.choices import OPTIMIZER_KINDS
from refllm.testing.engine.case import to_source
from refllm.testing.engine.compare import assert_close
from refllm.testing.engine.odds import FeaturePlan, feature_plan, sometimes
from refllm.testing.engine.sizes import (
    DEFAULT_BUDGET,
    LONG_LENGTHS,
    Ranges,
    check_ranges,
    long_length,
    long_tier,
)
from refllm.testing.optimizer.record import RECORD as _RECORD

LIKES = OPTIMIZER_KINDS  # one list: refllm.ops.choices
SHAPES = [(), (1,), (2,), (3,), (5,), (1, 1), (2, 3), (3, 2), (1, 4), (2, 1, 2)]
MATRIX_SHAPES = [(1, 1), (1, 3), (3, 1), (2, 2), (2, 3), (3, 2), (4, 2), (2, 5), (5, 3)]
"""Muon's shapes: torch.optim.Muon takes 2-D parameters only (any other is a ValueError when the
optimizer is built), so its problems hold matrices, wide, tall and square (its learning-rate
adjustments depend on the aspect ratio)."""
OPTIMIZER_AXES = _RECORD.axes  # one declaration: the op's record
"""``sizes={"numel": (lo, hi)}`` bounds the element count of every parameter."""


def _rate(low: float, high: float) -> st.SearchStrategy[float]:
    """A float in [max(low, 1e-4), high], now and then ``low`` itself (see `sometimes`).

    No rates so small that a step underflows. With ``just(low) | floats(...)``, Hypothesis drew
    lr = 0 in every group of 92 of 160 SGD problems (nothing moved); see docs/testing.md.
    """
    return sometimes(st.just(low), otherwise=st.floats(max(low, 1e-4), high))


TORCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "gd": {},
    "sgd": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
            "maximize": False},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
             "maximize": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False,
              "maximize": False},
    "muon": {"weight_decay": 0.1, "momentum": 0.95, "nesterov": True,
             "ns_coefficients": (3.4445, -4.775, 2.0315), "eps": 1e-7, "ns_steps": 5,
             "adjust_lr_fn": None},
    "adafactor": {"beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0, "weight_decay": 0.0,
                  "maximize": False},
}
"""torch.optim's default hyper-parameters (torch 2.x) of each kind, all but lr (which has none
worth testing at: every run sets its own)."""


def settable_hyper(like: str = "adamw") -> dict[str, Any]:
    """The hyper-parameters of ``torch.optim.<like>`` that a check may hold fixed (``--set``),
    each with torch's default (`TORCH_DEFAULTS`; ``lr``, which has none, with 1e-3): the
    command line's values are validated against these types (`refllm.testing.engine.hyper`).

    >>> sorted(settable_hyper("sgd"))
    ['dampening', 'lr', 'maximize', 'momentum', 'nesterov', 'weight_decay']
    """
    if like not in LIKES:
        raise ValueError(f"like must be one of {LIKES}, got {like!r}")
    return {"lr": 1e-3, **TORCH_DEFAULTS[like]}


def hyper_parameters(*, like: str = "adamw") -> st.SearchStrategy[dict[str, Any]]:
    """Valid keyword arguments of ``torch.optim.<like>`` (``like="gd"``: just ``lr``; "muon" and
    "adafactor": ``torch.optim.Muon``'s and ``torch.optim.Adafactor``'s, see `_DRAWN`).

    About one draw in five is torch's defaults (`TORCH_DEFAULTS`) with a drawn lr, one in five
    departs from them in exactly one hyper-parameter, one in five in exactly two (see
    `refllm.testing.engine.odds.feature_plan`); the rest draw each freely: weight decay and
    momentum mostly non-zero, nesterov, amsgrad and maximize too. The defaults are written out in
    the dict (refllm's rules and error bounds read them), with the values torch would take.
    """
    if like not in LIKES:
        raise ValueError(f"like must be one of {LIKES}, got {like!r}")
    return _hyper_parameters(like)


@functools.cache
def _hyper_parameters(like: str) -> st.SearchStrategy[dict[str, Any]]:
    return feature_plan(list(TORCH_DEFAULTS[like]), exclusive=[("dampening", "nesterov")]).flatmap(
        lambda plan: _group_hyper(like, plan))


def _group_hyper(like: str, plan: FeaturePlan) -> st.SearchStrategy[dict[str, Any]]:
    if like == "gd":
        return st.fixed_dictionaries({"lr": _rate(0.0, 0.5)})
    if like == "sgd":
        return _sgd_hyper(plan)
    if like in _DRAWN:
        return _planned(like, plan)
    defaults = TORCH_DEFAULTS[like]
    drawn = {"betas": st.tuples(_rate(0.0, 0.999), _rate(0.0, 0.999)),
             "eps": st.floats(1e-10, 1e-2), "weight_decay": _rate(0.0, 0.2),
             "amsgrad": st.booleans(), "maximize": st.booleans()}
    flags = ("amsgrad", "maximize")  # on means True
    chosen = {k: (drawn[k] if plan.forced[k] is None else
                  st.just(True) if k in flags and plan.forced[k] else
                  drawn[k] if plan.forced[k] else st.just(defaults[k])) for k in drawn}
    return st.fixed_dictionaries({"lr": _rate(0.0, 0.1), **chosen})


_DRAWN: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "muon": {
        "weight_decay": _rate(0.0, 0.2), "momentum": _rate(0.0, 0.99),
        "nesterov": st.booleans(),
        # torch's quintic (which does not converge to 1), one that does, and the cubic
        "ns_coefficients": st.sampled_from([(3.4445, -4.775, 2.0315), (2.0, -1.5, 0.5),
                                            (1.5, -0.5, 0.0)]),
        "eps": st.sampled_from([1e-7, 1e-3]), "ns_steps": st.integers(0, 6),
        "adjust_lr_fn": st.sampled_from([None, "original", "match_rms_adamw"])},
    "adafactor": {
        "beta2_decay": sometimes(st.just(-0.8), otherwise=st.floats(-1.0, 0.0)),
        # eps1 None: the parameter dtype's machine epsilon; an explicit eps1 stays >= 1e-12, so
        # that eps1^2 is a normal float32
        "eps": st.tuples(st.none() | st.floats(1e-12, 1e-3), st.floats(1e-5, 1e-1)),
        "d": sometimes(st.just(1.0), otherwise=st.floats(1.0, 4.0)),
        "weight_decay": _rate(0.0, 0.2), "maximize": st.booleans()},
}
"""The drawn hyper-parameters of Muon and Adafactor (``lr`` apart), in torch.optim's names."""


def _planned(like: str, plan: FeaturePlan) -> st.SearchStrategy[dict[str, Any]]:
    """Each hyper-parameter as the plan says: drawn (None), torch's default (False) or drawn
    other than the default (True)."""
    defaults, drawn = TORCH_DEFAULTS[like], _DRAWN[like]
    chosen = {k: (v if plan.forced[k] is None else st.just(defaults[k]) if not plan.forced[k]
                  else v.filter(functools.partial(operator.ne, defaults[k])))
              for k, v in drawn.items()}
    return st.fixed_dictionaries({"lr": _rate(0.0, 0.1), **chosen})


@st.composite
def _sgd_hyper(draw: st.DrawFn, plan: FeaturePlan) -> dict[str, Any]:
    forced = plan.forced
    nesterov_on = forced["nesterov"]
    if forced["momentum"] is None and nesterov_on is None:
        momentum = draw(_rate(0.0, 0.99))
    elif forced["momentum"] or nesterov_on:  # Nesterov needs momentum
        momentum = draw(st.floats(1e-4, 0.99))
    else:
        momentum = 0.0
    if nesterov_on is None:
        nesterov = momentum > 0 and draw(st.booleans())
    else:
        nesterov = bool(nesterov_on)
    if nesterov or forced["dampening"] is False:
        dampening = 0.0
    else:
        dampening = draw(_rate(0.0, 0.9) if forced["dampening"] is None else
                         st.floats(1e-4, 0.9))
    wd = forced["weight_decay"]
    weight_decay = draw(_rate(0.0, 0.2) if wd is None else st.floats(1e-4, 0.2)) if wd is not \
        False else 0.0
    maximize = draw(st.booleans()) if forced["maximize"] is None else forced["maximize"]
    return {"lr": draw(_rate(0.0, 0.5)), "momentum": momentum, "dampening": dampening,
            "nesterov": nesterov, "weight_decay": weight_decay, "maximize": maximize}


MISSING_ODDS = 1 / 10  # how often a gradient is None (besides the parameter that never gets one)
ZERO_ODDS = 1 / 8  # how often a drawn value is 0 (see refllm.testing.engine.odds)


def _values(shape: tuple[int, ...], g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Moderate values (|x| in [1e-3, 4], or 0) so that float64 rules differ by rounding only.

    Drawn from the problem's seeded generator, not value by value through Hypothesis: 100
    examples' values cost 15 s of drawing, more than running the examples. Magnitudes are
    uniform on [1e-3, 4] or log-uniform on it (half and half, so that small values are as common
    as large ones), signs random; a value is 0 with probability `ZERO_ODDS` (not more: plain
    ``floats`` lean to 0, which had made a quarter of the drawn problems' gradients all zero).
    """
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    log_uniform = torch.exp(math.log(1e-3) + u * math.log(4.0 / 1e-3))
    uniform = 1e-3 + u * (4.0 - 1e-3)
    pick = torch.rand(shape, generator=g, dtype=torch.float64) < 0.5
    sign = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    zero = torch.rand(shape, generator=g, dtype=torch.float64) < ZERO_ODDS
    values = torch.where(pick, log_uniform, uniform) * sign
    return values.masked_fill(zero, 0.0).to(dtype)


@dataclasses.dataclass
class Trajectory:
    """Parameters and per-parameter state after each step: ``params[k][i]``, ``states[k][i]``."""

    params: list[list[torch.Tensor]]
    states: list[list[dict[str, Any]]]

    def assert_close(self, expected: Trajectory, *, kind: str = "exact") -> None:
        """Every parameter and every state tensor (and the step) close to ``expected``'s."""
        assert len(self.params) == len(expected.params), "trajectories differ in length"
        for k, (ps, qs, ss, rs) in enumerate(zip(self.params, expected.params, self.states,
                                                 expected.states)):
            for i, (p, q, s, r) in enumerate(zip(ps, qs, ss, rs)):
                assert_close(p, q, kind=kind, msg=f"step {k + 1}, params[{i}]")
                assert sorted(s) == sorted(r), f"step {k + 1}, state[{i}] keys {sorted(s)} " \
                                               f"!= {sorted(r)}"
                for key in s:
                    a, b = torch.as_tensor(s[key]), torch.as_tensor(r[key])
                    assert_close(a.to(q.dtype), b.to(q.dtype), kind=kind,
                                 msg=f"step {k + 1}, state[{i}][{key!r}]")


@dataclasses.dataclass
class OptimizerProblem:
    """Initial parameters, param groups with their hyper-parameters, and gradients per step."""

    like: str
    params: list[torch.Tensor]
    groups: list[list[int]]  # indices into params, one list per param group
    hyper: list[dict[str, Any]]  # torch.optim keyword arguments, one dict per param group
    grads: list[list[torch.Tensor | None]]  # grads[k][i]: gradient of params[i] at step k (or None)
    save_load_at: int | None = None  # run(): state_dict round trip into a new optimizer here

    def param_groups(self, params: list[torch.Tensor]) -> list[dict[str, Any]]:
        """torch.optim's list of param-group dicts over ``params`` (fresh leaves of the problem)."""
        return [dict(h, params=[params[i] for i in idx]) for idx, h in zip(self.groups, self.hyper)]

    def run(self, optimizer_cls: Callable[..., torch.optim.Optimizer], *,
            save_load_at: int | None | str = "problem", **fixed_hyper: Any) -> Trajectory:
        """Run ``optimizer_cls(param_groups, **fixed_hyper)``, setting ``.grad`` before each step.

        At step ``save_load_at`` (the problem's by default), the state dict is deep-copied, a new
        optimizer is built on the same parameters and loads it, and the run continues with it.
        """
        at = self.save_load_at if save_load_at == "problem" else save_load_at
        params = [p.clone() for p in self.params]
        make = lambda: optimizer_cls(self.param_groups(params), **fixed_hyper)  # noqa: E731
        opt, out = make(), Trajectory([], [])
        for k, grads in enumerate(self.grads):
            if k == at:
                saved = copy.deepcopy(opt.state_dict())
                opt = make()
                opt.load_state_dict(saved)
            for p, g in zip(params, grads):
                p.grad = None if g is None else g.clone()
            opt.step()
            out.params.append([p.detach().clone() for p in params])
            out.states.append([_clone_state(opt.state.get(p, {})) for p in params])
        return out

    def run_rule(self, rule: Callable[..., Any], **fixed_hyper: Any) -> Trajectory:
        """Run a pure rule ``(params, grads, state, **hyper)`` group by group, skipping None grads.

        The hyper-parameters are each group's, with ``fixed_hyper`` on top (keys the rule does not
        take, e.g. ``momentum`` for ``gd``, are dropped).
        """
        params = [p.clone() for p in self.params]
        state: list[dict[str, Any]] = [{} for _ in params]
        out = Trajectory([], [])
        for grads in self.grads:
            for idx, h in zip(self.groups, self.hyper):
                live = [i for i in idx if grads[i] is not None]
                hyper = _accepted(rule, {**h, **fixed_hyper})
                new_p, new_s = rule([params[i] for i in live], [grads[i] for i in live],
                                    [state[i] for i in live], **hyper)
                for i, p, s in zip(live, new_p, new_s):
                    params[i], state[i] = p, s
            out.params.append([p.clone() for p in params])
            out.states.append([_clone_state(s) for s in state])
        return out

    def snippet(self) -> str:
        """Python source that rebuilds this problem exactly."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        args = ", ".join(f"{k}={to_source(v)}" for k, v in fields.items())
        return f"problem = OptimizerProblem({args})"


def _clone_state(s: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}


def _accepted(rule: Callable[..., Any], hyper: dict[str, Any]) -> dict[str, Any]:
    names = _parameter_names(rule)
    return {k: v for k, v in hyper.items() if k in names}


@functools.lru_cache(maxsize=64)
def _parameter_names(rule: Callable[..., Any]) -> frozenset[str]:
    import inspect

    return frozenset(inspect.signature(rule).parameters)


@st.composite
def optimizer_problems(draw: st.DrawFn, *, like: str = "adamw", dtype: torch.dtype = torch.float64,
                       max_params: int = 4, max_groups: int = 3, none_grads: bool = True,
                       steps: tuple[int, int] = (1, 25), hyper: Any = None,
                       save_load: bool = True, long_axes: bool = True,
                       budget: int = DEFAULT_BUDGET,
                       sizes: Ranges | None = None) -> OptimizerProblem:
    """An :class:`OptimizerProblem` for an optimizer like ``torch.optim.<like>``.

    ``hyper``: None (draw with :func:`hyper_parameters`), a strategy of hyper-parameter dicts, or a
    dict of fixed values (each a value or a strategy) laid over the drawn ones. ``none_grads``: some
    gradients are None (and one parameter may never get one). ``steps``: (min, max) step count.
    ``save_load``: draw a step at which :meth:`OptimizerProblem.run` round-trips the state dict.
    Tensors hold at most 6 elements, so naive rules stay quick, except in about one problem in
    four (``long_axes``): there one parameter is a vector of a length that crosses a SIMD width
    or a chunk (15, 16, 17, ..., 511, 512, 513, 1000, 2047, 2049, 4097: mostly odd, so a
    vectorised loop has a scalar tail; half the time one of the thousands), of at most
    ``budget`` elements (default 2^20). For Muon every parameter is a matrix
    (`MATRIX_SHAPES`; the long one has 1 to 3 rows or columns), for Adafactor the long one is a
    matrix half the time (its factored second moments).
    ``sizes={"numel": (lo, hi)}`` keeps every parameter's element count in [lo, hi].
    """
    if like not in LIKES:
        raise ValueError(f"like must be one of {LIKES}, got {like!r}")
    require_int("budget", budget, low=1)
    numel = check_ranges(sizes, OPTIMIZER_AXES, "optimizer_problems").get("numel")
    n = draw(st.integers(1, max_params))
    shapes = [draw(st.sampled_from(MATRIX_SHAPES if like == "muon" else SHAPES))
              for _ in range(n)]
    if numel is not None:
        shapes = [_within(like, s, numel) for s in shapes]
    n_groups = draw(st.integers(1, min(max_groups, n)))
    owner = [draw(st.integers(0, n_groups - 1)) for _ in range(n)]
    groups = [[i for i in range(n) if owner[i] == g] for g in range(n_groups)]
    groups = [g for g in groups if g]
    # one plan for the whole problem: on the default call every group has torch's defaults
    plan = draw(feature_plan(list(TORCH_DEFAULTS[like]), exclusive=[("dampening", "nesterov")]))
    hyper_strategy = _hyper_strategy(like, hyper, plan)  # built (and validated) once
    hypers = [draw(hyper_strategy) for _ in groups]
    long, rng = long_tier(draw, long_axes)
    if long:
        lo, hi = numel or (1, LONG_LENGTHS[-1])
        # half the time in the thousands: past a chunk of 1024, not only a SIMD width
        length = (rng.random() < 0.5 and long_length(rng, max(lo, 1000), min(hi, budget))) or \
            long_length(rng, lo, min(hi, budget))
        if length is not None:
            shapes[rng.randrange(n)] = _long_shape(like, length, rng)
    lo, hi = steps
    n_steps = draw(sometimes(st.just(lo), otherwise=st.integers(min(lo + 1, hi), hi)))
    never = draw(st.sampled_from([None, *range(n)])) if none_grads else None
    # the structure above is Hypothesis' (it shrinks it); the values and which gradients are
    # missing come from one drawn seed, as in refllm.testing.sdpa.strategy
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    params = [_values(s, g, dtype) for s in shapes]
    grads = []
    for _ in range(n_steps):
        row: list[torch.Tensor | None] = []
        for i, s in enumerate(shapes):
            skipped = float(torch.rand((), generator=g)) < MISSING_ODDS
            missing = none_grads and (i == never or skipped)
            row.append(None if missing else _values(s, g, dtype))
        grads.append(row)
    at = draw(st.none() | st.integers(1, n_steps - 1)) if save_load and n_steps > 1 else None
    return OptimizerProblem(like, params, groups, hypers, grads, at)


def _within(like: str, shape: tuple[int, ...], numel: tuple[int, int]) -> tuple[int, ...]:
    """``shape``, or a vector (Muon: a one-row matrix) of the nearest element count in
    ``numel``."""
    lo, hi = numel
    if lo <= math.prod(shape) <= hi:
        return shape
    n = max(lo, min(hi, math.prod(shape)))
    return (1, n) if like == "muon" else (n,)


def _long_shape(like: str, length: int, rng: Any) -> tuple[int, ...]:
    """The kernel-sized parameter: a vector of ``length`` elements; for Muon (matrices only) and
    half the time for Adafactor (its factored path) a matrix with one long axis, 1 to 3 rows or
    columns on the other (at most ``length`` elements in all: the budget holds)."""
    if not (like == "muon" or (like == "adafactor" and rng.random() < 0.5)):
        return (length,)
    short = rng.randint(1, 3)
    long = max(1, length // short)
    return (short, long) if rng.random() < 0.5 else (long, short)


def _hyper_strategy(like: str, hyper: Any,
                    plan: FeaturePlan) -> st.SearchStrategy[dict[str, Any]]:
    if isinstance(hyper, st.SearchStrategy):
        return hyper
    base = _group_hyper(like, plan)
    if hyper is None:
        return base
    fixed = {k: v if isinstance(v, st.SearchStrategy) else st.just(v) for k, v in hyper.items()}
    return st.tuples(base, st.fixed_dictionaries(fixed)).map(lambda ab: {**ab[0], **ab[1]})


def optimizer_default_problems(*, like: str = "adamw", dtype: torch.dtype = torch.float64,
                               steps: tuple[int, int] = (1, 25), hyper: Any = None,
                               sizes: Ranges | None = None, long: bool = True,
                               budget: int = DEFAULT_BUDGET) -> list[OptimizerProblem]:
    """Fixed problems on torch's default hyper-parameters (`TORCH_DEFAULTS`), the same whatever
    the seed: one param group, then two groups with different lr, every gradient present.

    ``hyper``: a dict's plain values are laid over the defaults (its strategies are not drawn
    here); for a strategy of hyper-parameters there is no fixed problem (an empty list).
    ``sizes={"numel": (lo, hi)}``: parameters of another element count are replaced by vectors
    inside the range (Muon: one-row matrices). With ``long``, a third problem holds a vector (Muon:
    a one-row matrix) of 1037 elements (past SIMD widths and a 1024 chunk; fewer within ``sizes``
    and ``budget``). Muon's parameters are matrices of shapes (2, 3), (5, 2) and (1, 1).
    """
    if like not in LIKES:
        raise ValueError(f"like must be one of {LIKES}, got {like!r}")
    if isinstance(hyper, st.SearchStrategy):
        return []
    fixed = {k: v for k, v in (hyper or {}).items() if not isinstance(v, st.SearchStrategy)}
    lr = 0.1 if like in ("gd", "sgd") else 1e-2  # Adafactor's default; Adam's and Muon's 1e-3
    g = torch.Generator().manual_seed(20260704)
    shapes: list[tuple[int, ...]] = [(2, 3), (5,), ()]
    if like == "muon":
        shapes = [(2, 3), (5, 2), (1, 1)]  # wide, tall, a scalar matrix
    numel = check_ranges(sizes, OPTIMIZER_AXES, "optimizer_default_problems").get("numel")
    if numel is not None:
        shapes = [_within(like, s, numel) for s in shapes]
    n_steps = max(steps[0], min(steps[1], 6))
    out = []
    for groups, lrs in (([[0, 1, 2]], [lr]), ([[0, 2], [1]], [lr, lr / 3])):
        hypers = [{"lr": r, **TORCH_DEFAULTS[like], **fixed} for r in lrs]
        params = [_values(s, g, dtype) for s in shapes]
        grads: list[list[torch.Tensor | None]] = [
            [_values(s, g, dtype) for s in shapes] for _ in range(n_steps)]
        out.append(OptimizerProblem(like, params, groups, hypers, grads, None))
    n = min(LONG_DEFAULT_NUMEL, budget, *(numel[1:] if numel else ()))
    if long and n >= 17 and (numel is None or n >= numel[0]):
        # kernel-sized: past SIMD widths 8, 16 and a 1024 chunk (Muon: one row of n)
        shapes = [(1, n) if like == "muon" else (n,)] + shapes[2:]
        params = [_values(s, g, dtype) for s in shapes]
        grads = [[_values(s, g, dtype) for s in shapes] for _ in range(n_steps)]
        hypers = [{"lr": lr, **TORCH_DEFAULTS[like], **fixed}]
        out.append(OptimizerProblem(like, params, [list(range(len(shapes)))], hypers, grads,
                                    None))
    return out


LONG_DEFAULT_NUMEL = 1037
"""Elements of the kernel-sized parameter of the fixed problems: past SIMD widths of 8 and 16
with a scalar tail (1037 = 64 * 16 + 13) and past one chunk of 1024."""
