"""ByteTokenizer: UTF-8 bytes as ids; round trips, documented decoding of invalid UTF-8, bad ids."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refllm.data import ByteTokenizer, Tokenizer


@given(st.text())
def test_bytes_round_trip_any_unicode_text(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.encode_array(text).tolist() == ids and tok.encode_array(text).dtype == np.uint8


def test_a_worked_example_of_byte_ids():
    assert ByteTokenizer().encode("A€") == [65, 0xE2, 0x82, 0xAC]  # € is U+20AC: E2 82 AC


def test_invalid_utf8_decodes_with_replacement_by_default_and_strictly_on_request():
    tok = ByteTokenizer()
    half_euro = [65, 0xE2, 0x82]
    assert tok.decode(half_euro) == "A\ufffd"
    assert tok.decode_bytes(half_euro) == b"A\xe2\x82"
    with pytest.raises(UnicodeDecodeError):
        tok.decode(half_euro, errors="strict")


@pytest.mark.parametrize("ids, where", [([1, 256], "ids[1] = 256"), ([-1], "ids[0] = -1")])
def test_an_id_outside_the_vocabulary_is_named(ids, where):
    outside = r"ids\[\d\] = -?\d+ lies outside the vocabulary \[0, 256\)"
    with pytest.raises(ValueError, match=outside):
        ByteTokenizer().decode(ids)
    with pytest.raises(ValueError, match=where.replace("[", r"\[").replace("]", r"\]")):
        ByteTokenizer().decode_bytes(ids)


def test_non_text_and_lone_surrogates_are_refused_with_the_argument_named():
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        ByteTokenizer().encode(b"abc")
    with pytest.raises(ValueError, match="text has a lone surrogate .* at index 1"):
        ByteTokenizer().encode("a\ud800b")
    with pytest.raises(TypeError, match="ids must be"):
        ByteTokenizer().decode("abc")
    with pytest.raises(TypeError, match="ids must be a 1-D sequence of ints, got dtype float64"):
        ByteTokenizer().decode([1.5])


def test_the_byte_tokenizer_has_the_shared_interface():
    tok = ByteTokenizer()
    assert isinstance(tok, Tokenizer)
    assert (tok.name, tok.vocab_size) == ("bytes", 256)
    assert tok.to_dict() == {"kind": "bytes", "name": "bytes", "vocab_size": 256}
