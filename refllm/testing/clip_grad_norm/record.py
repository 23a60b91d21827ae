"""The record of gradient clipping (``torch.nn.utils.clip_grad_norm_``)."""

from refllm.testing.engine.record import Choice, Demo, OpRecord

RECORD = OpRecord(
    name="clip-grad-norm", signature="torch.nn.utils.clip_grad_norm_",
    check="refllm.testing.clip_grad_norm.check:check_clip_grad_norm",
    reference="refllm.ops.clip_grad:clip_grad_norm_",
    naive="refllm.ops.clip_grad:clip_grad_norm_naive_",
    strategy="refllm.testing.clip_grad_norm.strategy:clip_problems",
    default_calls="refllm.testing.clip_grad_norm.strategy:clip_default_problems",
    grad_inputs=(), drawn="problem", argument="fn",
    choices=(Choice("features", "refllm.testing.clip_grad_norm.strategy:CLIP_FEATURES",
                    help="comma-separated features to exercise (default: all)"),),
    demos=(Demo("nn.utils.clip_grad_norm_", "torch.nn.utils:clip_grad_norm_"),),
    axes=("numel",), contract=("dtypes", "sizes", "long_axes", "budget", "unsupported"),
    build="refllm.testing.clip_grad_norm.check:build",
)
