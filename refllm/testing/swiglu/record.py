"""The record of the gated linear units (refllm's ``swiglu(gate, up)``; GeGLU by ``activation``)."""

from refllm.testing.engine.record import Choice, Demo, OpRecord

RECORD = OpRecord(
    name="swiglu", signature="refllm.ops.activations.swiglu",
    check="refllm.testing.swiglu.check:check_swiglu",
    reference="refllm.ops.activations:swiglu",
    naive="refllm.ops.activations:swiglu_naive",
    strategy="refllm.testing.swiglu.strategy:swiglu_cases",
    default_calls="refllm.testing.swiglu.strategy:swiglu_default_calls",
    grad_inputs=("gate", "up"), positional=("gate", "up"),
    choices=(Choice("features", "refllm.testing.swiglu.check:SWIGLU_FEATURES",
                    help="comma-separated features to exercise (default: all)"),
             Choice("activation", "refllm.ops.activations:ACTIVATIONS", many=False,
                    help="the gate's activation: silu (SwiGLU, default), gelu or gelu_tanh "
                         "(GeGLU, exact or tanh form)")),
    demos=(Demo("F.silu(gate) * up", "refllm.testing.swiglu.adapters:torch_swiglu"),),
    contract=("dtypes", "long_axes", "budget", "unsupported"),
    cases="refllm.testing.swiglu.check:cases", calls="refllm.testing.swiglu.check:calls",
    adapt="refllm.testing.swiglu.check:adapt",
)
