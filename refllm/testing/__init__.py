"""refllm's public correctness oracle: strategies, tolerances, checks and a pytest plugin."""

from refllm.testing.checks import (
    OracleFailure,
    Report,
    check_cross_entropy,
    check_kv_cache,
    check_mse,
    check_multihead_attention,
    check_optimizer,
    check_sdpa,
)
from refllm.testing.compare import assert_close
from refllm.testing.settings import load_profile, register_profiles
from refllm.testing.tolerances import Tolerance, tolerance

__all__ = ["assert_close", "load_profile", "register_profiles", "Tolerance", "tolerance",
           "OracleFailure", "Report", "check_sdpa", "check_cross_entropy", "check_mse",
           "check_kv_cache",
           "check_multihead_attention", "check_optimizer"]
