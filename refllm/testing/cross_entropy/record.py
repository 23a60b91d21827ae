"""The record of cross-entropy (``F.cross_entropy``)."""

from refllm.testing.engine.record import CONTRACT_COMMON, REDUCTIONS, Choice, Demo, OpRecord

RECORD = OpRecord(
    name="cross-entropy", signature="torch.nn.functional.cross_entropy",
    check="refllm.testing.cross_entropy.check:check_cross_entropy",
    reference="refllm.ops.cross_entropy:cross_entropy",
    naive="refllm.ops.cross_entropy:cross_entropy_naive",
    strategy="refllm.testing.cross_entropy.strategy:cross_entropy_cases",
    default_calls="refllm.testing.cross_entropy.strategy:cross_entropy_default_calls",
    grad_inputs=("input",), positional=("input", "target"),
    choices=(Choice("features", "refllm.testing.cross_entropy.check:CROSS_ENTROPY_FEATURES",
                    help="comma-separated features to exercise (default: all)"),
             REDUCTIONS),
    demos=(Demo("F.cross_entropy", "torch.nn.functional:cross_entropy"),),
    axes=("rows", "classes"), contract=CONTRACT_COMMON,
    cases="refllm.testing.cross_entropy.check:cases",
    calls="refllm.testing.cross_entropy.check:calls",
    floors="refllm.testing.cross_entropy.check:cross_entropy_floors",
    error_bounds="refllm.testing.cross_entropy.error_bounds:cross_entropy_error_bounds",
)
