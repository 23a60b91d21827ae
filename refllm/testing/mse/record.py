"""The record of the mean squared error (``F.mse_loss``)."""

from refllm.testing.engine.record import CONTRACT_COMMON, REDUCTIONS, Demo, OpRecord

RECORD = OpRecord(
    name="mse", signature="torch.nn.functional.mse_loss",
    check="refllm.testing.mse.check:check_mse",
    reference="refllm.ops.mse:mse_loss",
    naive="refllm.ops.mse:mse_loss_naive",
    strategy="refllm.testing.mse.strategy:mse_cases",
    default_calls="refllm.testing.mse.strategy:mse_default_calls",
    grad_inputs=("input", "target"), positional=("input", "target"),
    choices=(REDUCTIONS,),
    demos=(Demo("F.mse_loss", "torch.nn.functional:mse_loss"),),
    axes=("numel",), contract=CONTRACT_COMMON,
    cases="refllm.testing.mse.check:cases", calls="refllm.testing.mse.check:calls",
)
