"""The spec shared by checks of plain functions in PyTorch's signature (SDPA, cross-entropy, MSE).

On each drawn `Case` (and a seed for the upstream gradient):

1. cast the case to the checked dtype and device: this is what the user's function receives;
2. upcast *that* case to float64 on the CPU and run refllm's reference on it, so rounding the
   inputs is never counted as the implementation's error;
3. judge the properties: "raises on valid input", "output shape", "output dtype", "finite output",
   "forward output", and, with a random non-unit upstream gradient ``g`` (the same values, rounded
   to the checked dtype, on both sides), "grad wrt <input>" for every differentiable input and
   "finite gradients" (a NaN or infinity in a gradient where the reference's is finite is its
   own failure, naming the input);
4. call the target again on the same inputs detached, under ``torch.no_grad()``: evaluation and
   inference calls take other code paths in real kernels. "no-grad output" judges that output
   (once the forward output passed: a wrong forward is not reported twice);
5. "inputs unchanged": after both calls (and the backward), every input tensor must equal, bit
   for bit, the copy taken before the first call; a target that scales its query in place or
   writes its result into the caller's logits fails, naming the argument and the first changed
   element;
6. for bfloat16/float16 (and float32 beyond its fixed bound) the plain same-dtype reference is
   computed lazily for the tolerance policy (:mod:`refllm.testing.engine.policy`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.calls import UNSUPPORTED_ERRORS, call_guarded, describe_exception
from refllm.testing.engine.case import Case, to_source
from refllm.testing.engine.compare import assert_close
from refllm.testing.engine.gradients import gradients
from refllm.testing.engine.policy import LOW_PRECISION, compare
from refllm.testing.engine.search import Outcome
from refllm.testing.engine.targets import import_lines
from refllm.testing.engine.tolerances import LOW_PRECISION_FACTOR, LOW_PRECISION_GRAD_FACTOR

SMALL = 4096  # cases up to this many elements are also run through the naive reference
OVERFLOW = "intermediate overflow"
"""Key of an op's floors: the largest intermediate magnitude of the plain computation over the
dtype's largest value; >= 1 excuses a non-finite output where the reference is finite."""


