"""The record of RMSNorm (``F.rms_norm``)."""

from refllm.testing.engine.record import Choice, Demo, OpRecord

RECORD = OpRecord(
    name="rms-norm", signature="torch.nn.functional.rms_norm",
    check="refllm.testing.rms_norm.check:check_rms_norm",
    reference="refllm.ops.norms:rms_norm",
    naive="refllm.ops.norms:rms_norm_naive",
    strategy="refllm.testing.rms_norm.strategy:rms_norm_cases",
    default_calls="refllm.testing.rms_norm.strategy:rms_norm_default_calls",
    grad_inputs=("input", "weight"), positional=("input", "normalized_shape", "weight"),
    choices=(Choice("features", "refllm.testing.rms_norm.check:RMS_NORM_FEATURES",
                    default="refllm.testing.rms_norm.check:DEFAULT_RMS_NORM_FEATURES",
                    help="comma-separated features to exercise (default: all but refllm's "
                         "variant weight_offset)"),
             Choice("cast", "refllm.ops.norms:CASTS", many=False,
                    help="where the target rounds to the input's dtype: after_weight (PyTorch, "
                         "default) or before_weight (Hugging Face's LlamaRMSNorm)"),
             Choice("residual", "refllm.testing.rms_norm.check:RESIDUALS", many=False,
                    help="none (F.rms_norm, default) or fused: the target takes residual= and "
                         "returns (out, input + residual)")),
    demos=(Demo("F.rms_norm", "torch.nn.functional:rms_norm"),),
    contract=("dtypes", "long_axes", "budget", "unsupported"),
    cases="refllm.testing.rms_norm.check:cases", calls="refllm.testing.rms_norm.check:calls",
    adapt="refllm.testing.rms_norm.check:adapt", build="refllm.testing.rms_norm.check:build",
)
