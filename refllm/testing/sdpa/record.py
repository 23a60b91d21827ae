"""The record of scaled dot-product attention (``F.scaled_dot_product_attention``)."""

from refllm.testing.engine.record import Choice, Demo, OpRecord

RECORD = OpRecord(
    name="sdpa", signature="torch.nn.functional.scaled_dot_product_attention",
    check="refllm.testing.sdpa.check:check_sdpa",
    reference="refllm.ops.attention:scaled_dot_product_attention",
    naive="refllm.ops.attention:scaled_dot_product_attention_naive",
    strategy="refllm.testing.sdpa.strategy:sdpa_cases",
    default_calls="refllm.testing.sdpa.strategy:sdpa_default_calls",
    grad_inputs=("query", "key", "value"),
    choices=(Choice("features", "refllm.testing.sdpa.check:SDPA_FEATURES",
                    help="comma-separated features to exercise (default: all)"),),
    demos=(Demo("F.scaled_dot_product_attention",
                "torch.nn.functional:scaled_dot_product_attention"),),
)
