"""Pure functions on tensors. Each module holds the equation, a naive version and a fast version."""
