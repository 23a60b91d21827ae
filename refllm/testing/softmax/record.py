"""The record of softmax (``torch.softmax``)."""

from refllm.testing.engine.record import Choice, Demo, OpRecord

RECORD = OpRecord(
    name="softmax", signature="torch.softmax",
    check="refllm.testing.softmax.check:check_softmax",
    reference="refllm.ops.softmax:softmax",
    naive="refllm.ops.softmax:softmax_naive",
    strategy="refllm.testing.softmax.strategy:softmax_cases",
    default_calls="refllm.testing.softmax.strategy:softmax_default_calls",
    grad_inputs=("input",), positional=("input",),
    choices=(Choice("features", "refllm.testing.softmax.check:SOFTMAX_FEATURES",
                    default="refllm.testing.softmax.check:DEFAULT_SOFTMAX_FEATURES",
                    help="comma-separated features to exercise (default: all but "
                         "masked_rows)"),),
    demos=(Demo("torch.softmax", "torch:softmax"),),
    contract=("dtypes", "long_axes", "unsupported"),
    cases="refllm.testing.softmax.check:cases", calls="refllm.testing.softmax.check:calls",
)
