"""load_tokens: sources, dtypes, the split, determinism, hashes, the memory-mapped cache."""

import os

import numpy as np
import pytest

from refllm.data import BPETokenizer, ByteTokenizer, MarkovSource, load_tokens
from refllm.data.corpus import stdlib_corpus


@pytest.fixture(scope="module")
def small_stdlib():
    return load_tokens("stdlib", max_bytes=200_000)


def test_stdlib_bytes_are_the_files_concatenated_in_sorted_order(small_stdlib):
    d = small_stdlib
    data = b"".join(chunk for _, chunk in stdlib_corpus(200_000))
    assert len(data) == d.meta["bytes"] == d.train.size + d.val.size <= 200_000
    assert d.train.dtype == np.uint8 and d.vocab_size == 256
    rel = [f["relpath"] for f in d.meta["files"]]
    assert rel == sorted(rel)
    assert all(f["origin"] == "stdlib" and len(f["sha256"]) == 64 for f in d.meta["files"])
    assert not any("/test/" in r or r.startswith("test/") for r in rel)
    # train then val, chunk by chunk, is a permutation of the stream that keeps chunk order
    stream = np.frombuffer(data, np.uint8)
    assert np.array_equal(np.sort(np.concatenate([d.train, d.val])), np.sort(stream))
    assert bytes(d.train[:4096]) == data[:4096]


def test_the_split_is_deterministic_and_the_hash_names_the_tokens(small_stdlib):
    again = load_tokens("stdlib", max_bytes=200_000)
    assert again.sha256 == small_stdlib.sha256
    assert np.array_equal(again.train, small_stdlib.train)
    other = load_tokens("stdlib", max_bytes=200_000, val_fraction=0.1)
    assert other.sha256 != small_stdlib.sha256


def test_markov_source_gives_the_chain_and_its_entropy_rate():
    d = load_tokens("markov:vocab=8,seed=3,tokens=20000,concentration=0.3", val_fraction=0.1)
    src = MarkovSource(8, 3, 0.3)
    assert d.train.size == 18000 and d.val.size == 2000 and d.vocab_size == 8
    assert np.array_equal(d.train, src.sample(18000, seed=1))
    assert np.array_equal(d.val, src.sample(2000, seed=2))
    assert d.meta["markov"]["entropy_rate_nats"] == pytest.approx(src.entropy_rate_nats)


def test_cached_tokens_are_memory_mapped_and_reused(tmp_path):
    first = load_tokens("stdlib", max_bytes=100_000, cache_dir=tmp_path)
    assert isinstance(first.train, np.memmap) and isinstance(first.val, np.memmap)
    plain = load_tokens("stdlib", max_bytes=100_000)
    assert first.sha256 == plain.sha256
    assert np.array_equal(first.train, plain.train) and np.array_equal(first.val, plain.val)
    folder = first.meta["cache"]
    stamp = os.stat(os.path.join(folder, "train.npy")).st_mtime_ns
    second = load_tokens("stdlib", max_bytes=100_000, cache_dir=tmp_path)
    assert second.sha256 == first.sha256 and second.meta["cache"] == folder
    assert os.stat(os.path.join(folder, "train.npy")).st_mtime_ns == stamp  # reused, not rewritten
    assert sorted(os.listdir(folder)) == ["meta.json", "train.npy", "val.npy"]  # no temporaries


def test_a_bpe_tokenizer_gives_uint16_ids_that_decode_to_the_corpus(tmp_path):
    text = "the cat sat on the mat, the cat ate the rat.\n" * 50
    (tmp_path / "a.txt").write_text(text)
    tok = BPETokenizer.train(text, 300)
    d = load_tokens(tmp_path, tokenizer=tok, val_fraction=0.0, chunk_tokens=64)
    assert d.train.dtype == np.uint16 and d.val.size == 0 and d.vocab_size == tok.vocab_size
    assert tok.decode(d.train.tolist()) == text
    assert d.sha256 != load_tokens(tmp_path, tokenizer=ByteTokenizer(), val_fraction=0.0).sha256


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(source="markov:vocab=8,bogus=1"), ValueError, r"'bogus=1' is not key=value with key in"),
    (dict(source="markov:tokens=ten"), ValueError, "tokens must be an int, got 'ten'"),
    (dict(source="markov:tokens=10"), ValueError, "too small for val_fraction=0.05"),
    (dict(source="markov:", tokenizer=ByteTokenizer()), ValueError, "tokenizer: a markov source"),
    (dict(source="markov:", max_bytes=10), ValueError, "max_bytes: a markov source"),
    (dict(source="stdlib", val_fraction=1.5), ValueError, "val_fraction must lie in"),
    (dict(source="stdlib", max_bytes=0), ValueError, "max_bytes must be >= 1, got 0"),
    (dict(source="stdlib", tokenizer="no/such/bpe.json"), FileNotFoundError,
     "tokenizer must be 'bytes'.*does not exist"),
    (dict(source="stdlib", tokenizer=42), TypeError, "tokenizer must be 'bytes'.*got int"),
    (dict(source=3), TypeError, "source must be 'stdlib', 'markov:...' or a path, got int"),
])
def test_bad_arguments_to_load_tokens_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_tokens(**kwargs)


