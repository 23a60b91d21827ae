"""The record of multi-head attention (a ``torch.nn.MultiheadAttention``-compatible class)."""

from refllm.testing.engine.record import CONTRACT_COMMON, Choice, Demo, OpRecord

RECORD = OpRecord(
    name="multihead", signature="torch.nn.MultiheadAttention",
    check="refllm.testing.multihead.check:check_multihead_attention",
    reference="refllm.nn.multihead:MultiheadAttention",
    naive="refllm.ops.multihead:multi_head_attention_naive",
    strategy="refllm.testing.multihead.strategy:multihead_cases",
    default_calls="refllm.testing.multihead.strategy:multihead_default_calls",
    grad_inputs=("query", "key", "value", "every parameter"), target="class",
    choices=(Choice("features", "refllm.testing.multihead.check:MULTIHEAD_FEATURES",
                    default="refllm.testing.multihead.check:DEFAULT_MULTIHEAD_FEATURES",
                    help="comma-separated features to exercise (default: all but "
                         "fully_masked_rows)"),),
    demos=(Demo("nn.MultiheadAttention", "torch.nn:MultiheadAttention"),),
    axes=("b", "h", "t", "s"), argument="module",
    contract=CONTRACT_COMMON + ("masks", "causal", "max_seq", "fully_masked_rows"),
    build="refllm.testing.multihead.check:build",
)
