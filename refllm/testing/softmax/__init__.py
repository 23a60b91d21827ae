"""The oracle of softmax: its record and its strategy.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
