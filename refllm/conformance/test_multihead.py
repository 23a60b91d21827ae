"""Conformance: ``--refllm-multihead=module:Class`` agrees with refllm's multi-head attention."""


def test_multihead_attention_agrees_with_refllm_outputs_weights_and_gradients(refllm_oracle):
    refllm_oracle.multihead()
