import torch

from refllm.testing.settings import load_profile

load_profile()  # REFLLM_PROFILE=dev|ci|thorough (ci when CI is set)
torch.set_num_threads(2)
