"""The n-gram table's native lookup (native/src/ngram_table.{h,cpp}) against a Python reference:
key hashing, the chained draft with its longest-context and share rules, and validation."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgespec  # noqa: F401  (loads ORT into the native module)
from edgespec import _native
from edgespec._native import spec

MASK = (1 << 64) - 1
VOCAB = 50


def ref_key(tokens) -> int:
    """FNV-1a over 32-bit words, the context length first (docs/bundle-format.md, lookup)."""
    h = ((0xCBF29CE484222325 ^ len(tokens)) * 0x100000001B3) & MASK
    for t in tokens:
        h = ((h ^ (t & 0xFFFFFFFF)) * 0x100000001B3) & MASK
    return h


def ref_entries(seqs, n_min: int, n_max: int) -> dict[tuple, tuple[int, int, int]]:
    """{context: (next, hits, total)}: the most frequent follower (ties: lower id), every one."""
    counts: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in seqs:
        for n in range(n_min, n_max + 1):
            for i in range(len(s) - n):
                counts[tuple(s[i : i + n])][s[i + n]] += 1
    out = {}
    for ctx, c in counts.items():
        nxt = min(c, key=lambda t: (-c[t], t))
        out[ctx] = (nxt, c[nxt], sum(c.values()))
    return out


def make_table(entries: dict, n_min: int, n_max: int) -> _native.NgramTable:
    rows = sorted((ref_key(ctx), *v) for ctx, v in entries.items())
    arr = np.array(rows, dtype=np.uint64).reshape(-1, 4)  # [E, 4]: key, next, hits, total
    return _native.NgramTable(
        keys=arr[:, 0].astype(np.uint64),
        next=arr[:, 1].astype(np.int32),
        hits=arr[:, 2].astype(np.uint32),
        total=arr[:, 3].astype(np.uint32),
        n_min=n_min,
        n_max=n_max,
    )


def ref_draft(entries: dict, n_min: int, n_max: int, seq, k: int) -> tuple[int, list[int]]:
    ext, out, order = list(seq), [], 0
    while len(out) < k:
        found = None
        for m in range(min(n_max, len(ext)), n_min - 1, -1):
            if tuple(ext[-m:]) in entries:
                found = (m, entries[tuple(ext[-m:])])
                break
        if found is None or found[1][1] < 0.5 * found[1][2]:
            break
        order = order or found[0]
        out.append(found[1][0])
        ext.append(found[1][0])
    return order, out


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=4))
def test_key_matches_the_reference(tokens):
    assert spec.ngram_key(np.array(tokens, np.int32)) == ref_key(tokens)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 5), min_size=2, max_size=30), min_size=1, max_size=4),
    st.lists(st.integers(0, 5), max_size=8),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(0, 16),
)
def test_draft_matches_the_reference(seqs, seq, n_min, extra, k):
    """Small alphabets so contexts repeat, continue and tie; every table is exhaustive."""
    n_max = min(n_min + extra, 4)
    entries = ref_entries(seqs, n_min, n_max)
    if not entries:
        return
    table = make_table(entries, n_min, n_max)
    got = spec.table_draft(table, VOCAB, np.array(seq, np.int32), k)
    assert (got[0], list(got[1])) == ref_draft(entries, n_min, n_max, seq, k)


def test_the_longest_known_context_decides():
    # after (1, 2) comes 3, but after 2 alone 4 is more common; a missing (9, 2) falls back to 2
    entries = {(1, 2): (3, 2, 2), (2,): (4, 3, 5), (3,): (7, 1, 1), (4,): (8, 1, 1)}
    table = make_table(entries, 1, 2)
    assert spec.table_draft(table, VOCAB, np.array([1, 2], np.int32), 2) == (2, [3, 7])
    assert spec.table_draft(table, VOCAB, np.array([9, 2], np.int32), 2) == (1, [4, 8])


def test_a_minority_continuation_stops_the_draft():
    entries = {(1,): (2, 1, 2), (2,): (3, 2, 5), (5,): (6, 1, 3)}
    table = make_table(entries, 1, 1)
    assert spec.table_draft(table, VOCAB, np.array([1], np.int32), 4) == (1, [2])  # 2/5 < 0.5
    assert spec.table_draft(table, VOCAB, np.array([5], np.int32), 4) == (0, [])  # 1/3
    assert spec.table_draft(table, VOCAB, np.array([7], np.int32), 4) == (0, [])  # unknown


def _arrays(**override):
    a = {
        "keys": np.array([1, 5, 9], np.uint64),
        "next": np.array([1, 2, 3], np.int32),
        "hits": np.array([1, 2, 3], np.uint32),
        "total": np.array([1, 2, 4], np.uint32),
        "n_min": 1,
        "n_max": 2,
    }
    a.update(override)
    return a


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"keys": np.array([1, 9, 5], np.uint64)}, "entry 2: keys are not strictly ascending"),
        ({"keys": np.array([1, 5, 5], np.uint64)}, "entry 2: keys are not strictly ascending"),
        ({"next": np.array([1, VOCAB, 3], np.int32)}, f"next token {VOCAB} is outside"),
        ({"next": np.array([-1, 2, 3], np.int32)}, "next token -1 is outside"),
        ({"hits": np.array([1, 3, 3], np.uint32)}, "entry 1: need 1 <= hits <= total, got 3, 2"),
        ({"hits": np.array([0, 2, 3], np.uint32)}, "entry 0: need 1 <= hits <= total, got 0, 1"),
        ({"total": np.array([1, 2], np.uint32)}, "differ in length"),
        ({"n_max": 5}, "need 1 <= n_min <= n_max <= 4, got 1, 5"),
        ({"n_min": 0}, "need 1 <= n_min <= n_max <= 4, got 0, 2"),
    ],
)
def test_bad_tables_are_value_errors(override, message):
    table = _native.NgramTable(**_arrays(**override))
    with pytest.raises(ValueError, match=f"n-gram table: .*{message}"):
        spec.table_draft(table, VOCAB, np.array([1], np.int32), 2)


def test_a_table_array_must_be_one_dimensional():
    with pytest.raises(ValueError, match="1-D"):
        _native.NgramTable(**_arrays(keys=np.zeros((3, 1), np.uint64)))
