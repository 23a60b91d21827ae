"""The oracle of scaled dot-product attention: its record, its strategy, its check and its
error bounds.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
