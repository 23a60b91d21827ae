"""The generic check: an op's record and the user's target in, a `Report` out.

``check(record, target, **options)`` is every check. It validates the options once
(`refllm.testing.engine.options.CheckOptions`, the same object the CLI and the plugin fill in),
applies the contract, resolves the target, builds the op's spec from its record and runs the
search (`refllm.testing.engine.search.run`). ``check_sdpa`` and the other named checks are thin
documented wrappers of it.

For a function op (``record.target == "function"``) the spec is a
`refllm.testing.engine.function.FunctionSpec` made from the record: its reference and naive twin,
its grad inputs and their positions, its floors and error bounds, the strategy its ``cases`` hook
returns and the fixed examples its ``calls`` hook returns, both given the `CheckContext`; its
``adapt`` hook may change the spec's arguments for a contract. Any other op names a ``build`` hook
that returns its spec. So adding an op is its ``ops/`` module, its ``testing/<op>/`` folder (a
record and its hooks) and one line in :data:`refllm.testing.registry.OPS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from refllm.testing.engine.options import CheckOptions
from refllm.testing.engine.record import OpRecord, load

if TYPE_CHECKING:
    import torch

    from refllm.testing.contract import Contract
    from refllm.testing.engine.report import Report


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What an op's hooks are given: the validated options of one check.

    ``impl`` is the target as an object, ``target`` the ``"module:name"`` that imports it (""
    when it cannot be imported by name); ``chosen`` holds the op's choices by keyword
    (``{"features": ("masks", ...), "reductions": ("mean", ...)}``, defaults filled in);
    ``contract`` is the `Contract` the check runs under (``Contract()`` when none was given).
    """

    record: OpRecord
    impl: Any
    target: str
    dtype: torch.dtype
    device: str
    grads: bool
    naive: bool
    max_size: int
    contract: Contract
    chosen: Mapping[str, Any]
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # ``record.keywords``

    @property
    def features(self) -> tuple[str, ...]:
        """The chosen ``features`` (() for an op without that choice)."""
        return tuple(self.chosen.get("features", ()))

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def ranges(self) -> dict[str, tuple[int, int]]:
        """The contract's per-axis size ranges for this op."""
        return self.contract.ranges(self.record.name)


def check(record: OpRecord, target: Any, *, fixed: Any = None, **options: Any) -> Report:
    """Check ``target`` against refllm's reference of ``record``'s op; return its `Report`.

    ``options`` are the fields of `CheckOptions` (``dtype``, ``device``, ``examples``, ``seed``,
    ``threads``, ``timeout``, ``contract``, ``max_size``, ``grads``, ``naive``,
    ``raise_on_failure``) and the op's choices by keyword (``features=``, ``reductions=``,
    ``like=``); anything else is a `TypeError` naming it. ``fixed``: judge this one drawn example
    (what the op's strategy draws) and nothing else, no search (`refllm.testing.judge`).
    """
    from refllm.testing.engine.search import run
    from refllm.testing.engine.targets import resolve

    if record.target != "function" and not record.build:  # an op that runs its own search
        return load(record.check)(target, fixed=fixed, **options)
    ctx, kwargs = _context(record, target, options, resolve)
    spec = load(record.build)(record, ctx) if record.build else function_spec(ctx)
    label = ctx.target or getattr(spec, "label", "") or repr(ctx.impl)
    features = getattr(spec, "features", None)  # as the op's contract left them
    report = run(spec, target=label, dtype=ctx.dtype, device=ctx.device,
                 examples=kwargs["examples"], seed=kwargs["seed"], raise_on_failure=False,
                 threads=kwargs["threads"], timeout=kwargs["timeout"],
                 features=_reported_features(ctx) if features is None else tuple(features),
                 fixed=fixed)
    if fixed is None and report.discrepancies and record.conventions:
        report.diagnosis = diagnose(ctx, report, kwargs)
    if kwargs["raise_on_failure"] and not report.passed:
        from refllm.testing.engine.report import OracleFailure

        raise OracleFailure(report)
    return report


