"""The GPT decoder: configuration, model, KV cache, generation, parameter and FLOP counts."""

from refllm.model.config import GPTConfig
from refllm.model.counting import flops_per_token, parameter_count
from refllm.model.generate import generate
from refllm.model.gpt import GPT
from refllm.model.kv_cache import KVCache

__all__ = ["GPTConfig", "GPT", "KVCache", "parameter_count", "flops_per_token", "generate"]
