"""`check_optimizer`: any ``torch.optim.Optimizer`` class against refllm's update rules.

    sgd:   b <- mu b + (1 - dampening) g;  p <- p - lr b        (with weight decay, nesterov)
    adam:  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
           p <- p - lr m_hat / (sqrt(v_hat) + eps)               (Kingma & Ba 2015, Alg. 1)
    adamw: adam with decoupled weight decay p <- p (1 - lr wd)  (Loshchilov & Hutter 2019, Alg. 2)

Hypothesis draws an `OptimizerProblem` (:mod:`refllm.testing.optimizer.strategy`): parameters, param
groups with hyper-parameters, and a gradient per parameter per step (some None), and sometimes a
step at which the optimizer's ``state_dict`` is saved and loaded into a fresh optimizer. The
user's class runs it in the checked dtype; refllm's pure rule (`refllm.ops.update_rule`) runs the
same problem upcast to float64. Every parameter is compared after every step ("parameters"), and
every state entry whose key both keep, as torch.optim keys them ("state 'exp_avg'", ...).
Each element is judged against the a-priori rounding-error bound of its whole trajectory in the
checked dtype (:mod:`refllm.testing.optimizer.error_bounds`; the rule is in
:mod:`refllm.testing.engine.policy`).

    muon:      B <- mu B + (1 - mu) g;  O = NS_k(nesterov ? (1 - mu) g + mu B : B);
               p <- p (1 - lr wd) - lr' O            (Jordan et al. 2024; torch.optim.Muon)
    adafactor: factored R, C (or V for <= 1-D) with beta2_t = 1 - t^tau; U = g / sqrt(V);
               p <- p (1 - lr wd) - max(eps2, RMS(p)) min(lr, t^-1/2) U / max(1, RMS(U)/d)
                                                     (Shazeer & Stern 2018; torch.optim.Adafactor)

torch's default hyper-parameters (all but lr: betas (0.9, 0.999), eps 1e-8, ...) are judged first
on fixed problems, then drawn for every param group in about one problem in five
(docs/oracle.md, "The default call").

Two kinds are judged a little differently:

* Muon: the reference is the same Newton–Schulz iteration (torch's coefficients and steps, not
  the SVD polar factor, which five steps only approximate within [0.68, 1.21] per singular
  value) run in float64. torch runs it in bfloat16 whatever the parameter dtype, and no useful
  a-priori bound of that iteration exists (:mod:`refllm.testing.optimizer.error_bounds`), so
  the parameters are judged elementwise against ``atol + rtol |ref|`` plus an allowance measured
  on each step's own input: twice the largest error of three correct ways of writing bfloat16
  Newton–Schulz, plus 8 bfloat16 units, times the step size, accumulated over the steps
  (`refllm.testing.optimizer.error_bounds.muon_parameter_bounds`). The momentum buffer has its
  a-priori bound. Parameters are 2-D only: torch.optim.Muon raises ValueError for any other
  when it is built.
* Adafactor with ``eps=(None, eps2)``: torch takes eps1 from the parameters' dtype, so the
  float64 reference runs with the checked dtype's machine epsilon (the target still gets None).

State is compared where the target keeps it: a state key of refllm's rule that the target keeps
for no parameter of an example is not compared there; a key it never keeps in the whole check
gets the row "not kept" (never "passed"); a key it keeps for some parameters or steps but not
for others where refllm's rule keeps it fails ("state dropped"). ``state_dict_round_trip=False``
leaves out the mid-run ``state_dict`` round trip (for functional optimizers whose state lives
outside ``self.state``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.ops.choices import OPTIMIZER_KINDS
from refllm.testing.contract import Contract, apply
from refllm.testing.engine.calls import DEFAULT_TIMEOUT, call_guarded, describe_exception
from refllm.testing.engine.case import to_source
from refllm.testing.engine.options import parse_dtype
from refllm.testing.engine.policy import LOW_PRECISION, Verdict, compare
from refllm.testing.engine.report import OracleFailure, PropertyResult, Report
from refllm.testing.engine.search import DEFAULT_THREADS, Outcome, run
from refllm.testing.engine.targets import import_lines, resolve
from refllm.testing.engine.tolerances import ERROR_BOUND_FACTOR, tolerance
from refllm.testing.optimizer.error_bounds import (
    PARAMS_UNBOUNDED,
    muon_parameter_bounds,
    optimizer_error_bounds,
)

LIKES = OPTIMIZER_KINDS  # one list: refllm.ops.choices


@dataclasses.dataclass
class OptimizerSpec:
    op: str
    cls: Callable[..., torch.optim.Optimizer]
    target: str
    like: str
    dtype: torch.dtype
    device: str
    problems: st.SearchStrategy
    properties: list[str] = dataclasses.field(
        default_factory=lambda: ["raises on valid input", "parameters"])
    explicit: list[Any] = dataclasses.field(default_factory=list)  # judged before the search
    params_only: bool = False  # a contract's: compare the parameters only, not the state
    adam_eps: str = "after_correction"  # a contract's: where Adam's eps goes
    # exceptions with which the target refuses an input: reported as unsupported (a contract's)
    unsupported: tuple[type[BaseException], ...] = (NotImplementedError,)

    def strategy(self) -> st.SearchStrategy:
        return self.problems

    def case_of(self, problem: Any) -> Any:
        return _cast(problem, self.dtype, "cpu")

    # per state key: examples where refllm's rule kept it and the target did not / did
    not_kept: dict[str, int] = dataclasses.field(default_factory=dict)
    compared: dict[str, int] = dataclasses.field(default_factory=dict)

    def _rule(self) -> Callable[..., Any]:
        from refllm.ops.choices import update_rule

        return update_rule(self.like)

    def evaluate(self, problem: Any) -> list[Outcome]:
        lp = _cast(problem, self.dtype, "cpu")
        expected = reference_trajectory(lp, self.dtype, adam_eps=self.adam_eps)
        actual, exc = call_guarded(lambda: _cast(lp, self.dtype, self.device).run(self.cls))
        if exc is not None:
            return [Outcome("raises on valid input", False, describe_exception(exc))]
        plain: dict[str, Any] = {}

        def plain_traj() -> Any:
            if "t" not in plain:
                plain["t"] = _resolved(lp, self.dtype).run_rule(self._rule(),
                                                                adam_eps=self.adam_eps)
            return plain["t"]

        bounds = optimizer_error_bounds(_cast(lp, torch.float64, "cpu"), self.dtype,
                                        adam_eps=self.adam_eps)
        if self.like in PARAMS_UNBOUNDED:  # Muon: the allowance of bfloat16 Newton–Schulz
            exact = _resolved(_cast(lp, torch.float64, "cpu"), self.dtype)
            for k, row in enumerate(muon_parameter_bounds(exact, expected)):
                for i, b in enumerate(row):
                    bounds[k][i]["params"] = b / ERROR_BOUND_FACTOR
        outcomes = [Outcome("raises on valid input", True)]
        outcomes.append(_judge_series("parameters", actual.params, expected.params, self.dtype,
                                      lambda k, i: plain_traj().params[k][i],
                                      functools.partial(_bound, bounds, "params")))
        keys = [] if self.params_only else sorted(
            {key for step in expected.states for s in step for key in s})
        for key in keys:
            kept = _state(actual.states, key)
            if all(a is None for row in kept for a in row):
                self.not_kept[key] = self.not_kept.get(key, 0) + 1
                continue  # the target keeps no such state: nothing to compare
            self.compared[key] = self.compared.get(key, 0) + 1
            outcomes.append(_judge_series(
                f"state {key!r}", kept, _state(expected.states, key),
                self.dtype, functools.partial(_plain_state, plain_traj, key),
                functools.partial(_bound, bounds, key)))
        return outcomes

    def annotate(self, report: Report) -> None:
        """Rows "not kept" for the state keys the target never kept; a warning for keys it kept
        in some examples only."""
        for key, n in sorted(self.not_kept.items()):
            name = f"state {key!r}"
            if key not in self.compared:
                report.properties.append(NotKept(name, examples=min(n, report.examples)))
            else:
                report.warnings.append(
                    f"{name} was not kept by the target in {n} example(s) where refllm's rule "
                    f"keeps it, and was compared in the other {self.compared[key]}")

    def snippet(self, problem: Any, failed: list[str]) -> str:
        lp = _cast(problem, self.dtype, "cpu")
        return SNIPPET.format(
            target=self.target or repr(self.cls), failed=", ".join(failed),
            import_cls=import_lines(self.target, "Optimizer", self.cls), like=self.like,
            problem=lp.snippet(), dtype=self.dtype, device=self.device,
            convention="" if self.adam_eps == "after_correction" else
            f", adam_eps={self.adam_eps!r}",
        )


@dataclasses.dataclass
class NotKept(PropertyResult):
    """A state row the target never kept: not compared, so neither passed nor failed."""

    @property
    def passed(self) -> bool:  # no comparison was made, so none is claimed
        return False

    @property
    def status(self) -> str:
        return "not kept"


def reference_trajectory(problem: Any, dtype: torch.dtype,
                         adam_eps: str = "after_correction") -> Any:
    """refllm's float64 trajectory of ``problem`` for a target run in ``dtype``: Muon's
    Newton–Schulz in float64 too, Adafactor's eps1 = None resolved to ``dtype``'s epsilon;
    ``adam_eps``: where Adam's eps goes (a contract's, `refllm.ops.optim_adam.ADAM_EPS`)."""
    from refllm.ops.choices import update_rule

    exact = _resolved(_cast(problem, torch.float64, "cpu"), dtype)
    extra: dict[str, Any] = {"ns_dtype": torch.float64} if problem.like == "muon" else {}
    if problem.like in ("adam", "adamw"):
        extra["adam_eps"] = adam_eps
    return exact.run_rule(update_rule(problem.like), **extra)


def _resolved(problem: Any, dtype: torch.dtype) -> Any:
    """``problem`` with Adafactor's ``eps=(None, eps2)`` written out as torch resolves it for
    parameters of ``dtype`` (its machine epsilon); other problems as they are."""
    if problem.like != "adafactor":
        return problem
    eps1 = torch.finfo(dtype).eps
    hyper = [dict(h, eps=(eps1, h["eps"][1])) if "eps" in h and h["eps"][0] is None else h
             for h in problem.hyper]
    return dataclasses.replace(problem, hyper=hyper)


def _cast(problem: Any, dtype: torch.dtype, device: str) -> Any:
    def conv(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.detach().to(device=device, dtype=dtype)

    return dataclasses.replace(problem, params=[conv(p) for p in problem.params],
                               grads=[[conv(g) for g in row] for row in problem.grads])


def _plain_state(plain_traj: Callable[[], Any], key: str, k: int, i: int) -> torch.Tensor | None:
    return _state(plain_traj().states, key)[k][i]


def _state(states: list[list[dict[str, Any]]], key: str) -> list[list[torch.Tensor | None]]:
    return [[torch.as_tensor(s[key]) if key in s else None for s in step] for step in states]


def _bound(bounds: list[list[dict[str, torch.Tensor]]], key: str, k: int,
           i: int) -> torch.Tensor | None:
    return bounds[k][i].get(key)  # None: a value the bound does not model (e.g. "step")


def _judge_series(name: str, actual: list[list[Any]], expected: list[list[Any]],
                  dtype: torch.dtype, plain: Callable[[int, int], Any],
                  bound: Callable[[int, int], torch.Tensor | None]) -> Outcome:
    """Compare step by step; the first failing (step, parameter) is reported.

    Each comparison gets the element's a-priori rounding-error bound of the trajectory
    (:mod:`refllm.testing.optimizer.error_bounds`) and, for float32 and below, the plain
    same-dtype trajectory of refllm's rule (see :mod:`refllm.testing.engine.policy`)."""
    if len(actual) != len(expected):
        return Outcome(name, False, f"{len(actual)} steps recorded, expected {len(expected)}")
    if _all_within_bounds(actual, expected, dtype, bound):
        return Outcome(name, True, verdict=Verdict(True))
    for k, (a_row, e_row) in enumerate(zip(actual, expected)):
        for i, (a, e) in enumerate(zip(a_row, e_row)):
            if e is None:
                continue  # refllm's rule keeps no such state for this parameter (yet)
            if a is None:
                return Outcome(name, False, f"state dropped: after step {k + 1} the target "
                                            f"keeps no {name} for params[{i}], though it keeps "
                                            "one for other parameters or steps and refllm's "
                                            "rule keeps one here")
            if a.shape != e.shape:
                return Outcome(name, False, f"step {k + 1}, params[{i}]: shape "
                                            f"{tuple(a.shape)}, expected {tuple(e.shape)}")
            low = dtype in (*LOW_PRECISION, torch.float32)
            lazy = functools.partial(plain, k, i) if low else None
            v = compare(a.to(torch.float64), e.to(torch.float64), dtype=dtype, plain=lazy,
                        bound=bound(k, i))
            if not v.passed:
                v = dataclasses.replace(v, index=(k + 1, i, *(v.index or ())))
                return Outcome(name, False, f"disagrees with refllm's float64 {name} after step "
                                            f"{k + 1} of params[{i}] (index: step, param, "
                                            "element)", v)
    return Outcome(name, True, verdict=Verdict(True))


