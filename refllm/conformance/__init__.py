"""refllm's conformance suite: run it against your implementations with the pytest plugin.

    pytest --pyargs refllm.conformance --refllm-sdpa=mypkg.attn:flash_attention \
        --refllm-dtype=bf16 --refllm-device=cuda --refllm-examples=500

Each module checks one op; an op not named on the command line is skipped with the reason.
"""