@dataclasses.dataclass
class FunctionSpec:
    op: str
    fn: Callable[..., Any]
    target: str  # "module:name" or ""
    reference: Callable[..., Any]
    reference_name: str  # "refllm.ops.attention:scaled_dot_product_attention"
    cases: st.SearchStrategy  # draws Case objects
    grad_inputs: dict[str, int | str]  # property suffix -> position in args, or keyword
    dtype: torch.dtype
    device: str
    grads: bool = True
    naive: Callable[..., Any] | None = None  # cross-check of refllm itself on small cases
    # an op's estimate of unavoidable rounding noise per property, from the float64 case, the
    # reference output and the upstream gradient (see sdpa.sdpa_floors)
    floors: Callable[[Case, torch.Tensor, torch.Tensor | None, torch.dtype],
                     dict[str, float]] | None = None
    # an op's elementwise a-priori rounding-error bounds per property, for float32/float64, from
    # the case as the user's function receives it and the upstream gradient (see error_bounds)
    error_bounds: Callable[[Case, torch.Tensor | None, torch.dtype],
                           dict[str, torch.Tensor]] | None = None
    properties: list[str] = dataclasses.field(default_factory=list)
    # fixed cases (the op's default call) judged before the search, whatever the seed
    default_calls: list[Case] = dataclasses.field(default_factory=list)
    # exceptions by which the target says "I do not support this input" (a contract's)
    unsupported: tuple[type[BaseException], ...] = UNSUPPORTED_ERRORS
    positional: tuple[str, ...] = ()  # the names of the positional arguments, for messages
    features: tuple[str, ...] | None = None  # the features the report lists (a contract's)
    # Python source binding ``reference`` in the repro snippet, where an import of
    # ``reference_name`` is not enough (a reference following a contract's conventions)
    reference_source: str = ""

    @property
    def explicit(self) -> list[tuple[Case, int]]:
        """The fixed default calls as drawn objects (case, upstream-gradient seed)."""
        return [(c, i) for i, c in enumerate(self.default_calls)]

    def __post_init__(self) -> None:
        names = ["raises on valid input", "output shape", "output dtype", "finite output",
                 "forward output"]
        if self.grads:
            names += [f"grad wrt {n}" for n in self.grad_inputs] + [FINITE_GRADS, NO_GRAD]
        self.properties = names + [UNCHANGED]

    def strategy(self) -> st.SearchStrategy:
        return st.tuples(self.cases, st.integers(0, 2**31 - 1))

    def case_of(self, drawn: tuple[Case, int]) -> Case:
        return self._prepare(drawn[0])

    def _prepare(self, case: Case) -> Case:
        """The case as the user's function receives it (checked dtype, CPU), grad flags set."""
        lp = case.to(self.dtype).map_tensors(lambda t: t.detach().requires_grad_(False))
        if not self.grads:
            return lp
        args, kwargs = list(lp.args), dict(lp.kwargs)
        for where in self.grad_inputs.values():
            if isinstance(where, int) and where < len(args) and _is_float(args[where]):
                args[where] = args[where].detach().clone().requires_grad_()
            elif isinstance(where, str) and _is_float(kwargs.get(where)):
                kwargs[where] = kwargs[where].detach().clone().requires_grad_()
        return Case(tuple(args), kwargs, lp.note)

    def _leaves(self, case: Case) -> list[torch.Tensor | None]:
        out = []
        for where in self.grad_inputs.values():
            t = case.args[where] if isinstance(where, int) else case.kwargs.get(where)
            out.append(t if isinstance(t, torch.Tensor) and t.requires_grad else None)
        return out

    def _run(self, fn: Callable[..., Any], case: Case, g: torch.Tensor | None):
        out = case.call(fn)
        grads: list[torch.Tensor | None] = []
        leaves = self._leaves(case)
        live = [t for t in leaves if t is not None]
        if (g is not None and live and isinstance(out, torch.Tensor) and out.requires_grad
                and out.shape == g.shape):  # a wrong shape is reported as such, not as a crash

            def rerun() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
                fresh = case.map_tensors(
                    lambda t: t.detach().clone().requires_grad_() if t.requires_grad else t)
                return [fresh.call(fn)], [t for t in self._leaves(fresh) if t is not None]

            got = iter(gradients([out], live, [g.to(out.dtype).to(out.device)], rerun))
            grads = [next(got) if t is not None else None for t in leaves]
        return out, grads

    def evaluate(self, drawn: tuple[Case, int]) -> list[Outcome]:
        case = self._prepare(drawn[0])
        ref_case = case.to(torch.float64, "cpu")
        expected = ref_case.call(self.reference)
        g = _upstream(expected, drawn[1], self.dtype) if self.grads else None
        _, exp_grads = self._run(self.reference, ref_case, g)
        self._cross_check(ref_case, expected)
        user_case = case.to(device=self.device)
        before = user_case.map_tensors(lambda t: t.detach().clone())
        result, exc = call_guarded(lambda: self._run(self.fn, user_case, g))
        if isinstance(exc, ConventionBroken):  # nothing raised: the answer broke the convention
            return [Outcome("raises on valid input", True), Outcome(exc.property, False, str(exc))]
        if exc is not None:
            return [Outcome("raises on valid input", False, describe_exception(exc))]
        actual, act_grads = result
        outcomes = self._judge_result(case, ref_case, user_case, expected, exp_grads, g, actual,
                                      act_grads)
        outcomes.append(self._unchanged(before, user_case))
        return outcomes

    def _judge_result(self, case: Case, ref_case: Case, user_case: Case,
                      expected: torch.Tensor, exp_grads: list, g: torch.Tensor | None,
                      actual: Any, act_grads: list) -> list[Outcome]:
        outcomes = [Outcome("raises on valid input", True)]
        if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
            seen = (tuple(actual.shape) if isinstance(actual, torch.Tensor)
                    else type(actual).__name__)
            return outcomes + [Outcome("output shape", False,
                                       f"got {seen}, expected {tuple(expected.shape)}")]
        outcomes.append(Outcome("output shape", True))
        outcomes.append(Outcome("output dtype", actual.dtype == self.dtype,
                                f"got {actual.dtype}, expected {self.dtype}"))
        plain = _Lazy(lambda: self._run(self.reference, case.to(device="cpu"), g))
        floors = self.floors(ref_case, expected, g, self.dtype) if self.floors else {}
        bounds = self.error_bounds(case, g, self.dtype) if self.error_bounds else {}
        outcomes += _judge("forward output", actual, expected, self.dtype,
                           lambda: plain()[0], finite="finite output",
                           floor=floors.get("forward output", 0.0),
                           bound=bounds.get("forward output"),
                           overflow=floors.get(OVERFLOW, 0.0) >= 1.0)
        if self.grads:
            for i, name in enumerate(self.grad_inputs):
                prop = f"grad wrt {name}"
                nth_plain = functools.partial(_nth_grad, plain, i)
                outcomes += _judge_grad(prop, act_grads, exp_grads, i, self.dtype, nth_plain,
                                        floors.get(prop, 0.0), bound=bounds.get(prop),
                                        input_name=name)
            outcomes = _finite_gradients(outcomes)
            if any(o.property == "forward output" and o.passed for o in outcomes):
                outcomes += self._no_grad(user_case, expected, plain, floors, bounds)
        return outcomes

    def _no_grad(self, user_case: Case, expected: torch.Tensor, plain: Callable[[], Any],
                 floors: dict[str, float], bounds: dict[str, torch.Tensor]) -> list[Outcome]:
        """The output of a call on inputs that do not require grad, under ``torch.no_grad()``."""
        out, raised = call_without_grad(self.fn, user_case)
        if raised is not None:
            return [raised]
        if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
            seen = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return [Outcome(NO_GRAD, False, f"under torch.no_grad() the output is {seen}, "
                                            f"expected {tuple(expected.shape)}")]
        judged = _judge(NO_GRAD, out, expected, self.dtype, lambda: plain()[0],
                        floor=floors.get("forward output", 0.0),
                        bound=bounds.get("forward output"),
                        overflow=floors.get(OVERFLOW, 0.0) >= 1.0)
        for o in judged:
            if not o.passed:
                o.message = ("the output of a call whose inputs do not require grad (under "
                             "torch.no_grad()) " + o.message)
        return judged

    def _unchanged(self, before: Case, after: Case) -> Outcome:
        """Every input tensor equal, bit for bit, to its copy from before the calls."""
        pairs = list(zip(_flat(before.args), _flat(after.args)))
        names = [self.positional[i] if i < len(self.positional) else f"argument {i}"
                 for i in range(len(pairs))]
        for name, (was, now) in zip(names, pairs):
            changed = _first_change(was, now)
            if changed:
                return Outcome(UNCHANGED, False, f"the target changed its input {name}: {changed}")
        for key in before.kwargs:
            changed = _first_change(before.kwargs[key], after.kwargs[key])
            if changed:
                return Outcome(UNCHANGED, False, f"the target changed its input {key}: {changed}")
        return Outcome(UNCHANGED, True)

    def _cross_check(self, ref_case: Case, expected: torch.Tensor) -> None:
        if self.naive is None:
            return
        size = sum(t.numel() for t in ref_case.args if isinstance(t, torch.Tensor))
        if size <= SMALL:
            naive = ref_case.map_tensors(lambda t: t.detach()).call(self.naive)
            assert_close(naive, expected.detach(), msg=f"refllm's own naive and fast {self.op} "
                         "disagree (a bug in refllm: please report it)")

    def snippet(self, drawn: tuple[Case, int], failed: list[str]) -> str:
        case = self._prepare(drawn[0])
        expected = case.to(torch.float64, "cpu").call(self.reference)
        g = _upstream(expected, drawn[1], self.dtype) if self.grads else None
        return render_snippet(self, case, g, failed)


