"""The registry: the ops the oracle checks, one line each; everything that lists the ops reads it.

Each op's record is ``RECORD`` in ``refllm/testing/<op>/record.py`` (an `OpRecord`: see
:mod:`refllm.testing.engine.record`). From `RECORDS` are derived:

* ``refllm.testing.checks.CHECKS`` (the checks by name),
* the CLI's ``refllm check OP`` choices, its ``--features``/``--reductions``/``--like`` options
  and the rows of ``refllm demo`` (:mod:`refllm.cli`),
* the pytest plugin's ``--refllm-OP`` and ``--refllm-OP-CHOICE`` options and the
  ``refllm_oracle.OP(...)`` methods (:mod:`refllm.testing.plugin`),
* the conformance suite, one test per record (:mod:`refllm.conformance`).

The records import neither torch nor pytest. Adding an op means adding its folder and one line
to `OPS` (docs/oracle.md, "Adding an op").

>>> RECORDS["cross-entropy"].method, [c.keyword for c in RECORDS["cross-entropy"].choices]
('cross_entropy', ['features', 'reductions'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from refllm.testing.engine.record import Choice, Demo, OpRecord, load

OPS = (
    "sdpa",
    "multihead",
    "cross_entropy",
    "mse",
    "optimizer",
    "kv_cache",
    "softmax",
    "clip_grad_norm",
    "rms_norm",
    "layer_norm",
    "swiglu",
    "rope",
    "linear_cross_entropy",
)
"""The op folders of :mod:`refllm.testing`, in the order the CLI, the plugin and the demo list
them."""


def _record(folder: str) -> OpRecord:
    return importlib.import_module(f"refllm.testing.{folder}.record").RECORD


RECORDS: dict[str, OpRecord] = {r.name: r for r in map(_record, OPS)}
"""The records by name (``"cross-entropy"``), in the order of `OPS`."""



def register(new: OpRecord) -> OpRecord:
    """Add an op's record at run time (an op defined outside refllm, or a test's toy op): from
    then on the CLI, the plugin (when registered before pytest reads its options), the
    conformance suite, `judge` and the generic check know it. `ValueError` for a name already
    taken; `TypeError` for anything but an `OpRecord`."""
    if not isinstance(new, OpRecord):
        raise TypeError(f"register takes an OpRecord, got {type(new).__name__}")
    if new.name in RECORDS:
        raise ValueError(f"an op named {new.name!r} is already registered")
    RECORDS[new.name] = new
    return new


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


__all__ = ["Choice", "Demo", "OpRecord", "OPS", "RECORDS", "choice_keywords", "checks", "load",
           "record", "register"]