def _all_within_bounds(actual: list[list[Any]], expected: list[list[Any]], dtype: torch.dtype,
                       bound: Callable[[int, int], torch.Tensor | None]) -> bool:
    """True when every element of the series passes `compare`'s elementwise rule at once.

    A shortcut, not a second rule: one vectorised test over the whole trajectory instead of one
    `compare` per step and parameter (which took half of a check's time). It answers True only
    where every value on both sides is finite, the dtype is float32 or float64 and each element is
    within ``atol + rtol |ref| + ERROR_BOUND_FACTOR * bound`` (bound 0 where none is modelled,
    `compare`'s fixed rule); anything else goes through `compare`, which finds the first failure.
    """
    if dtype not in (torch.float32, torch.float64):
        return False
    tol = tolerance(dtype, "impl")
    a_parts, e_parts, b_parts = [], [], []
    for k, (a_row, e_row) in enumerate(zip(actual, expected)):
        for i, (a, e) in enumerate(zip(a_row, e_row)):
            if e is None:
                continue
            if a is None or a.shape != e.shape:
                return False
            b = bound(k, i)
            a_parts.append(a.detach().to("cpu", torch.float64).reshape(-1))
            e_parts.append(e.detach().to("cpu", torch.float64).reshape(-1))
            b_parts.append(torch.zeros(e.numel(), dtype=torch.float64) if b is None else
                           b.detach().to("cpu", torch.float64).expand(e.shape).reshape(-1))
    if not a_parts:
        return True
    a, e, b = torch.cat(a_parts), torch.cat(e_parts), torch.cat(b_parts)
    if not bool(torch.isfinite(a).all() and torch.isfinite(e).all()):
        return False
    allowed = tol.atol + tol.rtol * e.abs() + ERROR_BOUND_FACTOR * torch.nan_to_num(
        b, nan=0.0, posinf=0.0)
    return bool(((a - e).abs() <= allowed).all())


