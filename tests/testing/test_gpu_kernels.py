"""No false alarms on PyTorch's fused CUDA attention kernels in bfloat16 and float16.

Run on a machine with a CUDA device: ``python -m pytest -m gpu``. Each test forces one backend
(FlashAttention-2 or memory-efficient attention) through ``sdpa_kernel``; inputs a backend
refuses go to the math backend, and the test requires that most calls did run on the fused
kernel, so that a pass says something about it.
"""

from collections import Counter

import pytest
import torch
from torch.nn.attention import SDPBackend

from refllm.testing import check_sdpa
from tests.testing.test_no_false_alarms import sdpa_on

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

EXAMPLES = 500
# FlashAttention takes no attn_mask: its check leaves masks out (causal stays)
FEATURES = {
    SDPBackend.FLASH_ATTENTION: ["causal", "gqa", "scale", "large_logits", "non_contiguous",
                                 "batch_dims"],
    SDPBackend.EFFICIENT_ATTENTION: None,  # every feature
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("backend", list(FEATURES), ids=lambda b: b.name.lower())
def test_torchs_fused_cuda_kernel_passes_in_low_precision(backend, dtype):
    stats: Counter[str] = Counter()
    report = check_sdpa(sdpa_on(backend, stats), dtype=dtype, device="cuda", examples=EXAMPLES,
                        seed=0, features=FEATURES[backend])
    assert report.passed, str(report)
    assert stats["fused"] > stats["fallback"], stats
