"""Hypothesis settings profiles shared by refllm's own tests and by the public oracle.

``dev`` (default) is quick and random; ``ci`` is derandomised so that a CI run is reproducible;
``thorough`` draws thousands of examples. Pick one with the environment variable
``REFLLM_PROFILE`` (or call :func:`load_profile`). ``deadline=None`` everywhere: the first call of a
torch op is slow and would otherwise trip Hypothesis' deadline.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

ENV_VAR = "REFLLM_PROFILE"
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
             HealthCheck.differing_executors]

PROFILES: dict[str, dict[str, Any]] = {
    "dev": dict(max_examples=40, deadline=None, suppress_health_check=_SUPPRESS),
    "ci": dict(max_examples=40, deadline=None, derandomize=True, database=None,
               suppress_health_check=_SUPPRESS, print_blob=True),
    "thorough": dict(max_examples=2000, deadline=None, suppress_health_check=_SUPPRESS),
}


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``thorough`` profiles with Hypothesis (idempotent)."""
    for name, kwargs in PROFILES.items():
        settings.register_profile(f"refllm-{name}", **kwargs)


def profile_name() -> str:
    """The profile named by ``REFLLM_PROFILE`` (``ci`` when ``CI`` is set, else ``dev``)."""
    default = "ci" if os.environ.get("CI") else "dev"
    name = os.environ.get(ENV_VAR, default)
    if name not in PROFILES:
        raise ValueError(f"{ENV_VAR} must be one of {sorted(PROFILES)}, got {name!r}")
    return name


def load_profile(name: str | None = None) -> str:
    """Register the profiles and make ``name`` (or the environment's choice) the active one."""
    register_profiles()
    name = name or profile_name()
    settings.load_profile(f"refllm-{name}")
    return name
