"""The oracle of LayerNorm: its record, its strategy and its check.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
