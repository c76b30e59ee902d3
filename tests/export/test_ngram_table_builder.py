"""The n-gram table builder (export/distill/ngram_table.py): what it counts, keeps and writes,
and that the runtime reads it back (keys agree with the native hash)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgespec._native import spec
from edgespec.bundle import BundleError, load_bundle, load_lookup_table
from edgespec.export.distill.data import Corpus
from edgespec.export.distill.ngram_table import TABLE_PATH, build_table, ngram_keys, write_table

pytestmark = pytest.mark.export
ARRAYS = ("keys", "next", "hits", "total")


def corpus(*seqs: tuple[list[int], list[int]]) -> Corpus:
    """Sequences given as (prompt, answer)."""
    ids = np.array([t for p, a in seqs for t in p + a], np.int32)  # [N]
    lens = np.array([len(p) + len(a) for p, a in seqs], np.int32)  # [S]
    plens = np.array([len(p) for p, _ in seqs], np.int32)  # [S]
    feats = np.zeros((int(np.sum(lens - 1)), 2), np.float16)  # [N - S, 2]: unused here
    return Corpus(ids, feats, lens, plens)


def entries(table: dict) -> dict[tuple, tuple[int, int, int]]:
    return {
        int(k): (int(n), int(h), int(t))
        for k, n, h, t in zip(*(table[n] for n in ARRAYS), strict=True)
    }


def key(*tokens: int) -> int:
    return spec.ngram_key(np.array(tokens, np.int32))


def test_keys_agree_with_the_runtime():
    windows = np.array([[1, 2], [2, 3], [70000, -5]], np.int32)
    assert [int(k) for k in ngram_keys(windows)] == [key(1, 2), key(2, 3), key(70000, -5)]


def test_counts_top_continuations_within_answers():
    c = corpus(
        ([9, 1, 2], [3, 1, 2, 3, 1, 2, 4]),  # after (1, 2): 3 twice, 4 once; (9, 1) is prompt
        ([5], [1, 2, 4]),  # (5, 1) reaches into the prompt; (1, 2) -> 4 again: a tie
    )
    got = entries(build_table(c, n_min=2, n_max=2, min_hits=1))
    assert got[key(1, 2)] == (3, 2, 4)  # 3 and 4 twice each: the lower id
    assert got[key(2, 3)] == (1, 2, 2)
    assert got[key(3, 1)] == (2, 2, 2)
    assert got[key(5, 1)] == (2, 1, 1)
    assert key(9, 1) not in got  # its next token (2) is a prompt token
    assert key(4, 5) not in got  # a window never spans two sequences
    assert len(got) == 4


def test_ties_go_to_the_lower_id_and_singletons_are_dropped():
    c = corpus(([7], [8, 7, 6, 7, 8, 7, 6]), ([1], [2, 3]))
    got = entries(build_table(c, n_min=1, n_max=1, min_hits=2))
    assert got[key(7)] == (6, 2, 4)  # 6 and 8 twice each: 6 wins; 7 -> 8 from the prompt too
    assert got[key(8)] == (7, 2, 2)
    assert key(6) not in got and key(1) not in got  # seen once
    keys = build_table(c, 1, 1, 1)["keys"]
    assert np.all(keys[1:] > keys[:-1])  # ascending, unique


def test_a_corpus_without_contexts_gives_an_empty_table():
    table = build_table(corpus(([1], [2])), n_min=2, n_max=4)
    want = {"keys": np.uint64, "next": np.int32, "hits": np.uint32, "total": np.uint32}
    assert {k: (v.dtype, len(v)) for k, v in table.items()} == {k: (d, 0) for k, d in want.items()}


def test_bad_orders_are_refused():
    with pytest.raises(ValueError, match="n_min <= n_max"):
        build_table(corpus(([1], [2, 3])), n_min=3, n_max=2)


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "b")


def test_written_table_loads_and_drafts(bundle):
    c = corpus(([1], [2, 3, 4, 5] * 3), ([1], [2, 3, 4, 5, 6]))
    entry = write_table(bundle, c, {"answers": 2})
    info = load_bundle(bundle).lookup
    assert info is not None and info.path == bundle / TABLE_PATH
    assert (info.n_min, info.n_max, info.entries) == (2, 4, entry["entries"])
    arrays = load_lookup_table(info)
    assert entries(arrays) == entries(build_table(c))
    manifest = json.loads((bundle / "edgespec.json").read_text())
    assert manifest["lookup"]["source"] == {"answers": 2}
    assert manifest["lookup"]["file_bytes"] == (bundle / TABLE_PATH).stat().st_size


def test_a_damaged_table_file_is_a_bundle_error(bundle):
    write_table(bundle, corpus(([1], [2, 3, 4] * 3)), {})
    info = load_bundle(bundle).lookup
    np.savez(bundle / TABLE_PATH, keys=np.zeros(info.entries, np.uint64))
    with pytest.raises(BundleError, match="missing array 'next'"):
        load_lookup_table(info)
    np.savez(bundle / TABLE_PATH, **{n: np.zeros(info.entries, np.int32) for n in ARRAYS})
    with pytest.raises(BundleError, match="'keys' is int32 .* expected uint64"):
        load_lookup_table(info)
    (bundle / TABLE_PATH).write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a readable n-gram table"):
        load_lookup_table(info)
