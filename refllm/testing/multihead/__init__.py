"""The oracle of multi-head attention: its record, its strategy, its check and its error bounds.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
