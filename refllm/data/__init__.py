"""Tokenizers (bytes, byte-level BPE) and corpora (the Python standard library, user files, a
Markov chain of known entropy rate), tokenized and split by :func:`load_tokens`.

This layer imports no other refllm layer (only the private argument checks).
"""

from refllm.data.bpe import BPETokenizer
from refllm.data.bpe_train import DEFAULT_PATTERN, train_merges_fast, train_merges_naive
from refllm.data.corpus import CorpusFile, path_corpus, stdlib_corpus
from refllm.data.markov import MarkovSource
from refllm.data.sources import resolve_tokenizer
from refllm.data.tokenizer import ByteTokenizer, Tokenizer
from refllm.data.tokens import TokenData, load_tokens

__all__ = [
    "ByteTokenizer", "BPETokenizer", "Tokenizer", "DEFAULT_PATTERN", "train_merges_naive",
    "train_merges_fast", "CorpusFile", "stdlib_corpus", "path_corpus", "MarkovSource",
    "TokenData", "load_tokens", "resolve_tokenizer",
]
