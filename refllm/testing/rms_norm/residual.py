"""RMSNorm with a fused residual add: the check of a function that returns two tensors.

    h = input + residual          (one rounding, in the input's dtype)
    out = rms_norm(h) * w         returned as (out, h): the output and the new residual

Kernels of vLLM, Liger-Kernel and Unsloth fuse the residual add of a pre-norm block into the
norm. With ``check_rms_norm(fn, residual="fused")`` every case passes ``residual=r`` to the
target, which must return the tuple ``(out, new_residual)``; `ResidualSpec` judges the two
outputs apart ("forward output" and "new residual", each under the policy with its own scale)
and the gradients wrt ``input``, ``weight`` and ``residual`` under drawn upstream gradients on
*both* outputs (the residual stream carries its own gradient, which a backward that forgets it
drops). "inputs unchanged" covers ``residual``: a kernel that adds into the caller's residual
in place fails it, naming the argument.

The reference is refllm's ``rms_norm(..., residual=r)`` in float64, so the sum is exact there.
The tolerance is the policy's: below float64 the plain same-dtype computation rounds the sum
once to the input's dtype and normalises the rounded sum. A kernel that adds in float32 and
normalises the unrounded sum (returning the rounded one) is more accurate than that and passes;
so does one that normalises the rounded sum. A sum rounded to a *narrower* dtype than the input's
(a float32 residual stream added in bfloat16) errs 2^16 times float32's unit and fails.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch

from refllm.testing.engine.calls import call_guarded, describe_exception
from refllm.testing.engine.case import Case, to_source
from refllm.testing.engine.compare import assert_close
from refllm.testing.engine.function import (
    NO_GRAD,
    SMALL,
    SNIPPET_HEAD,
    ConventionBroken,
    FunctionSpec,
    _finite_gradients,
    _judge,
    _judge_grad,
    _Lazy,
    _upstream,
    call_without_grad,
    snippet_fields,
)
from refllm.testing.engine.gradients import gradients
from refllm.testing.engine.search import Outcome

NEW_RESIDUAL = "new residual"
RESIDUAL_SEED = 0x5BD1E995
"""Mixed into the drawn upstream-gradient seed for the new residual's gradient, so that the two
upstream gradients differ."""

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclasses.dataclass
class ResidualSpec(FunctionSpec):
    """`FunctionSpec` for a target returning ``(out, new_residual)`` (module docs)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        at = self.properties.index("forward output") + 1
        self.properties.insert(at, NEW_RESIDUAL)

    def _upstreams(self, expected: Pair, seed: int) -> Pair | None:
        if not self.grads:
            return None
        return (_upstream(expected[0], seed, self.dtype),
                _upstream(expected[1], (seed ^ RESIDUAL_SEED) % 2**31, self.dtype))

    def _run(self, fn: Any, case: Case, g: Any) -> tuple[Any, list]:
        out = case.call(fn)
        leaves = self._leaves(case)
        live = [t for t in leaves if t is not None]
        if g is None or not live or not _is_pair(out):
            return out, []
        outs = [(o, u.to(o.dtype).to(o.device)) for o, u in zip(out, g)
                if o.requires_grad and o.shape == u.shape]
        if not outs:
            return out, [None] * len(leaves)

        def rerun() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            fresh = case.map_tensors(
                lambda t: t.detach().clone().requires_grad_() if t.requires_grad else t)
            again = fresh.call(fn)
            kept = [o for o, u in zip(again, g) if o.requires_grad and o.shape == u.shape]
            return kept, [t for t in self._leaves(fresh) if t is not None]

        got = iter(gradients([o for o, _ in outs], live, [u for _, u in outs], rerun))
        return out, [next(got) if t is not None else None for t in leaves]

    def evaluate(self, drawn: tuple[Case, int]) -> list[Outcome]:
        case = self._prepare(drawn[0])
        ref_case = case.to(torch.float64, "cpu")
        expected = ref_case.call(self.reference)
        g = self._upstreams(expected, drawn[1])
        _, exp_grads = self._run(self.reference, ref_case, g)
        self._cross_check(ref_case, expected)
        user_case = case.to(device=self.device)
        before = user_case.map_tensors(lambda t: t.detach().clone())
        result, exc = call_guarded(lambda: self._run(self.fn, user_case, g))
        if isinstance(exc, ConventionBroken):
            return [Outcome("raises on valid input", True), Outcome(exc.property, False, str(exc))]
        if exc is not None:
            return [Outcome("raises on valid input", False, describe_exception(exc))]
        actual, act_grads = result
        outcomes = self._judge_result(case, ref_case, user_case, expected, exp_grads, g, actual,
                                      act_grads)
        outcomes.append(self._unchanged(before, user_case))
        return outcomes

    def _judge_result(self, case: Case, ref_case: Case, user_case: Case, expected: Any,
                      exp_grads: list, g: Any, actual: Any, act_grads: list) -> list[Outcome]:
        outcomes = [Outcome("raises on valid input", True)]
        shape = tuple(expected[0].shape)
        if not _is_pair(actual) or any(a.shape != e.shape for a, e in zip(actual, expected)):
            return outcomes + [Outcome("output shape", False, f"got {_seen(actual)}, expected "
                                                              f"a pair of tensors {shape}")]
        outcomes.append(Outcome("output shape", True))
        dtypes = [a.dtype for a in actual]
        outcomes.append(Outcome("output dtype", all(d == self.dtype for d in dtypes),
                                f"got {dtypes[0]} and {dtypes[1]}, expected {self.dtype}"))
        plain = _Lazy(lambda: self._run(self.reference, case.to(device="cpu"), g))
        outcomes += self._judge_pair(actual, expected, plain, finite="finite output")
        if self.grads:
            for i, name in enumerate(self.grad_inputs):
                outcomes += _judge_grad(f"grad wrt {name}", act_grads, exp_grads, i, self.dtype,
                                        functools.partial(_nth, plain, 1, i), input_name=name)
            outcomes = _finite_gradients(outcomes)
            if all(o.passed for o in outcomes if o.property in ("forward output", NEW_RESIDUAL)):
                outcomes += self._no_grad_pair(user_case, expected, plain)
        return outcomes

    def _judge_pair(self, actual: Pair, expected: Pair, plain: _Lazy, name: str = "",
                    finite: str | None = None) -> list[Outcome]:
        """The output and the new residual judged apart (``name``: one property for both);
        one ``finite`` outcome for the two, the failing one where either fails."""
        values: list[Outcome] = []
        finites: list[Outcome] = []
        for i, prop in enumerate(("forward output", NEW_RESIDUAL)):
            judged = _judge(name or prop, actual[i], expected[i], self.dtype,
                            functools.partial(_nth, plain, 0, i), finite=finite)
            for o in judged:
                if name:
                    o.message = f"its {prop} " + o.message
                (finites if finite is not None and o.property == finite else values).append(o)
        bad = [o for o in finites if not o.passed]
        return (bad[:1] or finites[:1]) + values

    def _no_grad_pair(self, user_case: Case, expected: Pair, plain: _Lazy) -> list[Outcome]:
        """Both outputs of a call whose inputs do not require grad, under ``torch.no_grad()``."""
        out, raised = call_without_grad(self.fn, user_case)
        if raised is not None:
            return [raised]
        if not _is_pair(out) or any(a.shape != e.shape for a, e in zip(out, expected)):
            return [Outcome(NO_GRAD, False, f"under torch.no_grad() the output is {_seen(out)}, "
                                            f"expected a pair of {tuple(expected[0].shape)}")]
        judged = self._judge_pair(out, expected, plain, name=NO_GRAD)
        failed = [o for o in judged if not o.passed]
        for o in failed:
            o.message = ("the output of a call whose inputs do not require grad (under "
                         "torch.no_grad()): " + o.message)
        return failed[:1] or judged[:1]

    def _cross_check(self, ref_case: Case, expected: Any) -> None:
        if self.naive is None:
            return
        size = sum(t.numel() for t in ref_case.args if isinstance(t, torch.Tensor))
        if size <= SMALL:
            naive = ref_case.map_tensors(lambda t: t.detach()).call(self.naive)
            for a, e in zip(naive, expected):
                assert_close(a, e.detach(), msg=f"refllm's own naive and fast {self.op} "
                             "disagree (a bug in refllm: please report it)")

    def snippet(self, drawn: tuple[Case, int], failed: list[str]) -> str:
        case = self._prepare(drawn[0])
        expected = case.to(torch.float64, "cpu").call(self.reference)
        g = self._upstreams(expected, drawn[1])
        upstream = (f"grad_outputs = {to_source(g) if g is not None else 'None'}  # upstream "
                    "gradients of (out, new_residual), exact in dtype")
        fields = snippet_fields(self, case, failed)
        fields["op"] += " (fused residual add)"
        return SNIPPET.format(**fields, upstream=upstream)


