"""BPE training speed: the fast trainer (incremental pair counts + heap) against the naive loop
(recount every pair at every merge), on 1 MB of the Python standard library's source.

Both train ``BPETokenizer.train(text, vocab_size=512, method=...)``: the same pre-tokenisation
(about 0.6 s of the time here, shared) and 256 merges. The naive loop costs about 0.09 s per merge
on this text (1 MB of code pre-tokenises to ~10k distinct words), so a full 50k-token vocabulary
would take over an hour; 256 merges keep it to ~25 s a round. Target: fast <= 0.25x naive, the
median of per-round ratios with the two trainers interleaved round by round (3 rounds, and one
round of one-thread CPU time). Before timing, the two trainers must learn identical merges on
the first 100 kB, and on the whole 1 MB.
"""

from __future__ import annotations

import pytest
from benchutil import compare

from refllm.data import BPETokenizer
from refllm.data.corpus import stdlib_corpus

N_BYTES = 1_000_000
VOCAB = 512


@pytest.fixture(scope="module")
def text() -> str:
    data = b"".join(chunk for _, chunk in stdlib_corpus(N_BYTES))
    assert len(data) > 0.99 * N_BYTES
    return data.decode("utf-8")


def test_bpe_training_1mb_of_stdlib(benchmark, text):
    head = text[:100_000]
    assert (BPETokenizer.train(head, VOCAB, method="fast").merges
            == BPETokenizer.train(head, VOCAB, method="naive").merges)
    fast, naive = (BPETokenizer.train(text, VOCAB, method=m) for m in ("fast", "naive"))
    assert fast.vocab_size == VOCAB and fast.merges == naive.merges
    row = compare(f"bpe-train-1mb-vocab{VOCAB}", "fast", "naive",
                  lambda: BPETokenizer.train(text, VOCAB, method="fast"),
                  lambda: BPETokenizer.train(text, VOCAB, method="naive"), target=0.25,
                  rounds=3, cpu_rounds=1)
    benchmark.group = row["group"]
    benchmark.extra_info.update(row)
    benchmark.pedantic(BPETokenizer.train, args=(text, VOCAB), kwargs={"method": "fast"},
                       rounds=3, iterations=1)
