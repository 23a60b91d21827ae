"""Thin `torch.nn.Module` and `torch.optim.Optimizer` wrappers that own parameters and call `refllm.ops`."""
