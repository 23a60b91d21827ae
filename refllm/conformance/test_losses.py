"""Conformance: ``--refllm-cross-entropy`` and ``--refllm-mse`` agree with refllm's losses."""


def test_cross_entropy_agrees_with_refllm_values_and_gradients(refllm_oracle):
    refllm_oracle.cross_entropy()


def test_mse_agrees_with_refllm_values_and_gradients(refllm_oracle):
    refllm_oracle.mse()
