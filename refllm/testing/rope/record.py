"""The record of rotary position embedding (refllm's ``rope(x, positions, ...)``)."""

from refllm.testing.engine.record import Choice, OpRecord

RECORD = OpRecord(
    name="rope", signature="refllm.ops.rope.rope",
    check="refllm.testing.rope.check:check_rope",
    reference="refllm.ops.rope:rope",
    naive="refllm.ops.rope:rope_naive",
    strategy="refllm.testing.rope.strategy:rope_cases",
    default_calls="refllm.testing.rope.strategy:rope_default_calls",
    grad_inputs=("x",), positional=("x", "positions"),
    choices=(Choice("features", "refllm.testing.rope.check:ROPE_FEATURES",
                    help="comma-separated features to exercise (default: all)"),),
    demos=(),  # PyTorch has no RoPE of its own
    contract=("dtypes", "long_axes", "budget", "unsupported"),
    cases="refllm.testing.rope.check:cases", calls="refllm.testing.rope.check:calls",
    keywords=("max_position",),
)
