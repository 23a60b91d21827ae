"""Training byte-level BPE: the naive merge loop and a fast one that gives identical merges.

Byte-pair encoding (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword
Units", §3.2, Algorithm 1), on bytes as in GPT-2 (Radford et al. 2019, §2.2). Start from the 256
byte tokens; ``vocab_size - 256`` times,

    (a, b) = argmax over adjacent pairs of count(a, b),
    count(a, b) = sum_w freq(w) * #{i : w_i = a, w_(i+1) = b}
    replace every (a, b) in every word, left to right without overlap, by the new token 256 + k

Tie-break (deterministic): the highest count wins; among equal counts the smallest pair, compared
as the tuple of ids (a, b) (so (32, 116) before (101, 32)). Training stops early when no adjacent
pair is left. Occurrences overlap in the count ("aaa" holds (a, a) twice) but not in the
replacement ("aaa" -> [aa, a]); both trainers count the same way.

Pre-tokenisation: the text is first split by a regular expression (``DEFAULT_PATTERN``, stdlib
``re`` only, after GPT-2's split: contractions, letters with an optional leading space, digits,
other symbols, whitespace), and a merge never crosses a split. Words are the distinct pieces with
their frequency; both trainers start from :func:`word_counts`.

Naive: recount every pair of every word at each merge, O(merges * corpus). Fast: count once, then
for each merge update the counts of the words that hold the pair (an index pair -> words) and keep
the candidates in a heap of (-count, pair) with lazy deletion of stale entries.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict

from refllm.data.tokenizer import utf8

Pair = tuple[int, int]
Word = tuple[int, ...]

DEFAULT_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"
)


def pretokenize(text: str, pattern: str | None = DEFAULT_PATTERN) -> list[str]:
    """``text`` split into pieces that concatenate to ``text`` (one piece if no ``pattern``)."""
    if pattern is None:
        return [text] if text else []
    return re.findall(pattern, text)


def word_counts(text: str, pattern: str | None = DEFAULT_PATTERN) -> dict[Word, int]:
    """Each distinct piece of ``text`` as a tuple of UTF-8 byte ids, with its frequency."""
    utf8(text)  # a clear error for a non-string or a lone surrogate
    counts = Counter(pretokenize(text, pattern))
    return {tuple(piece.encode("utf-8")): n for piece, n in sorted(counts.items())}


def merge_word(word: Word, pair: Pair, new_id: int) -> Word:
    """``word`` with every ``pair`` replaced by ``new_id``, scanning left to right."""
    out, i, n = [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def pair_counts(words: dict[Word, int]) -> Counter[Pair]:
    """count(a, b) over all words, weighted by their frequency (overlapping occurrences count)."""
    counts: Counter[Pair] = Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += freq
    return counts


def train_merges_naive(words: dict[Word, int], n_merges: int) -> list[Pair]:
    """The merges, recounting every pair of every word at every step."""
    merges: list[Pair] = []
    for k in range(n_merges):
        counts = pair_counts(words)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # highest count, then smallest pair
        merges.append(pair)
        words = {merge_word(w, pair, 256 + k): f for w, f in words.items()}
    return merges


def train_merges_fast(words: dict[Word, int], n_merges: int) -> list[Pair]:
    """The same merges as :func:`train_merges_naive`, updating the counts incrementally."""
    seqs, freqs = list(words), list(words.values())
    counts = pair_counts(words)
    where: defaultdict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words holding it
    for i, w in enumerate(seqs):
        for pair in zip(w, w[1:]):
            where[pair].add(i)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg:
            continue  # stale entry: the count changed after it was pushed
        new_id = 256 + len(merges)
        merges.append(pair)
        changed: set[Pair] = set()
        for i in where.pop(pair):
            old = seqs[i]
            new = merge_word(old, pair, new_id)
            delta = Counter(zip(new, new[1:]))
            delta.subtract(Counter(zip(old, old[1:])))
            for q, d in delta.items():
                if d:
                    counts[q] += d * freqs[i]
                    changed.add(q)
                    if d > 0:
                        where[q].add(i)
            seqs[i] = new
        for q in changed:
            if counts[q] > 0:
                heapq.heappush(heap, (-counts[q], q))
            else:
                del counts[q]
    return merges


TRAINERS = {"naive": train_merges_naive, "fast": train_merges_fast}
