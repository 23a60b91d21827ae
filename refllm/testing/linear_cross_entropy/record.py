"""The record of fused linear cross-entropy (``F.linear_cross_entropy``)."""

from refllm.testing.engine.record import REDUCTIONS, Choice, Demo, OpRecord

RECORD = OpRecord(
    name="linear-cross-entropy", signature="torch.nn.functional.linear_cross_entropy",
    check="refllm.testing.linear_cross_entropy.check:check_linear_cross_entropy",
    reference="refllm.ops.linear_cross_entropy:linear_cross_entropy",
    naive="refllm.ops.linear_cross_entropy:linear_cross_entropy_naive",
    strategy="refllm.testing.linear_cross_entropy.strategy:linear_cross_entropy_cases",
    default_calls="refllm.testing.linear_cross_entropy.strategy:"
                  "linear_cross_entropy_default_calls",
    grad_inputs=("input", "linear_weight", "linear_bias"),
    positional=("input", "linear_weight", "target"),
    choices=(Choice("features",
                    "refllm.testing.linear_cross_entropy.check:LINEAR_CROSS_ENTROPY_FEATURES",
                    help="comma-separated features to exercise (default: all)"),
             REDUCTIONS),
    demos=(Demo("F.linear_cross_entropy", "torch.nn.functional:linear_cross_entropy"),),
    contract=("dtypes", "long_axes", "budget", "unsupported"),
    cases="refllm.testing.linear_cross_entropy.check:cases",
    calls="refllm.testing.linear_cross_entropy.check:calls",
    adapt="refllm.testing.linear_cross_entropy.check:adapt",
    floors="refllm.testing.linear_cross_entropy.check:linear_cross_entropy_floors",
    error_bounds="refllm.testing.linear_cross_entropy.error_bounds:"
                 "linear_cross_entropy_error_bounds",
)
