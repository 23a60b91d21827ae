"""Scaled dot-product attention: bad input raises an error naming the argument and what it saw."""

import pytest
import torch

from refllm.ops.attention import (
    scaled_dot_product_attention,
    scaled_dot_product_attention_naive,
    scaled_dot_product_attention_with_weights,
)

Q, K, V = torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 6)
QH, KG = torch.zeros(1, 6, 3, 4), torch.zeros(1, 4, 5, 4)  # h = 6, g = 4: 4 does not divide 6

BAD = [  # (args, kwargs, exception, message pattern)
    ((torch.zeros(4), K, V), {}, ValueError, r"query must have at least 2 dimensions.*\(4,\)"),
    ((Q, torch.zeros(5, 4), V), {}, ValueError, r"same number of dimensions.*key \(5, 4\)"),
    ((Q, torch.zeros(3, 5, 4), torch.zeros(3, 5, 6)), {}, ValueError,
     r"key must have the same batch dims.*query \(2, 3, 4\).*key \(3, 5, 4\)"),
    ((Q, torch.zeros(2, 5, 3), V), {}, ValueError, r"key's last dim d must equal query's"),
    ((Q, K, torch.zeros(2, 4, 6)), {}, ValueError, r"value must have as many positions s as key"),
    ((Q, K, V), {"attn_mask": torch.ones(3, 4, dtype=torch.bool)}, ValueError,
     r"attn_mask of shape \(3, 4\) cannot be broadcast to \(2, 3, 5\)"),
    ((Q, K, V), {"attn_mask": torch.ones(3, 5, dtype=torch.int64)}, TypeError,
     r"attn_mask must be bool.*float32.*torch.int64"),
    ((Q, K, V), {"attn_mask": torch.zeros(3, 5, dtype=torch.float64)}, TypeError,
     r"attn_mask must be bool.*query's dtype torch.float32"),
    ((Q, K, V), {"attn_mask": [[True]]}, TypeError, r"attn_mask must be a torch.Tensor or None"),
    ((Q, K, V), {"attn_mask": torch.ones(3, 5, dtype=torch.bool), "is_causal": True},
     ValueError, r"attn_mask and is_causal=True cannot be used together"),
    ((Q.long(), K.long(), V.long()), {}, TypeError,
     r"query must be a floating-point tensor.*torch.int64"),
    ((Q, K.double(), V), {}, TypeError, r"must share one dtype.*key: torch.float64"),
    ((QH, KG, KG), {"enable_gqa": True}, ValueError,
     r"query's heads h = 6 must be a multiple of key/value's heads g = 4"),
    ((QH, KG, KG), {}, ValueError, r"key must have the same batch dims.*\(1, 6\).*\(1, 4\)"),
    ((Q[0], K[0], V[0]), {"enable_gqa": True}, ValueError,
     r"query must have at least 3 dimensions \(\.\.\., h, t, d\) with enable_gqa"),
    ((Q, K, V), {"dropout_p": 1.0}, ValueError, r"dropout_p must lie in \[0.0, 1.0\), got 1.0"),
    ((Q, K, V), {"dropout_p": -0.1}, ValueError, r"dropout_p must lie in \[0.0, 1.0\)"),
    ((Q, K, V), {"dropout_p": "0.1"}, TypeError, r"dropout_p must be a real number.*str"),
    ((Q, K, V), {"scale": "2"}, TypeError, r"scale must be a real number.*str '2'"),
    ((Q, K, V), {"scale": float("nan")}, ValueError, r"scale must be finite, got nan"),
    ((Q, K, V), {"is_causal": 1}, TypeError, r"is_causal must be a bool, got int"),
    ((Q, K, V), {"causal_alignment": "left"}, ValueError, r"causal_alignment must be one of"),
    ((Q, K, V), {"generator": 3}, TypeError, r"generator must be a torch.Generator or None"),
]


@pytest.mark.parametrize("fn", [scaled_dot_product_attention, scaled_dot_product_attention_naive,
                                scaled_dot_product_attention_with_weights])
@pytest.mark.parametrize(("args", "kwargs", "error", "pattern"), BAD,
                         ids=[p[3][:40] for p in BAD])
def test_bad_input_raises_an_error_naming_the_argument_and_what_it_saw(fn, args, kwargs, error,
                                                                         pattern):
    with pytest.raises(error, match=pattern):
        fn(*args, **kwargs)
