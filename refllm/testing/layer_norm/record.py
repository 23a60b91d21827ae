"""The record of LayerNorm (``F.layer_norm``)."""

from refllm.testing.engine.record import Choice, Demo, OpRecord

RECORD = OpRecord(
    name="layer-norm", signature="torch.nn.functional.layer_norm",
    check="refllm.testing.layer_norm.check:check_layer_norm",
    reference="refllm.ops.norms:layer_norm",
    naive="refllm.ops.norms:layer_norm_naive",
    strategy="refllm.testing.layer_norm.strategy:layer_norm_cases",
    default_calls="refllm.testing.layer_norm.strategy:layer_norm_default_calls",
    grad_inputs=("input", "weight", "bias"),
    positional=("input", "normalized_shape", "weight", "bias"),
    choices=(Choice("features", "refllm.testing.layer_norm.check:LAYER_NORM_FEATURES",
                    help="comma-separated features to exercise (default: all)"),),
    demos=(Demo("F.layer_norm", "torch.nn.functional:layer_norm"),),
    contract=("dtypes", "long_axes", "budget", "unsupported"),
    cases="refllm.testing.layer_norm.check:cases", calls="refllm.testing.layer_norm.check:calls",
    floors="refllm.testing.layer_norm.check:layer_norm_floors",
)
