"""refllm's public correctness oracle: strategies, tolerances, checks and a pytest plugin.

The names below are imported on first use (PEP 562), so that the command line and the pytest
plugin can read the op records (:mod:`refllm.testing.registry`) and options without loading every
check and Hypothesis first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from refllm.testing.checks import (
        OracleFailure,
        Report,
        check_clip_grad_norm,
        check_cross_entropy,
        check_kv_cache,
        check_layer_norm,
        check_linear_cross_entropy,
        check_mse,
        check_multihead_attention,
        check_optimizer,
        check_rms_norm,
        check_rope,
        check_sdpa,
        check_softmax,
        check_swiglu,
    )
    from refllm.testing.contract import Contract
    from refllm.testing.engine.compare import assert_close
    from refllm.testing.engine.settings import load_profile, register_profiles
    from refllm.testing.engine.tolerances import Tolerance, tolerance
    from refllm.testing.judging import judge

_WHERE = {
    "refllm.testing.checks": ["OracleFailure", "Report", "check_clip_grad_norm",
                              "check_cross_entropy", "check_kv_cache",
                              "check_mse", "check_multihead_attention", "check_optimizer",
                              "check_rms_norm", "check_layer_norm", "check_sdpa",
                              "check_softmax", "check_swiglu", "check_rope",
                              "check_linear_cross_entropy"],
    "refllm.testing.engine.compare": ["assert_close"],
    "refllm.testing.contract": ["Contract"],
    "refllm.testing.judging": ["judge"],
    "refllm.testing.engine.settings": ["load_profile", "register_profiles"],
    "refllm.testing.engine.tolerances": ["Tolerance", "tolerance"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'refllm.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


__all__ = ["assert_close", "load_profile", "register_profiles", "Tolerance", "tolerance",
           "OracleFailure", "Report", "check_sdpa", "check_cross_entropy", "check_mse",
           "check_kv_cache", "check_multihead_attention", "check_optimizer", "check_softmax",
           "check_clip_grad_norm", "check_rms_norm", "check_layer_norm", "check_swiglu",
           "check_rope", "check_linear_cross_entropy", "Contract", "judge"]