def test_a_corrupt_tokenizer_file_is_named_and_nothing_is_cached(tmp_path):
    bad = tmp_path / "tok.json"
    bad.write_text('{"format": "refllm-bpe", "vers')
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="tok.json: not a BPE tokenizer file: invalid JSON"):
        load_tokens("stdlib", tokenizer=str(bad), max_bytes=100_000, cache_dir=cache)
    assert not cache.exists()


def test_a_failed_split_leaves_no_partial_cache(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        load_tokens("stdlib", max_bytes=5000, cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_saved_bpe_path_works_as_the_tokenizer_argument(tmp_path):
    (tmp_path / "t.txt").write_text("ab ab ab abc\n" * 200)
    tok = BPETokenizer.train("ab ab ab abc\n", 260)
    tok.save(tmp_path / "bpe.json")
    by_path = load_tokens(tmp_path / "t.txt", tokenizer=str(tmp_path / "bpe.json"),
                          chunk_tokens=16)
    by_obj = load_tokens(tmp_path / "t.txt", tokenizer=tok, chunk_tokens=16)
    assert by_path.sha256 == by_obj.sha256 and by_path.meta["tokenizer"]["name"] == tok.name


def test_markov_tokens_cache_and_memory_map_too(tmp_path):
    plain = load_tokens("markov:vocab=300,seed=1,tokens=5000")
    cached = load_tokens("markov:vocab=300,seed=1,tokens=5000", cache_dir=tmp_path)
    assert isinstance(cached.train, np.memmap) and cached.train.dtype == np.uint16
    assert cached.sha256 == plain.sha256 and np.array_equal(cached.val, plain.val)


def test_a_corpus_too_small_for_a_validation_chunk_names_the_settings_to_change(tmp_path):
    (tmp_path / "small.txt").write_text("x = 1\n" * 3400)  # 20 KB: 5 chunks, 0.05 of them is 0
    with pytest.raises(ValueError) as info:
        load_tokens(tmp_path / "small.txt")
    message = str(info.value)
    assert "too small for val_fraction=0.05: its 20,400 tokens make 5 chunk(s) of 4096" in message
    assert "a val_fraction of at least 0.2 (one chunk of 5), or a bigger corpus" in message
    assert "max_bytes" in message and "chunk_tokens" not in message
    assert load_tokens(tmp_path / "small.txt", val_fraction=0.2).val.size == 20400 - 4 * 4096
    (tmp_path / "small.txt").write_text("x = 1\n" * 500)  # one chunk: only more text helps
    with pytest.raises(ValueError, match="it would get none; use a bigger corpus"):
        load_tokens(tmp_path / "small.txt")
    with pytest.raises(ValueError, match=r"floor\(10 tokens x 0.05\) = 0 validation tokens; "
                                         r"raise tokens= in the source or val_fraction"):
        load_tokens("markov:tokens=10")


@pytest.mark.parametrize("chunks", [3, 6, 7, 9, 11, 13, 999])
def test_the_advised_val_fraction_gives_a_validation_chunk(tmp_path, chunks):
    (tmp_path / "t.txt").write_text("a" * (chunks * 8 - 3))
    with pytest.raises(ValueError, match="at least") as info:
        load_tokens(tmp_path / "t.txt", chunk_tokens=8, val_fraction=0.0001)
    advised = float(str(info.value).split("at least ")[1].split(" ")[0])
    assert load_tokens(tmp_path / "t.txt", chunk_tokens=8, val_fraction=advised).val.size > 0
