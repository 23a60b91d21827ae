"""One declarative record per op the oracle checks; the registry, the CLI and the plugin read them.

An `OpRecord` says, for one op: the check that runs it, refllm's reference and its naive twin, the
strategy that draws its inputs and the fixed examples of its default call, the inputs whose
gradients are compared, the op's choices (``features``, ``reductions``, ``like``, each with the
list of names it allows), whether the target is a function or a class, and PyTorch's own
implementations that ``refllm demo`` checks. From `RECORDS` are derived:

* ``refllm.testing.checks.CHECKS`` (the checks by name),
* the CLI's ``refllm check OP`` choices, its ``--features``/``--reductions``/``--like`` options
  and the rows of ``refllm demo`` (:mod:`refllm.cli`),
* the pytest plugin's ``--refllm-OP`` and ``--refllm-OP-CHOICE`` options and the
  ``refllm_oracle.OP(...)`` methods (:mod:`refllm.testing.plugin`),
* the conformance suite, one test per record (:mod:`refllm.conformance`).

Objects are named by ``"module:attribute"`` and imported when used, so this module imports
neither torch nor pytest; `OpRecord.load` imports one of them. Adding an op means adding its
record here (docs/oracle.md, "Adding an op").

>>> RECORDS["cross-entropy"].method, [c.keyword for c in RECORDS["cross-entropy"].choices]
('cross_entropy', ['features', 'reductions'])
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

from refllm.testing.options import split_names


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

    def allowed(self) -> tuple[str, ...]:
        return tuple(load(self.names))

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
            raise ValueError(f"{flag}: unknown {op} {self.keyword} {unknown}; choose from "
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
    check: str  # "module:function" of the check
    reference: str  # refllm's float64 reference
    naive: str  # its element-by-element twin
    strategy: str  # the Hypothesis strategy drawing the inputs
    default_calls: str  # the fixed examples of the op's default call, judged first
    grad_inputs: tuple[str, ...]  # the inputs whose gradients are compared
    target: Literal["function", "class"] = "function"
    choices: tuple[Choice, ...] = ()
    demos: tuple[Demo, ...] = ()
    contract_op: str = ""  # the op's name in refllm.testing.contract (default: name)

    def __post_init__(self) -> None:
        if not self.contract_op:
            object.__setattr__(self, "contract_op", self.name)

    @property
    def method(self) -> str:
        """The ``refllm_oracle`` method and conformance test suffix: ``cross_entropy``."""
        return self.name.replace("-", "_")

    def run(self, target: Any, **kwargs: Any) -> Any:
        """Run the check on ``target`` (an object or ``"module:name"``) and return its report."""
        return load(self.check)(target, **kwargs)

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


_CHECKS = "refllm.testing.checks"
_STRATEGIES = "refllm.testing.strategies"
_REDUCTIONS = Choice("reductions", "refllm.ops.choices:REDUCTIONS",
                     help="comma-separated reductions to draw (default: all)")

RECORDS: dict[str, OpRecord] = {r.name: r for r in [
    OpRecord(
        name="sdpa", signature="torch.nn.functional.scaled_dot_product_attention",
        check=f"{_CHECKS}.sdpa:check_sdpa",
        reference="refllm.ops.attention:scaled_dot_product_attention",
        naive="refllm.ops.attention:scaled_dot_product_attention_naive",
        strategy=f"{_STRATEGIES}.attention:sdpa_cases",
        default_calls=f"{_STRATEGIES}.attention:sdpa_default_calls",
        grad_inputs=("query", "key", "value"),
        choices=(Choice("features", f"{_CHECKS}.sdpa:SDPA_FEATURES",
                        help="comma-separated features to exercise (default: all)"),),
        demos=(Demo("F.scaled_dot_product_attention",
                    "torch.nn.functional:scaled_dot_product_attention"),),
    ),
    OpRecord(
        name="multihead", signature="torch.nn.MultiheadAttention",
        check=f"{_CHECKS}.multihead:check_multihead_attention",
        reference="refllm.nn.multihead:MultiheadAttention",
        naive="refllm.ops.multihead:multi_head_attention_naive",
        strategy=f"{_STRATEGIES}.multihead:multihead_cases",
        default_calls=f"{_STRATEGIES}.multihead:multihead_default_calls",
        grad_inputs=("query", "key", "value", "every parameter"), target="class",
        choices=(Choice("features", f"{_CHECKS}.multihead:MULTIHEAD_FEATURES",
                        help="comma-separated features to exercise (default: all but "
                             "fully_masked_rows)"),),
        demos=(Demo("nn.MultiheadAttention", "torch.nn:MultiheadAttention"),),
        contract_op="multi-head attention",
    ),
    OpRecord(
        name="cross-entropy", signature="torch.nn.functional.cross_entropy",
        check=f"{_CHECKS}.losses:check_cross_entropy",
        reference="refllm.ops.cross_entropy:cross_entropy",
        naive="refllm.ops.cross_entropy:cross_entropy_naive",
        strategy=f"{_STRATEGIES}.losses:cross_entropy_cases",
        default_calls=f"{_STRATEGIES}.losses:cross_entropy_default_calls",
        grad_inputs=("input",),
        choices=(Choice("features", f"{_CHECKS}.losses:CROSS_ENTROPY_FEATURES",
                        help="comma-separated features to exercise (default: all)"),
                 _REDUCTIONS),
        demos=(Demo("F.cross_entropy", "torch.nn.functional:cross_entropy"),),
    ),
    OpRecord(
        name="mse", signature="torch.nn.functional.mse_loss",
        check=f"{_CHECKS}.losses:check_mse",
        reference="refllm.ops.mse:mse_loss",
        naive="refllm.ops.mse:mse_loss_naive",
        strategy=f"{_STRATEGIES}.losses:mse_cases",
        default_calls=f"{_STRATEGIES}.losses:mse_default_calls",
        grad_inputs=("input", "target"),
        choices=(_REDUCTIONS,),
        demos=(Demo("F.mse_loss", "torch.nn.functional:mse_loss"),),
    ),
    OpRecord(
        name="optimizer", signature="torch.optim.Optimizer",
        check=f"{_CHECKS}.optim:check_optimizer",
        reference="refllm.ops.choices:update_rule",
        naive="refllm.ops.choices:update_rule",  # update_rule(kind, naive=True)
        strategy=f"{_STRATEGIES}.optim:optimizer_problems",
        default_calls=f"{_STRATEGIES}.optim:optimizer_default_problems",
        grad_inputs=(), target="class",
        choices=(Choice("like", "refllm.ops.choices:OPTIMIZER_KINDS", many=False,
                        help="the torch.optim class the optimizer imitates (default adamw)"),),
        demos=(Demo("torch.optim.SGD", "torch.optim:SGD", {"like": "sgd"}),
               Demo("torch.optim.Adam", "torch.optim:Adam", {"like": "adam"}),
               Demo("torch.optim.AdamW", "torch.optim:AdamW", {"like": "adamw"})),
    ),
]}
"""The records by name, in the order the CLI, the plugin and the demo list them."""


def record(name: str) -> OpRecord:
    """The record of ``name``; `ValueError` listing the known ops otherwise."""
    if name not in RECORDS:
        raise ValueError(f"unknown op {name!r}; choose from {list(RECORDS)}")
    return RECORDS[name]


def choice_keywords() -> list[str]:
    """Every op option's keyword, in first-seen order (the CLI's ``--features``, ...)."""
    return list(dict.fromkeys(c.keyword for r in RECORDS.values() for c in r.choices))


def checks() -> dict[str, Callable[..., Any]]:
    """The check function of every record, by name (``refllm.testing.checks.CHECKS``)."""
    return {name: load(r.check) for name, r in RECORDS.items()}


__all__ = ["Choice", "Demo", "OpRecord", "RECORDS", "choice_keywords", "checks", "load", "record"]
