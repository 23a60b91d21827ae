"""Conformance: ``--refllm-optimizer=module:Class`` follows refllm's update rule, step by step."""


def test_optimizer_agrees_with_refllm_parameters_and_state(refllm_oracle):
    refllm_oracle.optimizer()
