"""BPE training speed: the fast trainer (incremental pair counts + heap) against the naive loop
(recount every pair at every merge), on 1 MB of the Python standard library's source.

Both train ``BPETokenizer.train(text, vocab_size=512, method=...)``: the same pre-tokenisation
(about 0.6 s of the time here, shared) and 256 merges. The naive loop costs about 0.09 s per merge
on this text (1 MB of code pre-tokenises to ~10k distinct words), so a full 50k-token vocabulary
would take over an hour; 256 merges keep it to ~25 s a round. Target: fast <= 0.25x naive.
Before timing, the two trainers must learn identical merges on the first 100 kB; after both
have run, their 1 MB merges must match too.
"""

from __future__ import annotations

import pytest
from benchutil import role

from refllm.data import BPETokenizer
from refllm.data.corpus import stdlib_corpus

N_BYTES = 1_000_000
VOCAB = 512
RESULTS: dict[str, list] = {}


@pytest.fixture(scope="module")
def text() -> str:
    data = b"".join(chunk for _, chunk in stdlib_corpus(N_BYTES))
    assert len(data) > 0.99 * N_BYTES
    return data.decode("utf-8")


@pytest.mark.parametrize("method, baseline, target, rounds", [
    ("naive", True, None, 2), ("fast", False, 0.25, 5)])
def test_bpe_training_1mb_of_stdlib(benchmark, text, method, baseline, target, rounds):
    head = text[:100_000]
    assert (BPETokenizer.train(head, VOCAB, method="fast").merges
            == BPETokenizer.train(head, VOCAB, method="naive").merges)
    role(benchmark, f"bpe-train-1mb-vocab{VOCAB}", f"{method}", baseline=baseline,
         target=target)
    tok = benchmark.pedantic(BPETokenizer.train, args=(text, VOCAB), kwargs={"method": method},
                             rounds=rounds, iterations=1)
    assert tok.vocab_size == VOCAB
    RESULTS[method] = tok.merges
    if len(RESULTS) == 2:
        assert RESULTS["naive"] == RESULTS["fast"]
