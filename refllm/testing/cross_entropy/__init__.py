"""The oracle of cross-entropy: its record, its strategy, its check and its error bounds.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
