"""The oracle of the gated linear units SwiGLU and GeGLU: its record, its strategy, its check and
adapters for Hugging Face's LlamaMLP.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
