"""refllm as a correctness oracle: check another implementation against refllm's references.

Each check takes an implementation with PyTorch's signature (no adapter), lets Hypothesis search
for an input where it disagrees with refllm's float64 reference (values and gradients), shrinks it
and returns a `Report` (or raises `OracleFailure` holding it)::

    report = check_sdpa(my_attention, dtype=torch.bfloat16, device="cuda", examples=500)

``seed=`` fixes the drawn examples: the same seed draws the same examples in any program (see
`refllm.testing.engine.search.hermetic_generation`), whatever the thread count.
"""

from collections.abc import Callable

from refllm.testing.clip_grad_norm.check import check_clip_grad_norm
from refllm.testing.cross_entropy.check import CROSS_ENTROPY_FEATURES, check_cross_entropy
from refllm.testing.engine.policy import Verdict, compare, low_precision_bound
from refllm.testing.engine.report import Discrepancy, OracleFailure, PropertyResult, Report
from refllm.testing.kv_cache.check import check_kv_cache
from refllm.testing.layer_norm.check import LAYER_NORM_FEATURES, check_layer_norm
from refllm.testing.linear_cross_entropy.check import (
    LINEAR_CROSS_ENTROPY_FEATURES,
    check_linear_cross_entropy,
)
from refllm.testing.mse.check import check_mse
from refllm.testing.multihead.check import (
    DEFAULT_MULTIHEAD_FEATURES,
    MULTIHEAD_FEATURES,
    check_multihead_attention,
)
from refllm.testing.optimizer.check import check_optimizer
from refllm.testing.registry import checks
from refllm.testing.rms_norm.check import (
    DEFAULT_RMS_NORM_FEATURES,
    RMS_NORM_FEATURES,
    check_rms_norm,
)
from refllm.testing.rope.check import ROPE_FEATURES, check_rope
from refllm.testing.sdpa.check import SDPA_FEATURES, check_sdpa
from refllm.testing.softmax.check import DEFAULT_SOFTMAX_FEATURES, SOFTMAX_FEATURES, check_softmax
from refllm.testing.swiglu.check import SWIGLU_FEATURES, check_swiglu

CHECKS: dict[str, Callable[..., Report]] = checks()
"""The checks by the name the CLI and the pytest plugin use, from the op records
(:data:`refllm.testing.registry.RECORDS`)."""

__all__ = [
    "CHECKS",
    "CROSS_ENTROPY_FEATURES",
    "DEFAULT_MULTIHEAD_FEATURES",
    "MULTIHEAD_FEATURES",
    "SDPA_FEATURES",
    "SOFTMAX_FEATURES",
    "DEFAULT_SOFTMAX_FEATURES",
    "RMS_NORM_FEATURES",
    "DEFAULT_RMS_NORM_FEATURES",
    "LAYER_NORM_FEATURES",
    "SWIGLU_FEATURES",
    "ROPE_FEATURES",
    "LINEAR_CROSS_ENTROPY_FEATURES",
    "Discrepancy",
    "OracleFailure",
    "PropertyResult",
    "Report",
    "Verdict",
    "check_clip_grad_norm",
    "check_cross_entropy",
    "check_kv_cache",
    "check_layer_norm",
    "check_linear_cross_entropy",
    "check_mse",
    "check_multihead_attention",
    "check_optimizer",
    "check_rms_norm",
    "check_rope",
    "check_sdpa",
    "check_softmax",
    "check_swiglu",
    "compare",
    "low_precision_bound",
]
