"""Hypothesis strategies for valid inputs of every refllm op (public, like `hypothesis.extra.numpy`)."""