SNIPPET = '''\
# refllm oracle repro: optimizer {target} disagrees with refllm's float64 `{like}` rule
# failing: {failed}
import torch

{import_cls}
from refllm.testing.optimizer.check import reference_trajectory
from refllm.testing.optimizer.strategy import OptimizerProblem

{problem}
dtype, device = {dtype}, {device!r}
on_device = OptimizerProblem(**{{**problem.__dict__,
    "params": [p.to(device) for p in problem.params],
    "grads": [[None if g is None else g.to(device) for g in row] for row in problem.grads]}})
actual = on_device.run(Optimizer)
expected = reference_trajectory(problem, dtype{convention})  # refllm's {like!r} rule, float64
max_abs_error = {{}}
for k, (ps, qs) in enumerate(zip(actual.params, expected.params)):
    for i, (p, q) in enumerate(zip(ps, qs)):
        max_abs_error[f"step {{k + 1}}, params[{{i}}]"] = (p.cpu().double() - q).abs().max().item()
for k, (ss, rs) in enumerate(zip(actual.states, expected.states)):  # where both keep it
    for i, (s, r) in enumerate(zip(ss, rs)):
        for key in sorted(set(s) & set(r)):
            a, e = torch.as_tensor(s[key]).cpu().double(), torch.as_tensor(r[key]).double()
            max_abs_error[f"step {{k + 1}}, state[{{i}}][{{key!r}}]"] = (a - e).abs().max().item()
worst = max(max_abs_error, key=max_abs_error.get)
print("largest error:", worst, max_abs_error[worst])
'''


