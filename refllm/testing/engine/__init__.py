"""What no op owns: the search, targets and their calls, the tolerance policy and its numbers,
reports and repro snippets, gradients, the Hypothesis settings, and the `OpRecord` type.

Nothing is imported here, so that the command line and the pytest plugin can read the records and
options (`refllm.testing.engine.record`, `refllm.testing.engine.options`) without torch.
"""
