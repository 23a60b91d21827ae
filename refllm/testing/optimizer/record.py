"""The record of optimizers (a ``torch.optim.Optimizer`` class imitating SGD, Adam, AdamW, Muon or
Adafactor)."""

from refllm.testing.engine.record import CONTRACT_COMMON, Choice, Demo, OpRecord

RECORD = OpRecord(
    name="optimizer", signature="torch.optim.Optimizer",
    check="refllm.testing.optimizer.check:check_optimizer",
    reference="refllm.ops.choices:update_rule",
    naive="refllm.ops.choices:update_rule",  # update_rule(kind, naive=True)
    strategy="refllm.testing.optimizer.strategy:optimizer_problems",
    default_calls="refllm.testing.optimizer.strategy:optimizer_default_problems",
    grad_inputs=(), target="class", argument="cls", drawn="problem",
    axes=("numel",), contract=CONTRACT_COMMON + ("params_only", "none_grads", "adam_eps"),
    hyper="refllm.testing.optimizer.strategy:settable_hyper",
    choices=(Choice("like", "refllm.ops.choices:OPTIMIZER_KINDS", many=False,
                    help="the torch.optim class the optimizer imitates (default adamw)"),),
    demos=(Demo("torch.optim.SGD", "torch.optim:SGD", {"like": "sgd"}),
           Demo("torch.optim.Adam", "torch.optim:Adam", {"like": "adam"}),
           Demo("torch.optim.AdamW", "torch.optim:AdamW", {"like": "adamw"}),
           Demo("torch.optim.Muon", "torch.optim:Muon", {"like": "muon"}),
           Demo("torch.optim.Adafactor", "torch.optim:Adafactor", {"like": "adafactor"})),
)
