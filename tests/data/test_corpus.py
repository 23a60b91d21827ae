"""Corpora: the standard library and user paths; order, records, caps, and clear errors."""

import hashlib

import pytest

from refllm.data import load_tokens, path_corpus, stdlib_corpus
from refllm.data.corpus import stdlib_root


def test_stdlib_corpus_lists_sorted_python_files_outside_tests_and_site_packages():
    records = [f for f, _ in stdlib_corpus()]
    rel = [f.relpath for f in records]
    assert rel == sorted(rel) and len(rel) > 100 and all(r.endswith(".py") for r in rel)
    assert "os.py" in rel and "json/__init__.py" in rel
    banned = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
    assert not any(banned & set(r.split("/")[:-1]) for r in rel)
    first = records[rel.index("os.py")]
    data = (stdlib_root() / "os.py").read_bytes()
    assert (first.sha256, first.size, first.origin) == (hashlib.sha256(data).hexdigest(),
                                                        len(data), "stdlib")


def test_max_bytes_takes_files_in_order_and_cuts_the_last_at_a_character(tmp_path):
    (tmp_path / "a.txt").write_text("héllo\n")  # 7 bytes
    (tmp_path / "b.txt").write_text("€€€")  # 9 bytes
    got = list(path_corpus(tmp_path, max_bytes=12))
    assert [f.relpath for f, _ in got] == ["a.txt", "b.txt"]
    assert got[1][1] == "€".encode()  # 12 - 7 = 5 bytes: one whole € (3), not a split one
    assert (got[1][0].bytes_used, got[1][0].size) == (3, 9)
    assert sum(f.bytes_used for f, _ in stdlib_corpus(max_bytes=10_000)) <= 10_000


def test_a_folder_gives_its_text_files_in_sorted_order_skipping_hidden_ones(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ["b.md", "sub/a.txt", "a.py", ".hidden.txt", ".git/x.txt", "image.png"]:
        (tmp_path / name).write_text(name)
    rel = [f.relpath for f, _ in path_corpus(tmp_path)]
    assert rel == ["a.py", "b.md", "sub/a.txt"]
    assert [f.relpath for f, _ in path_corpus(tmp_path, suffixes=(".png",))] == ["image.png"]
    assert all(f.origin == "path" for f, _ in path_corpus(tmp_path))


def test_a_file_that_is_not_utf8_is_named_with_the_byte_offset(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt' is not UTF-8 text: byte offset 3"):
        list(path_corpus(bad))
    with pytest.raises(ValueError, match=r"latin1.txt' is not UTF-8 text: byte offset 3"):
        load_tokens(tmp_path)


def test_a_missing_or_empty_corpus_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus path '.*nowhere' does not exist"):
        load_tokens(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"holds no file ending in \['.txt'"):
        load_tokens(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="gives no training tokens"):
        load_tokens(tmp_path)
