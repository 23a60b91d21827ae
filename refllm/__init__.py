"""refllm: a testing-first reference implementation of the building blocks of large language models.

Layers (each imports only the ones before it): ``refllm.ops`` (pure functions, naive and fast side by
side) -> ``refllm.nn`` (modules and optimizers that own parameters) -> model -> train -> scaling;
``refllm.testing`` is the public correctness oracle built on ``refllm.ops``.
"""

__version__ = "0.1.0"
