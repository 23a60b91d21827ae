"""The record of softmax (``torch.softmax``)."""

from refllm.testing.engine.record import Choice, Demo, OpRecord

RECORD = OpRecord(
    name="softmax", signature="torch.softmax",
    check="refllm.testing.softmax.check:check_softmax",
    reference="refllm.ops.softmax:softmax",
    naive="refllm.ops.softmax:softmax_naive",
    strategy="refllm.testing.softmax.strategy:softmax_cases",
    default_calls="refllm.testing.softmax.strategy:softmax_default_calls",
    grad_inputs=("input",),
    choices=(Choice("features", "refllm.testing.softmax.check:SOFTMAX_FEATURES",
                    help="comma-separated features to exercise (default: all but "
                         "masked_rows)"),),
    demos=(Demo("torch.softmax", "torch:softmax"),),
)
