"""The record of scaled dot-product attention (``F.scaled_dot_product_attention``)."""

from refllm.testing.engine.record import CONTRACT_COMMON, Choice, Demo, OpRecord

RECORD = OpRecord(
    name="sdpa", signature="torch.nn.functional.scaled_dot_product_attention",
    check="refllm.testing.sdpa.check:check_sdpa",
    reference="refllm.ops.attention:scaled_dot_product_attention",
    naive="refllm.ops.attention:scaled_dot_product_attention_naive",
    strategy="refllm.testing.sdpa.strategy:sdpa_cases",
    default_calls="refllm.testing.sdpa.strategy:sdpa_default_calls",
    grad_inputs=("query", "key", "value"), positional=("query", "key", "value"),
    choices=(Choice("features", "refllm.testing.sdpa.check:SDPA_FEATURES",
                    help="comma-separated features to exercise (default: all)",
                    hints=(("dropout", "dropout cannot be compared: see refllm.testing.sdpa."
                                       "check's docs"),)),),
    demos=(Demo("F.scaled_dot_product_attention",
                "torch.nn.functional:scaled_dot_product_attention"),),
    axes=("b", "h", "t", "s", "d", "e"),
    contract=CONTRACT_COMMON + ("layout", "head_dims", "masks", "causal", "gqa", "scale",
                                "max_seq", "fully_masked_rows", "causal_alignment",
                                "gqa_heads"),
    conventions=(("causal_alignment", "bottom_right", "causal is aligned bottom-right"),
                 ("causal_alignment", "top_left", "causal is aligned top-left (PyTorch's)"),
                 ("gqa_heads", "tiled", "GQA heads are tiled (head i reads key/value head "
                                        "i % g)"),
                 ("gqa_heads", "grouped", "GQA heads are grouped (PyTorch's: head i reads "
                                          "key/value head i // r)"),
                 ("fully_masked_rows", "nan", "a query that sees no key gives NaN"),
                 ("fully_masked_rows", "zeros", "a query that sees no key gives zeros "
                                                "(PyTorch's)")),
    cases="refllm.testing.sdpa.check:cases", calls="refllm.testing.sdpa.check:calls",
    floors="refllm.testing.sdpa.check:sdpa_floors",
    error_bounds="refllm.testing.sdpa.check:valid_bounds",
    adapt="refllm.testing.sdpa.check:adapt",
)
