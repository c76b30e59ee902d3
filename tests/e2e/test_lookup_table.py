"""Prompt lookup with the bundle's n-gram table on the tiny random Llama: drafts from the table
are verified like any other (greedy output unchanged), they are accepted when the table holds
the target's own answers, and a damaged table stops the Session before any model loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgespec import GenerationConfig, Session
from edgespec.export.distill.data import Corpus
from edgespec.export.distill.ngram_table import TABLE_PATH, write_table

PROMPTS = [[5, 17, 300, 42, 9], [100, 3, 77], [8, 8, 250, 61, 19, 4, 33], [401, 12]]


def _generate(s: Session, ids: list[int], drafter: str, table: bool = True):
    nc = s._native_config(GenerationConfig(max_new_tokens=48, drafter=drafter))
    nc.ngram_table = table
    nc.adaptive = False  # draft whatever the drafter offers: acceptance is then deterministic
    nc.num_draft_tokens = 4
    nc.eos_ids = []  # random weights: run to the length limit
    return s._engine.generate(ids, nc)


def _corpus(pairs: list[tuple[list[int], list[int]]]) -> Corpus:
    ids = np.array([t for p, a in pairs for t in p + a], np.int32)  # [N]
    lens = np.array([len(p) + len(a) for p, a in pairs], np.int32)  # [S]
    plens = np.array([len(p) for p, _ in pairs], np.int32)  # [S]
    return Corpus(ids, np.zeros((int(np.sum(lens - 1)), 1), np.float16), lens, plens)


@pytest.fixture(scope="module")
def table_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle plus a table of its own greedy answers to PROMPTS."""
    b = shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("lookup") / "b")
    with Session(b) as s:
        answers = [list(_generate(s, p, "none").tokens) for p in PROMPTS]
    # each answer twice: an entry needs two sightings
    pairs = list(zip(PROMPTS, answers, strict=True)) * 2
    entry = write_table(b, _corpus(pairs), {"answers": len(pairs)})
    assert entry["entries"] > 0
    return b


def _accepted(bundle, drafter: str) -> tuple[int, int]:
    """Drafts accepted over PROMPTS with the table and without it; both outputs must equal
    plain decoding."""
    n_with = n_without = 0
    with Session(bundle) as s:
        for p in PROMPTS:
            plain = list(_generate(s, p, "none").tokens)
            with_table = _generate(s, p, drafter)
            without = _generate(s, p, drafter, table=False)
            assert list(with_table.tokens) == plain == list(without.tokens)
            n_with += with_table.stats.n_accept
            n_without += without.stats.n_accept
    return n_with, n_without


def test_table_drafts_are_accepted_and_change_nothing(table_bundle):
    n_with, n_without = _accepted(table_bundle, "ngram")
    # the table holds these very answers: it drafts where the text has nothing yet
    assert n_without == 0  # the short prompts hold no 2-token match
    assert n_with >= len(PROMPTS) * 48 // 2


def test_a_table_with_unsorted_keys_stops_the_session(table_bundle, tmp_path):
    b = shutil.copytree(table_bundle, tmp_path / "b")
    with np.load(b / TABLE_PATH) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["keys"] = arrays["keys"][::-1].copy()
    np.savez(b / TABLE_PATH, **arrays)
    with pytest.raises(ValueError, match="n-gram table: entry 1: keys are not strictly ascending"):
        Session(b)


def test_the_head_drafter_uses_the_table_where_it_cannot_copy(table_bundle, tmp_path):
    """Drafter "eagle" with a random head: the table's drafts are the ones that get accepted."""
    from test_engine_eagle import with_random_eagle

    n_with, n_without = _accepted(with_random_eagle(table_bundle, tmp_path / "eagle"), "eagle")
    assert n_with >= len(PROMPTS) * 48 // 2 > n_without


def test_cli_info_reports_the_table(table_bundle, capsys):
    from edgespec.cli import main as cli_main

    assert cli_main(["info", str(table_bundle)]) == 0
    assert "lookup   n-gram table for drafting: " in capsys.readouterr().out
    assert cli_main(["info", str(table_bundle), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    entries = json.loads((table_bundle / "edgespec.json").read_text())["lookup"]["entries"]
    assert info["lookup"]["entries"] == entries and (
        info["lookup"]["n_min"],
        info["lookup"]["n_max"],
    ) == (2, 4)
    assert 0 < info["lookup_overhead"] < 1