def check_optimizer(cls: Callable[..., torch.optim.Optimizer] | str, *, like: str = "adamw",
                    dtype: torch.dtype | str = torch.float32, device: str = "cpu",
                    examples: int | None = None, seed: int | None = None,
                    steps: tuple[int, int] = (1, 25), raise_on_failure: bool = True,
                    threads: int | None = DEFAULT_THREADS,
                    timeout: float | None = DEFAULT_TIMEOUT,
                    contract: Contract | None = None, state_dict_round_trip: bool = True,
                    fixed: Any = None,
                    **hyper: Any) -> Report:
    """Check an optimizer class (or ``"module:Class"``) against refllm's ``like`` update rule.

    ``like`` is one of "gd", "sgd", "adam", "adamw", "muon", "adafactor" (the torch.optim class
    it imitates; "gd" runs ``torch.optim.SGD``-like classes with lr only). ``hyper`` fixes
    hyper-parameters (e.g. ``amsgrad=False`` for a class without it); the others are drawn in
    torch.optim's names. ``steps`` is the (min, max) number of steps drawn.
    ``state_dict_round_trip=False``: never save the state dict mid-run and load it into a new
    optimizer (by default some problems do). ``contract``: a
    `refllm.testing.contract.Contract` (``params_only``: compare parameters, not state;
    ``none_grads``: draw parameters whose grad is None; ``adam_eps``: where Adam's eps goes,
    for a like of "adam" or "adamw"; ``sizes={"numel": (lo, hi)}``,
    ``dtypes``, ``long_axes``, ``budget``, ``unsupported``). The rest as in `check_sdpa`.
    """
    dtype = parse_dtype(dtype)  # "bf16", "float32", torch.float32: as the CLI
    from refllm.testing.optimizer.strategy import optimizer_default_problems, optimizer_problems

    if like not in LIKES:
        raise ValueError(f"like must be one of {LIKES}, got {like!r}")
    c = apply(contract, "optimizer", dtype)
    if c.adam_eps != "after_correction" and like not in ("adam", "adamw"):
        raise ValueError(f"Contract: adam_eps={c.adam_eps!r} applies to like 'adam' or 'adamw', "
                         f"not {like!r}")
    impl, target = resolve(cls, "cls")
    numel = c.ranges("optimizer")
    if not isinstance(state_dict_round_trip, bool):
        raise TypeError(f"state_dict_round_trip must be a bool, got {state_dict_round_trip!r}")
    problems = optimizer_problems(like=like, dtype=torch.float64, steps=steps,
                                  hyper=hyper or None, none_grads=c.none_grads,
                                  long_axes=c.long_axes, budget=c.budget, sizes=numel,
                                  save_load=state_dict_round_trip)
    spec = OptimizerSpec(op=f"optimizer (like {like})", cls=impl, target=target, like=like,
                         dtype=dtype, device=device, problems=problems,
                         explicit=optimizer_default_problems(like=like, steps=steps,
                                                             hyper=hyper or None, sizes=numel,
                                                             long=c.long_axes, budget=c.budget),
                         params_only=c.params_only, unsupported=c.unsupported,
                         adam_eps=c.adam_eps)
    report = run(spec, target=target or repr(impl), dtype=dtype, device=device,
                 examples=examples, seed=seed, raise_on_failure=False, threads=threads,
                 timeout=timeout, features=(like,), fixed=fixed)
    spec.annotate(report)
    if not report.passed and report.drawn is not None and like in ("adam", "adamw"):
        report.diagnosis.extend(_diagnose_eps(spec, report, threads, timeout))
    if raise_on_failure and not report.passed:
        raise OracleFailure(report)
    return report


EPS_WORDS = {"after_correction": "eps is added after the bias correction (PyTorch's)",
             "before_correction": "eps is added before the bias correction (Kingma & Ba §2, "
                                  "Keras)",
             "floor": "eps is a floor of the denominator (heavyball)"}
"""`Contract.adam_eps`'s values in words, for the diagnosis."""


def _diagnose_eps(spec: OptimizerSpec, report: Report, threads: int | None,
                  timeout: float | None) -> list[str]:
    """Where the failing Adam problem passes with eps placed otherwise: one line per placement
    (the failing problem judged again, the reference and its bound following it)."""
    passing = []
    for placement, words in EPS_WORDS.items():
        if placement == spec.adam_eps:
            continue
        other = dataclasses.replace(spec, adam_eps=placement, not_kept={}, compared={})
        again = run(other, target=report.target, dtype=spec.dtype, device=spec.device,
                    examples=1, seed=0,
                    raise_on_failure=False, threads=threads, timeout=timeout,
                    features=(spec.like,), fixed=report.drawn)
        if again.passed:
            passing.append(f"passes if {words}: Contract(adam_eps={placement!r})")
    return passing


__all__ = ["LIKES", "NotKept", "check_optimizer", "reference_trajectory", "to_source"]