def _nth(plain: _Lazy, which: int, i: int) -> Any:
    """The plain computation's ``i``-th output (``which=0``) or gradient (``which=1``)."""
    return plain()[which][i]


def _is_pair(out: Any) -> bool:
    return (isinstance(out, (tuple, list)) and len(out) == 2
            and all(isinstance(o, torch.Tensor) for o in out))


def _seen(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"one tensor {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        return "(" + ", ".join(str(tuple(o.shape)) if isinstance(o, torch.Tensor)
                               else type(o).__name__ for o in out) + ")"
    return type(out).__name__


SNIPPET = SNIPPET_HEAD + '''

def run(f, to_dtype, to_device):
    a = tuple(prepare(x, to_dtype, to_device) for x in args)
    k = {{n: prepare(x, to_dtype, to_device) for n, x in kwargs.items()}}
    outs = f(*a, **k)
    leaves = [a[i] if isinstance(i, int) else k[i] for i in grad_inputs.values()]
    live = [(o, g.to(o.dtype).to(o.device)) for o, g in zip(outs, grad_outputs or ())
            if o.requires_grad]
    if not live:
        return outs, [None] * len(leaves)
    return outs, torch.autograd.grad([o for o, _ in live], leaves, [g for _, g in live],
                                     allow_unused=True)


expected, expected_grads = run(reference, torch.float64, "cpu")
actual, actual_grads = run(fn, dtype, device)
max_abs_error = {{}}
for name, a, e in zip(("forward output", "new residual"), actual, expected):
    if a.shape == e.shape:
        max_abs_error[name] = (a.detach().cpu().double() - e.detach()).abs().max().item()
for name, a, e in zip(grad_inputs, actual_grads, expected_grads):
    if a is not None and e is not None and a.shape == e.shape:
        max_abs_error["grad wrt " + name] = (a.cpu().double() - e).abs().max().item()
for name, err in max_abs_error.items():
    print(f"{{name}}: max abs error {{err:.3g}}")
'''

__all__ = ["NEW_RESIDUAL", "ResidualSpec"]
