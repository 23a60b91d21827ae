"""The oracle of the mean squared error: its record, its strategy, its check and its error bounds.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
