"""Conformance: ``--refllm-sdpa=module:function`` agrees with refllm's attention."""


def test_sdpa_agrees_with_refllm_values_and_gradients(refllm_oracle):
    refllm_oracle.sdpa()
