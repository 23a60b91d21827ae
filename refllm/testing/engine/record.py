"""`OpRecord`: everything the oracle's front ends and its generic check need to know about one op.

An `OpRecord` says, for one op: refllm's reference and its naive twin, the strategy that
draws its inputs and the fixed examples of its default call, the inputs whose gradients are
compared (and where they sit in the call), the op's choices (``features``, ``reductions``,
``like``, each with the names it allows and its default selection), the axes a contract may size
and the contract fields that apply, whether the target is a function, a class or a model, and
PyTorch's own implementations that ``refllm demo`` checks. The generic check,
`refllm.testing.engine.check.check`, builds the search from it: for a function op from the
record's fields and two hooks of the op (``cases``: the strategy under the check's options,
``calls``: its default calls), for the others from the op's ``build`` hook. Each op's record is
``RECORD`` in ``refllm/testing/<op>/record.py``; :mod:`refllm.testing.registry` lists them.

Objects are named by ``"module:attribute"`` and imported when used, so this module imports
neither torch nor pytest; `OpRecord.run` imports the check.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any, Literal

from refllm.testing.engine.options import split_names


def load(path: str) -> Any:
    """The object named ``"package.module:attr"``."""
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclasses.dataclass(frozen=True)
class Choice:
    """An option of one op whose value is a name (``many=False``) or a list of names from a fixed
    tuple; ``keyword`` is the check's keyword argument and the option's name."""

    keyword: str
    names: str  # "module:CONSTANT" of the tuple of allowed names
    many: bool = True
    help: str = ""
    default: str = ""  # "module:CONSTANT" of the default selection ("": every allowed name)
    hints: tuple[tuple[str, str], ...] = ()  # (name, why it is not offered): said when asked for

    def allowed(self) -> tuple[str, ...]:
        return tuple(load(self.names))

    def default_value(self) -> Any:
        """The check's argument when the option is not given."""
        chosen = tuple(load(self.default)) if self.default else self.allowed()
        return chosen if self.many else chosen[0]

    def parse(self, value: str | tuple[str, ...], op: str, flag: str) -> Any:
        """The check's argument for ``value`` (``"a,b"`` or a tuple); `ValueError` naming
        ``flag`` for an empty list, several names where one is taken, or an unknown name."""
        names = split_names(value) or ()
        allowed = self.allowed()
        if not names:
            raise ValueError(f"{flag}: give at least one of {list(allowed)}")
        if not self.many and len(names) != 1:
            raise ValueError(f"{flag}: give one of {list(allowed)}, got {list(names)}")
        unknown = [n for n in names if n not in allowed]
        if unknown:
            why = "".join(f" ({reason})" for name, reason in self.hints if name in unknown)
            raise ValueError(f"{flag}: unknown {op} {self.keyword} {unknown}{why}; choose from "
                             f"{list(allowed)}")
        return names if self.many else names[0]


@dataclasses.dataclass(frozen=True)
class Demo:
    """PyTorch's own implementation of an op, as ``refllm demo`` checks it."""

    label: str
    target: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OpRecord:
    """Everything the oracle's front ends need to know about one op (see the module docs)."""

    name: str  # as typed: `refllm check NAME`, `--refllm-NAME`
    signature: str  # the PyTorch op or class whose signature a target has
    check: str  # "module:function" of the op's documented check (a wrapper of the generic one)
    reference: str  # refllm's float64 reference
    naive: str  # its element-by-element twin ("": the op has none)
    strategy: str  # the public Hypothesis strategy drawing the inputs
    default_calls: str  # the fixed examples of the op's default call, judged first ("": none)
    grad_inputs: tuple[str, ...]  # the inputs whose gradients are compared
    target: Literal["function", "class", "model"] = "function"  # "model": a module or step fn
    choices: tuple[Choice, ...] = ()
    demos: tuple[Demo, ...] = ()
    # the positional arguments of the call, in order: a grad input named here is found by its
    # position, any other by its keyword (function ops)
    positional: tuple[str, ...] = ()
    axes: tuple[str, ...] = ()  # the axes a contract's ``sizes`` may give ranges for
    contract: tuple[str, ...] = ()  # the Contract fields that apply (): the op takes none)
    argument: str = "fn"  # the check's name for its target, in error messages
    drawn: Literal["case", "problem"] = "case"  # a (Case, gradient seed) or a whole problem
    # hooks, "module:function" (function ops): ``cases(ctx)`` -> the strategy of float64 cases,
    # ``calls(ctx)`` -> the default calls (list of Case), ``floors`` and ``error_bounds`` as
    # `refllm.testing.engine.function.FunctionSpec` takes them, ``adapt(ctx, spec_kwargs)`` ->
    # the spec's keyword arguments changed for a contract (a layout, a NaN convention)
    cases: str = ""
    calls: str = ""
    floors: str = ""
    error_bounds: str = ""
    adapt: str = ""
    build: str = ""  # ``build(record, ctx)`` -> the engine's spec, for ops that are not functions
    keywords: tuple[str, ...] = ()  # the op's own keyword arguments, handed to its hooks as is
    # "module:function": ``(**choices) -> {name: default}``, the hyper-parameters that
    # ``--set NAME=VALUE`` may hold fixed (refllm.testing.engine.hyper); "": the op has none
    hyper: str = ""
    # conventions a failing example is retried under, (Contract field, value, in words): the
    # ways real kernels differ from PyTorch by convention rather than by bug
    conventions: tuple[tuple[str, str, str], ...] = ()

    @property
    def metavar(self) -> str:
        """How the command line and the plugin spell a target of this op."""
        return {"function": "module:function", "class": "module:Class",
                "model": "module:model"}[self.target]

    @property
    def method(self) -> str:
        """The ``refllm_oracle`` method and conformance test suffix: ``cross_entropy``."""
        return self.name.replace("-", "_")

    def run(self, target: Any, **kwargs: Any) -> Any:
        """Run the op's check on ``target`` (an object or ``"module:name"``); return its
        report."""
        return load(self.check)(target, **kwargs)

    def grad_positions(self) -> dict[str, int | str]:
        """Each grad input's position in the call's arguments, or its keyword."""
        return {n: self.positional.index(n) if n in self.positional else n
                for n in self.grad_inputs}

    def choice(self, keyword: str) -> Choice | None:
        return next((c for c in self.choices if c.keyword == keyword), None)

    def choice_kwargs(self, chosen: Mapping[str, Any], *, flag: str = "--{}") -> dict[str, Any]:
        """The check's keyword arguments for the given choices (None: the check's default);
        `ValueError` for a choice this op does not take or a name it does not know."""
        out = {}
        for keyword, value in chosen.items():
            if value is None:
                continue
            choice = self.choice(keyword)
            if choice is None:
                takes = ", ".join(flag.format(c.keyword) for c in self.choices) or "none"
                raise ValueError(f"{flag.format(keyword)}: {self.name} has no {keyword} to "
                                 f"choose (its options: {takes})")
            out[keyword] = choice.parse(value, self.name, flag.format(keyword))
        return out


REDUCTIONS = Choice("reductions", "refllm.ops.choices:REDUCTIONS",
                    help="comma-separated reductions to draw (default: all)")
"""The losses' ``reductions`` choice (cross-entropy, MSE)."""

CONTRACT_COMMON = ("dtypes", "sizes", "long_axes", "budget", "unsupported")
"""The `refllm.testing.contract.Contract` fields that apply to most ops."""

__all__ = ["CONTRACT_COMMON", "Choice", "Demo", "OpRecord", "REDUCTIONS", "load"]
