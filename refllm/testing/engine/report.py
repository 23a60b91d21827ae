"""What a check hands back: a `Report` with a per-property table and, on failure, a runnable repro.

A *property* is one claim checked on every drawn example ("forward output", "grad wrt key",
"output shape", "raises on valid input", ...). On a disagreement Hypothesis shrinks the input to a
minimal failing example; the report keeps that example (``case``), what failed there
(``discrepancies``, each with its worst element) and a Python snippet that rebuilds it, calls the
checked function, recomputes refllm's reference and prints the difference (``snippet``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from refllm.testing.engine.policy import Verdict


@dataclasses.dataclass
class Discrepancy:
    """One property that failed on the shrunk example; ``verdict`` holds the worst element."""

    property: str
    message: str
    verdict: Verdict | None = None

    def __str__(self) -> str:
        shown = self.verdict is not None and self.verdict.index is not None
        detail = f"\n      {self.verdict.describe()}" if shown and self.verdict else ""
        return f"  - {self.property}: {self.message}{detail}"


@dataclasses.dataclass
class PropertyResult:
    """A row of the per-property table: examples it was judged on and how many failed."""

    name: str
    examples: int = 0  # examples of the search (before shrinking) it was judged on
    failures: int = 0  # of those, how many failed
    failed_when_shrunk: bool = False  # it fails on the shrunk example of the report

    @property
    def passed(self) -> bool:
        return self.failures == 0 and not self.failed_when_shrunk

    @property
    def status(self) -> str:
        if not self.passed:
            return "FAILED"
        return "passed" if self.examples else "not exercised"


@dataclasses.dataclass
class Report:
    """The result of one check (``op`` on ``target`` in ``dtype`` on ``device``)."""

    op: str
    target: str
    dtype: torch.dtype
    device: str
    examples: int = 0  # examples run before the first failure (or in all, when none failed)
    seed: int | None = None
    features: tuple[str, ...] = ()
    properties: list[PropertyResult] = dataclasses.field(default_factory=list)
    discrepancies: list[Discrepancy] = dataclasses.field(default_factory=list)
    case: Any = None  # the shrunk failing example (a Case, or the op's problem object)
    snippet: str = ""
    note: str = ""  # e.g. Hypothesis' word when a failure did not reproduce
    unsupported: int = 0  # examples the target refused (NotImplementedError, or a named error)
    unsupported_example: str = ""  # the first refusal: the error and the input's shapes
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. an eager fallback
    # after a failure: the conventions under which the failing example passes
    diagnosis: list[str] = dataclasses.field(default_factory=list)
    drawn: Any = dataclasses.field(default=None, repr=False, compare=False)  # the failing draw

    @property
    def passed(self) -> bool:
        """No disagreement, and at least one example judged (refused inputs are no pass)."""
        return not self.discrepancies and not (self.unsupported and not self.examples)

    @property
    def verdict(self) -> str:
        """"passed", "failed" (a disagreement) or "unsupported" (every input was refused)."""
        if self.discrepancies:
            return "failed"
        return "unsupported" if self.unsupported and not self.examples else "passed"

    @property
    def failed_properties(self) -> list[str]:
        return [d.property for d in self.discrepancies]

    def property(self, name: str) -> PropertyResult:
        for p in self.properties:
            if p.name == name:
                return p
        names = [p.name for p in self.properties]
        raise KeyError(f"no property {name!r}; the properties are {names}")

    def table(self) -> str:
        width = max([len(p.name) for p in self.properties] + [8])
        rows = [f"  {'property':<{width}}  {'result':<13}  examples  failed"]
        for p in self.properties:
            rows.append(f"  {p.name:<{width}}  {p.status:<13}  {p.examples:>8}  {p.failures:>6}")
        return "\n".join(rows)

    def __str__(self) -> str:
        verdict = self.verdict.upper()
        head = (f"refllm oracle: {self.op} of {self.target} in {self.dtype} on {self.device}: "
                f"{verdict} ({self.examples} examples"
                + (f", {self.unsupported} unsupported" if self.unsupported else "")
                + (f", seed {self.seed}" if self.seed is not None else "") + ")")
        parts = [head]
        if self.features:
            parts.append("features: " + ", ".join(self.features))
        parts.append(self.table())
        if self.unsupported:
            parts.append(f"unsupported: the target refused {self.unsupported} drawn input(s), "
                         f"which were not judged; the first: {self.unsupported_example}. State "
                         "what it supports with a Contract to draw only inputs inside it")
        parts.extend(f"warning: {w}" for w in self.warnings)
        if self.note:
            parts.append(f"note: {self.note}")
        if self.discrepancies:
            parts.append("disagreement on the shrunk example:")
            parts.extend(str(d) for d in self.discrepancies)
            parts.extend(f"diagnosis: {line}" for line in self.diagnosis)
            if self.snippet:
                parts.append("reproduce it with:\n\n" + self.snippet)
        return "\n".join(parts)


class OracleFailure(AssertionError):
    """Raised by a check with ``raise_on_failure=True``; ``.report`` holds the `Report`."""

    def __init__(self, report: Report):
        super().__init__(str(report))
        self.report = report
