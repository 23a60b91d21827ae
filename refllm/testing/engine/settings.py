"""Hypothesis settings profiles shared by refllm's own tests and by the public oracle.

``dev`` (default) is quick and random; ``ci`` is derandomised so that a CI run is reproducible;
``thorough`` draws thousands of examples. Pick one with the environment variable
``REFLLM_PROFILE`` (or call :func:`load_profile`). ``deadline=None`` everywhere: the first call of a
torch op is slow and would otherwise trip Hypothesis' deadline.

`DEFAULT_EXAMPLES` is the one default example count of the public checks, the ``refllm check`` CLI
and the pytest plugin: it applies when no ``examples=`` is given and no refllm profile is active.
Where a refllm profile is active (refllm's own test suite loads one in its conftest, and so may a
user with :func:`load_profile`), that profile's ``max_examples`` governs instead (40 for ``dev``
and ``ci``, 2000 for ``thorough``). Hypothesis' own default (100) never applies.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

ENV_VAR = "REFLLM_PROFILE"
DEFAULT_EXAMPLES = 40
"""Examples a check draws unless ``examples=`` is given or a refllm profile is active."""
PREFIX = "refllm-"  # Hypothesis profile names of refllm's profiles
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
             HealthCheck.differing_executors]

PROFILES: dict[str, dict[str, Any]] = {
    "dev": dict(max_examples=DEFAULT_EXAMPLES, deadline=None, suppress_health_check=_SUPPRESS),
    "ci": dict(max_examples=DEFAULT_EXAMPLES, deadline=None, derandomize=True, database=None,
               suppress_health_check=_SUPPRESS, print_blob=True),
    "thorough": dict(max_examples=2000, deadline=None, suppress_health_check=_SUPPRESS),
}


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``thorough`` profiles with Hypothesis (idempotent)."""
    for name, kwargs in PROFILES.items():
        settings.register_profile(f"{PREFIX}{name}", **kwargs)


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
    settings.load_profile(f"{PREFIX}{name}")
    return name


def default_examples() -> int:
    """The example count of a check called without ``examples=``: the active refllm profile's
    ``max_examples`` (any profile whose name starts with ``refllm-``), else `DEFAULT_EXAMPLES`."""
    if settings.get_current_profile_name().startswith(PREFIX):
        return settings().max_examples
    return DEFAULT_EXAMPLES