def call_without_grad(fn: Callable[..., Any], user_case: Case) -> tuple[Any, Outcome | None]:
    """``fn`` on ``user_case``'s inputs detached, under ``torch.no_grad()`` (as evaluation and
    inference call it): (its output, None), or (None, the failed "no-grad output" outcome) when
    it raises."""
    detached = user_case.map_tensors(lambda t: t.detach())

    def call() -> Any:
        with torch.no_grad():
            return detached.call(fn)

    out, exc = call_guarded(call)
    if exc is not None:
        return None, Outcome(NO_GRAD, False, "raises when the inputs do not require grad "
                                             f"(under torch.no_grad()): {describe_exception(exc)}")
    return out, None


class ConventionBroken(AssertionError):
    """Raised by a contract's wrapper of the target (``fully_masked_rows="nan"``, ...) when the
    target's answer breaks the convention the contract states; reported as a failure of
    ``property``, not as "raises on valid input" (the target raised nothing)."""

    def __init__(self, message: str, property: str = "forward output"):
        super().__init__(message)
        self.property = property


FINITE_GRADS = "finite gradients"
NO_GRAD = "no-grad output"
UNCHANGED = "inputs unchanged"


def _flat(args: tuple) -> list[Any]:
    return list(args)


def _first_change(was: Any, now: Any) -> str:
    """"" when ``now`` equals ``was`` bit for bit (tensors; other values are not compared), else
    where it first differs."""
    if not isinstance(was, torch.Tensor) or not isinstance(now, torch.Tensor):
        return ""
    if now.shape != was.shape or now.dtype != was.dtype:
        return (f"it became {now.dtype} of shape {tuple(now.shape)}, was {was.dtype} of shape "
                f"{tuple(was.shape)}")
    a, b = was.detach().cpu(), now.detach().cpu()
    if a.is_floating_point():  # bits: -0.0 against 0.0 and NaN payloads count as changes
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        a, b = a.contiguous().view(bits), b.contiguous().view(bits)
    diff = (a != b).reshape(-1)
    if not bool(diff.any()):
        return ""
    flat = int(diff.nonzero()[0])
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), was.shape))
    return (f"element {index} was {was.detach().cpu().reshape(-1)[flat].item()!r}, is "
            f"{now.detach().cpu().reshape(-1)[flat].item()!r} after the call "
            f"({int(diff.sum())} of {diff.numel()} elements changed)")


