"""The oracle's check of gradient clipping by the global norm (``clip_grad_norm_``)."""
