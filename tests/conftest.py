import torch

from refllm.testing.engine.settings import load_profile

load_profile()  # REFLLM_PROFILE=dev|ci|thorough (ci when CI is set)
# One intra-op thread: the tests' tensors are small, and a second OpenMP thread spins while it
# waits, which costs most where the machine is shared. Measured 2026-11-30 on 2 cores:
# tests/model + tests/scaling took 29 s at two threads on a quiet machine (load 0.2); at load 4.5
# they took 25 s of CPU at one thread, while 17 of them alone took 62 s of CPU at two.
# Tests that need another count set it themselves.
torch.set_num_threads(1)
