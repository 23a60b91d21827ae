"""Scaling laws in three parts: run a ladder (``sweep/``), fit laws to anyone's runs (``fit/``),
judge and report a ladder (``report/``); ``cli`` and ``fit_cli`` are the commands.

The public names load lazily (numpy/scipy on first use), so ``refllm --help`` stays fast:

    from refllm.scaling import fit_power_law, fit_chinchilla, compute_optimal, isoflop_fit
    from refllm.scaling import power_law_verdict
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "fit_power_law": "fit", "fit_chinchilla": "fit", "compute_optimal": "fit",
    "isoflop_fit": "fit", "FitResult": "fit", "IsoFLOPResult": "fit", "Allocation": "fit",
    "power_law_verdict": "report.verdict", "Verdict": "report.verdict",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"refllm.scaling.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'refllm.scaling' has no attribute {name!r}")
