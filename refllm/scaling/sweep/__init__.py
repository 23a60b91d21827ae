"""Ladders of runs: the presets (`.presets`), the up-front estimate and budget (`.budget`),
sharding between machines (`.shard`), and planning and training the runs (`.runs`).
"""
