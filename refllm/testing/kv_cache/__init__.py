"""The oracle of KV-cache decoding: its record, its strategy, its check and the step protocol
through which any decoder is driven (`adapters`).

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
