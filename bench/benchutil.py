"""Helpers for the benchmarks (imported as ``from benchutil import role``)."""

from __future__ import annotations


def role(benchmark, group: str, name: str, *, baseline: bool = False,
         target: float | None = None) -> None:
    """Label a benchmark: its group, its role in the group and (candidates) the target ratio."""
    benchmark.group = group
    benchmark.extra_info.update(
        {"label": name, "role": "baseline" if baseline else "candidate", "target_ratio": target}
    )
