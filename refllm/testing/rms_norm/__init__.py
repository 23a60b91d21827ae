"""The oracle of RMSNorm: its record, its strategy, its check and adapters for PyTorch's and Hugging
Face's modules.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
