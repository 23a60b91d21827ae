"""The record of KV-cache decoding (a decoder's cached steps against its own full forward)."""

from refllm.testing.engine.record import OpRecord

RECORD = OpRecord(
    name="kv-cache", signature="a decoder: forward(ids, attention_mask, cache) or a step function",
    check="refllm.testing.kv_cache.check:check_kv_cache",
    reference="refllm.model.gpt:GPT",  # refllm's decoder; a target is held to its own forward
    naive="",  # the reference is the target's full forward: no naive twin
    strategy="refllm.testing.kv_cache.strategy:kv_problems",
    default_calls="",
    grad_inputs=(), target="model", argument="model_or_step_fn", drawn="problem",
    build="refllm.testing.kv_cache.check:build",
    keywords=("forward", "vocab_size", "n_ctx", "new_cache", "max_len"),
)