def _finite_gradients(outcomes: list[Outcome]) -> list[Outcome]:
    """The grads' non-finite failures moved to one "finite gradients" outcome naming the input
    (its "grad wrt" row is then not judged on this example)."""
    bad = [o for o in outcomes if o.property.startswith("grad wrt ") and not o.passed
           and o.verdict is not None and o.verdict.rule.startswith("non-finite")]
    if not bad:
        return outcomes + [Outcome(FINITE_GRADS, True)]
    kept = [o for o in outcomes if o not in bad]
    what = "; ".join(o.message for o in bad)
    return kept + [Outcome(FINITE_GRADS, False, what, bad[0].verdict)]


def _is_float(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


class _Lazy:
    def __init__(self, thunk: Callable[[], Any]):
        self.thunk, self.value, self.done = thunk, None, False

    def __call__(self) -> Any:
        if not self.done:
            self.value, self.done = self.thunk(), True
        return self.value


def _upstream(out: torch.Tensor, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """A random non-unit upstream gradient, representable exactly in ``dtype``."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    return g.to(dtype).to(torch.float64)


def _judge(name: str, actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
           plain: Callable[[], torch.Tensor], finite: str | None = None,
           factor: float = LOW_PRECISION_FACTOR, floor: float = 0.0,
           bound: torch.Tensor | None = None, overflow: bool = False) -> list[Outcome]:
    lazy = plain if (dtype in LOW_PRECISION or dtype == torch.float32) else None
    v = compare(actual, expected, dtype=dtype, plain=lazy, factor=factor, floor=floor,
                bound=bound, overflow=overflow)
    nonfinite = v.rule.startswith("non-finite")
    out = []
    if finite is not None:
        out.append(Outcome(finite, not (nonfinite and not v.passed),
                           "non-finite value where the reference is finite (or vice versa)", v))
        if nonfinite:
            return out
    msg = "disagrees with refllm's float64 reference"
    return out + [Outcome(name, v.passed, msg, v)]


def _judge_grad(name: str, act: list, exp: list, i: int, dtype: torch.dtype,
                plain: Callable[[], torch.Tensor], floor: float = 0.0,
                bound: torch.Tensor | None = None, input_name: str = "") -> list[Outcome]:
    e = exp[i] if i < len(exp) else None
    a = act[i] if i < len(act) else None
    if e is None:
        return []  # the input was not drawn (e.g. no float mask), or takes no gradient
    if a is None:
        return [Outcome(name, False, "no gradient: the output does not depend on this input "
                                     "through autograd")]
    if a.shape != e.shape:
        return [Outcome(name, False, f"gradient of shape {tuple(a.shape)}, expected "
                                     f"{tuple(e.shape)}")]
    out = _judge(name, a, e, dtype, plain, factor=LOW_PRECISION_GRAD_FACTOR, floor=floor,
                 bound=bound)
    for o in out:
        if not o.passed and o.verdict is not None and o.verdict.rule.startswith("non-finite"):
            o.message = _nonfinite_message(a, e, input_name or name)
    return out


def _nonfinite_message(a: torch.Tensor, e: torch.Tensor, name: str) -> str:
    a, e = a.detach().cpu().double(), e.detach().cpu().double()
    bad = (~a.isfinite() & e.isfinite()).reshape(-1)
    if not bool(bad.any()):
        return f"the gradient of {name} is finite where the reference's is not"
    flat = int(bad.nonzero()[0])
    value = a.reshape(-1)[flat].item()
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), a.shape))
    kind = "NaN" if value != value else "infinity"
    return (f"{kind} in the gradient of {name} at {index} (the reference's is "
            f"{e.reshape(-1)[flat].item():.6g}; {int(bad.sum())} such elements)")


SNIPPET_HEAD = '''\
# refllm oracle repro: {op} of {target} disagrees with refllm's float64 reference
# failing: {failed}
import torch

{import_fn}
{import_reference}

dtype, device = {dtype}, {device!r}
args = {args}
kwargs = {kwargs}
{upstream}
grad_inputs = {grad_inputs}  # name -> position in args, or keyword


def prepare(x, to_dtype, to_device):
    if not isinstance(x, torch.Tensor):
        return x
    y = x.detach().to(to_device)
    y = y.to(to_dtype) if y.is_floating_point() else y
    return y.requires_grad_(x.requires_grad)
'''
"""What every function op's repro snippet starts with: imports, the inputs, ``prepare``; the
caller's ``upstream`` line names its upstream gradient(s) (`snippet_fields`)."""

SNIPPET = SNIPPET_HEAD + '''

def run(f, to_dtype, to_device):
    a = tuple(prepare(x, to_dtype, to_device) for x in args)
    k = {{n: prepare(x, to_dtype, to_device) for n, x in kwargs.items()}}
    out = f(*a, **k)
    leaves = [a[i] if isinstance(i, int) else k[i] for i in grad_inputs.values()]
    if grad_output is None or not out.requires_grad:
        return out, [None] * len(leaves)
    g = grad_output.to(out.dtype).to(out.device)
    return out, torch.autograd.grad(out, leaves, g, allow_unused=True)


expected, expected_grads = run(reference, torch.float64, "cpu")
actual, actual_grads = run(fn, dtype, device)
print("output shape", tuple(actual.shape), "expected", tuple(expected.shape))
max_abs_error = {{}}
if actual.shape == expected.shape:
    diff = actual.detach().cpu().double() - expected.detach()
    max_abs_error["forward output"] = diff.abs().max().item()
for name, a, e in zip(grad_inputs, actual_grads, expected_grads):
    if a is not None and e is not None and a.shape == e.shape:
        max_abs_error["grad wrt " + name] = (a.cpu().double() - e).abs().max().item()
for name, err in max_abs_error.items():
    print(f"{{name}}: max abs error {{err:.3g}}")
'''


def snippet_fields(spec: FunctionSpec, case: Case, failed: list[str]) -> dict[str, Any]:
    """The fields of `SNIPPET_HEAD` but ``upstream``, for ``spec`` on ``case``."""
    ref_mod, _, ref_name = spec.reference_name.partition(":")
    return dict(
        op=spec.op, target=spec.target or repr(spec.fn), failed=", ".join(failed),
        import_fn=import_lines(spec.target, "fn", spec.fn),
        import_reference=spec.reference_source or
        f"from {ref_mod} import {ref_name} as reference",
        dtype=spec.dtype, device=spec.device, args=to_source(case.args),
        kwargs=to_source(case.kwargs),
        grad_inputs=repr(dict(spec.grad_inputs) if spec.grads else {}))


def render_snippet(spec: FunctionSpec, case: Case, g: torch.Tensor | None,
                   failed: list[str]) -> str:
    upstream = (f"grad_output = {to_source(g) if g is not None else 'None'}  # upstream "
                "gradient (float64 values exact in dtype)")
    return SNIPPET.format(**snippet_fields(spec, case, failed), upstream=upstream)


def _nth_grad(plain: Callable[[], Any], i: int) -> Any:
    return plain()[1][i]
