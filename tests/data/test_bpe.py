"""Byte-level BPE: a worked example, naive == fast merges, round trips, determinism, files."""

import json
import os

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refllm.data import DEFAULT_PATTERN, BPETokenizer, Tokenizer
from refllm.data.bpe_train import (
    merge_word,
    pretokenize,
    train_merges_fast,
    train_merges_naive,
    word_counts,
)

SMALL_ALPHABET = st.text(alphabet="ab c\nxé_!9'", max_size=120)
PATTERNS = st.sampled_from([DEFAULT_PATTERN, None])
CORPUS = "the cat sat on the mat; the cats' hats aren't flat. Ünïcödé — 数据 🙂\n" * 3


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(CORPUS, 290)


def test_a_worked_example_done_by_hand():
    # pieces: "aaab" and " aaab" and " ab" (pattern splits before each space)
    # counts: (a,a): 2+2 = 4, (a,b): 1+1+1 = 3, (32,a): 2
    #   merge 0: (97, 97) -> 256 ("aa"); words: [256, a, b], [32, 256, a, b], [32, a, b]
    #   counts now (256,a) 2, (a,b) 3, (32,256) 1, (32,a) 1 -> merge 1: (97, 98) -> 257 ("ab")
    #   words: [256, 257], [32, 256, 257], [32, 257]; counts (256,257) 2, (32,256) 1, (32,257) 1
    #   merge 2: (256, 257) -> 258 ("aaab"); then (32,258) 1 and (32,257) 1 tie at count 1:
    #   the smaller pair (32, 257) wins merge 3 -> 259 (" ab")
    tok = BPETokenizer.train("aaab aaab ab", vocab_size=260)
    assert tok.merges == [(97, 97), (97, 98), (256, 257), (32, 257)]
    assert tok.vocab[258] == b"aaab" and tok.vocab[259] == b" ab"
    assert tok.encode("aaab ab") == [258, 259]
    assert tok.encode(" aaab") == [32, 258]  # (32, 258) was never learned


def test_merge_replaces_left_to_right_without_overlap():
    assert merge_word((97, 97, 97), (97, 97), 256) == (256, 97)
    assert merge_word((97, 98, 97, 98), (97, 98), 300) == (300, 300)


@given(SMALL_ALPHABET, st.integers(256, 330), PATTERNS)
@example("aaaa", 300, None)
@example("", 260, DEFAULT_PATTERN)
def test_the_fast_trainer_learns_exactly_the_naive_merges(text, vocab_size, pattern):
    words = word_counts(text, pattern)
    naive = train_merges_naive(words, vocab_size - 256)
    assert train_merges_fast(words, vocab_size - 256) == naive
    assert BPETokenizer.train(text, vocab_size, method="naive", pattern=pattern).merges == naive


@given(st.text(max_size=60), st.text(max_size=60), PATTERNS)
def test_round_trip_of_any_unicode_text(train_text, text, pattern):
    tok = BPETokenizer.train(CORPUS + train_text, 300, pattern=pattern)
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


@given(st.text())
def test_pretokenisation_pieces_concatenate_to_the_text(text):
    assert "".join(pretokenize(text)) == text


@given(SMALL_ALPHABET, PATTERNS)
def test_a_training_piece_encodes_to_the_tokens_training_left_it_as(text, pattern):
    tok = BPETokenizer.train(text, 290, pattern=pattern)
    words = word_counts(text, pattern)
    for k, pair in enumerate(tok.merges):
        words = {merge_word(w, pair, 256 + k): f for w, f in words.items()}
    for word in words:
        piece = b"".join(tok.vocab[i] for i in word).decode("utf-8")
        assert tok.encode(piece) == list(word)


def test_merges_never_cross_a_pretokenisation_split(tok):
    pieces = [p.encode("utf-8") for p in set(pretokenize(CORPUS))]
    for token in tok.vocab[256:]:
        assert any(token in piece for piece in pieces), token  # lies inside one piece
    assert b" the" in tok.vocab and not any(b"t " in t for t in tok.vocab)  # "t ": a split


def test_training_is_deterministic_and_the_name_follows_the_merges(tok):
    again = BPETokenizer.train(CORPUS, 290)
    assert again.merges == tok.merges and again == tok and again.name == tok.name
    assert BPETokenizer.train(CORPUS, 280).name != tok.name
    assert tok.vocab_size == 290 and tok.name.startswith("bpe290-")
    assert isinstance(tok, Tokenizer) and tok.to_dict()["sha256"] == tok.sha256


def test_training_stops_when_no_pair_is_left():
    tok = BPETokenizer.train("ab", 1000)
    assert tok.merges == [(97, 98)] and tok.vocab_size == 257


def test_a_saved_vocabulary_reloads_equal(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded == tok and loaded.merges == tok.merges and loaded.pattern == tok.pattern
    assert loaded.encode(CORPUS) == tok.encode(CORPUS)
    assert os.listdir(tmp_path) == ["bpe.json"]  # no temporary file left behind
    d = json.loads(path.read_text())
    assert (d["format"], d["version"], d["vocab_size"]) == ("refllm-bpe", 1, 290)


def _corrupt(good: str):
    d = json.loads(good)
    return {
        "truncated": (good[: len(good) // 2], "invalid JSON .* truncated or corrupt"),
        "not_json": ("\x00garbage", "invalid JSON"),
        "binary": (b"\xff\xfe", "byte 0 is not UTF-8"),
        "wrong_version": (json.dumps({**d, "version": 2}), "format version 2 is not supported"),
        "wrong_format": (json.dumps({**d, "format": "x"}), "format is 'x', expected 'refllm-bpe'"),
        "not_object": ("[1, 2]", "expected a JSON object, got list"),
        "missing": (json.dumps({k: v for k, v in d.items() if k != "merges"}), "missing keys"),
        "bad_merge": (json.dumps({**d, "merges": [[97, 999]]}), r"merges\[0\] = \[97, 999\]"),
        "dup_merge": (json.dumps({**d, "merges": [[97, 98], [97, 98]], "vocab_size": 258}),
                      r"holds the pair \[97, 98\] twice"),
        "bad_size": (json.dumps({**d, "vocab_size": 7}), "vocab_size is 7 but the merges give"),
        "bad_pattern": (json.dumps({**d, "pattern": "("}), "not a valid regular expression"),
    }


@pytest.mark.parametrize("case", list(_corrupt(json.dumps(
    BPETokenizer([(97, 98)]).definition()))))
def test_a_corrupt_tokenizer_file_gives_an_error_naming_the_file_and_the_problem(case, tmp_path):
    content, problem = _corrupt(json.dumps(BPETokenizer([(97, 98)]).definition()))[case]
    path = tmp_path / "tok.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=problem) as err:
        BPETokenizer.load(path)
    assert str(path) in str(err.value)


def test_a_missing_tokenizer_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        BPETokenizer.load(tmp_path / "nope.json")


def test_bad_training_arguments_are_named():
    with pytest.raises(ValueError, match="vocab_size must be >= 256, got 100"):
        BPETokenizer.train("abc", 100)
    with pytest.raises(ValueError, match="method must be one of"):
        BPETokenizer.train("abc", 300, method="quick")
    with pytest.raises(TypeError, match="text must be a str"):
        BPETokenizer.train(b"abc", 300)
    with pytest.raises(ValueError, match="ids\\[0\\] = 257 lies outside the vocabulary"):
        BPETokenizer([(97, 98)]).decode([257])
