"""Exclusion rules: which runs a fit leaves out, stated before the fit and printed beside it.

A rule is ``FIELD OP VALUE``, with OP one of ``< <= > >=``; a run for which the comparison holds is
left out::

    tokens_per_param<5     runs trained on fewer than 5 tokens per parameter (D / N)
    N<1e6                  the smallest models
    loss>4                 runs that barely left the unigram loss

Fields: N (the parameter count the fit uses), D (tokens), C (FLOPs), loss, tokens_per_param.
Rules are applied in the order given; each reports how many runs it dropped, so an exclusion is
never silent, and a rule that names a field the data lack, or that would leave no run, is an
error. The literature's usual rules are of this kind (Hoffmann et al. 2022 drop runs far from
their budget's optimum; Besiroglu et al. 2024 and Porian et al. 2024 drop the smallest models or
tokens-per-parameter ratios below a floor).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FIELDS = ("N", "D", "C", "loss", "tokens_per_param")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_RULE = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|<|>)\s*([^\s]+)\s*$")


@dataclass(frozen=True)
class Rule:
    field: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value:g}"

    def drops(self, row: dict[str, Any]) -> bool:
        return OPS[self.op](row[self.field], self.value)


def parse_rule(text: str) -> Rule:
    """``"tokens_per_param<5"`` -> Rule("tokens_per_param", "<", 5.0); ValueError otherwise."""
    match = _RULE.match(text)
    fields = {f.lower(): f for f in FIELDS}
    if match is None or match[1].lower() not in fields:
        raise ValueError(f"--exclude {text!r}: write FIELD OP VALUE with FIELD one of "
                         f"{', '.join(FIELDS)} and OP one of {' '.join(OPS)} "
                         f"(e.g. tokens_per_param<5)")
    try:
        value = float(match[3])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"--exclude {text!r}: the value must be a finite number, got "
                         f"{match[3]!r}")
    return Rule(fields[match[1].lower()], match[2], value)


def _value(row: dict[str, Any], field: str, rule: Rule) -> float:
    if field == "tokens_per_param":
        return _value(row, "D", rule) / _value(row, "N", rule)
    raw = row.get(field)
    if raw is None or raw == "":
        raise ValueError(f"--exclude {rule}: {field} is missing for some runs, so the rule "
                         f"cannot be applied to them")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"--exclude {rule}: {field} must be a number, got {raw!r}") from None


def apply(rules: list[Rule], rows: list[dict[str, Any]]
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the rows kept, one {"rule", "dropped"} entry per rule in order)."""
    kept, log = list(rows), []
    for rule in rules:
        drop = [rule.drops({rule.field: _value(row, rule.field, rule)}) for row in kept]
        log.append({"rule": str(rule), "dropped": sum(drop)})
        kept = [row for row, d in zip(kept, drop) if not d]
        if not kept:
            raise ValueError(f"--exclude {rule}: it drops every one of the {len(drop)} runs "
                             f"left to fit")
    return kept, log