def diagnose(ctx: CheckContext, report: Report, kwargs: Mapping[str, Any]) -> list[str]:
    """The nearby conventions under which the failing example passes, one line each.

    Real kernels differ from PyTorch by convention as often as by bug (causal aligned
    bottom-right, GQA heads tiled, NaN for a query that sees no key). The failing example is
    judged again under each of the record's ``conventions`` that the contract does not already
    state, the reference following it; a convention under which it passes is named with the
    `Contract` that states it. If none does, the line says which were tried.
    """
    passing, tried = [], []
    for field, value, words in ctx.record.conventions:
        if getattr(ctx.contract, field) == value:
            continue
        try:
            change: dict[str, Any] = {field: value}
            alternative = dataclasses.replace(ctx.contract, **change)
        except (TypeError, ValueError):
            continue  # contradicts the contract's other fields
        tried.append(f"{field}={value!r}")
        again = check(ctx.record, ctx.impl, fixed=report.drawn, dtype=ctx.dtype,
                      device=ctx.device, grads=ctx.grads, max_size=ctx.max_size,
                      threads=kwargs["threads"], timeout=kwargs["timeout"],
                      contract=alternative, raise_on_failure=False, **dict(ctx.chosen))
        if again.passed:
            passing.append(f"passes if {words}: Contract({field}={value!r})")
    if passing or not tried:
        return passing
    return [f"fails under the nearby conventions too ({', '.join(tried)}): not a convention "
            "refllm knows"]


def _context(record: OpRecord, target: Any, options: Mapping[str, Any],
             resolve: Any) -> tuple[CheckContext, dict[str, Any]]:
    common = set(CheckOptions.names())
    keywords = {c.keyword for c in record.choices}
    own = set(record.keywords)
    unknown = [k for k in options if k not in common | keywords | own]
    if unknown:
        raise TypeError(f"{record.name} check got unexpected keyword argument(s) {unknown}; it "
                        f"takes {sorted(common)} and its own "
                        f"{sorted(keywords | own) or 'none'}")
    given = {k: v for k, v in options.items() if k in common}
    choices = {k: _as_names(v) for k, v in options.items() if k in keywords}
    kwargs = CheckOptions(**given, choices=choices).validated(record, flag="{}")
    impl, name = resolve(target, record.argument)
    from refllm.testing.contract import apply

    ctx = CheckContext(record=record, impl=impl, target=name, dtype=kwargs["dtype"],
                       device=kwargs["device"], grads=kwargs["grads"], naive=kwargs["naive"],
                       max_size=kwargs["max_size"],
                       contract=kwargs.get("contract") or apply(None, record.name,
                                                                kwargs["dtype"]),
                       chosen={k: kwargs[k] for k in keywords},
                       extra={k: v for k, v in options.items() if k in own})
    return ctx, kwargs


def _as_names(value: Any) -> Any:
    """A Python choice as `Choice.parse` takes it: a string or a tuple of names (None: the
    default)."""
    if value is None or isinstance(value, str):
        return value
    return tuple(value)


def _reported_features(ctx: CheckContext) -> tuple[str, ...]:
    """What the report's ``features:`` line lists: the chosen features, else the op's first
    other list of names (the reductions of the MSE)."""
    if "features" in ctx.chosen:
        return ctx.features
    return next((tuple(ctx.chosen[c.keyword]) for c in ctx.record.choices if c.many), ())


def function_spec(ctx: CheckContext) -> Any:
    """The `FunctionSpec` of a function op, from its record and hooks (module docs)."""
    from refllm.testing.engine.function import FunctionSpec

    record = ctx.record
    kwargs: dict[str, Any] = dict(
        op=record.name, fn=ctx.impl, target=ctx.target, reference=load(record.reference),
        reference_name=record.reference, cases=load(record.cases)(ctx),
        grad_inputs=record.grad_positions(), dtype=ctx.dtype, device=ctx.device,
        grads=ctx.grads, naive=load(record.naive) if ctx.naive and record.naive else None,
        floors=load(record.floors) if record.floors else None,
        error_bounds=load(record.error_bounds) if record.error_bounds else None,
        default_calls=load(record.calls)(ctx) if record.calls else [],
        unsupported=ctx.contract.unsupported, positional=record.positional,
    )
    if record.adapt:
        kwargs = load(record.adapt)(ctx, kwargs)
    return FunctionSpec(**kwargs)


__all__ = ["CheckContext", "check", "diagnose", "function_spec"]
