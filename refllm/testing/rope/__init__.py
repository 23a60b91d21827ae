"""The oracle of rotary position embedding: its record, its strategy, its check and adapters for
Hugging Face's ``apply_rotary_pos_emb``.

Nothing is imported here: `record` imports neither torch nor Hypothesis.
"""
