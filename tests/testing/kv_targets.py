"""Decoders named by ``module:name`` for the command line and the plugin (tests only)."""

from refllm.model import GPT
from tests.testing.mutants import kv_cache_mutants as K

model = K.build(GPT)
"""refllm's GPT: its cached steps equal its full forward."""

truncating = K.build(K.CacheTruncatedToEight)
"""A cache that keeps only the last eight keys: a step beyond them differs."""
