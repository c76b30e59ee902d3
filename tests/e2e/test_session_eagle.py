"""The draft head through the Python API, the CLI and the manifest checks (tiny bundle with an
untrained head from edgespec.export.eagle_graph.add_random_eagle)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgespec import BundleError, Session
from edgespec.cli import main as cli_main

PROMPTS = [
    "the quick brown fox jumps over the lazy dog",
    "one two three one two three one two three",
    "hello world, hello world, hello world " * 12,  # crosses the 64-token prefill chunk
    "zebra",
]


@pytest.fixture(scope="module")
def eagle_bundle(tmp_path_factory, tiny_bundle) -> Path:
    from edgespec.export.eagle_graph import add_random_eagle

    dest = tmp_path_factory.mktemp("eagle") / "bundle"
    shutil.copytree(tiny_bundle, dest)
    add_random_eagle(dest, draft_vocab=300, seed=3)
    return dest


@pytest.fixture(scope="module")
def session(eagle_bundle):
    with Session(eagle_bundle, threads=1, prefill_chunk=64) as s:
        yield s


def test_auto_picks_the_head_and_output_equals_plain(session):
    assert session.has_eagle and session.resolve_drafter("auto") == "eagle"
    drafted = 0
    for p in PROMPTS:
        plain = session.generate(p, max_new_tokens=32, drafter="none")
        for drafter in ("auto", "eagle"):
            r = session.generate(p, max_new_tokens=32, drafter=drafter)
            assert r.tokens == plain.tokens and r.text == plain.text, (p, drafter)
            assert r.stats.drafter == "eagle"
            drafted += r.stats.drafted
    assert drafted > 0


def test_streaming_with_the_head_equals_plain(session):
    plain = session.generate(PROMPTS[1], max_new_tokens=32, drafter="none")
    stream = session.generate(PROMPTS[1], max_new_tokens=32, drafter="eagle", stream=True)
    assert "".join(stream) == plain.text and stream.result.tokens == plain.tokens


def test_eagle_without_a_head_is_a_value_error(tiny_bundle):
    with Session(tiny_bundle, threads=1) as s:
        assert not s.has_eagle and s.resolve_drafter("auto") == "ngram"
        with pytest.raises(ValueError, match="drafter 'eagle' needs a bundle with a draft head"):
            s.generate("hello", drafter="eagle")
        assert s.generate("hello", max_new_tokens=4).tokens  # still works


def test_cli_info_reports_the_head(eagle_bundle, capsys):
    assert cli_main(["info", str(eagle_bundle), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "eagle" in info["drafters"] and info["models"]["eagle"]["vocab_size"] == 300
    assert 0 < info["eagle_overhead"] < 1 and info["eagle_training"]["kind"] == "random"


def _edit(bundle: Path, fn) -> None:
    path = bundle / "edgespec.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def _write_map(bundle: Path, ids) -> None:
    np.asarray(ids, dtype="<i4").tofile(bundle / "eagle" / "token_map.bin")


BROKEN = {
    "kind": (lambda b: _edit(b, lambda m: m["models"]["eagle"].update(kind="medusa")), "kind"),
    "no features input": (
        lambda b: _edit(b, lambda m: m["models"]["eagle"]["inputs"].pop("features")),
        "missing 'features'",
    ),
    "target without features": (
        lambda b: _edit(b, lambda m: m["models"]["target"]["outputs"].pop("hidden_states")),
        "target has no hidden_states output",
    ),
    "hidden size": (
        lambda b: _edit(b, lambda m: m["models"]["eagle"].update(hidden_size=65)),
        "hidden_size 65 differs",
    ),
    "missing map": (lambda b: (b / "eagle" / "token_map.bin").unlink(), "missing the draft head"),
    "short map": (lambda b: _write_map(b, range(299)), "expected 4 x vocab_size 300"),
    "map out of range": (lambda b: _write_map(b, [*range(299), 512]), "id 512 outside"),
    "duplicate ids": (lambda b: _write_map(b, [*range(299), 0]), "duplicate target ids"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_head_is_a_one_line_bundle_error(eagle_bundle, tmp_path, case):
    breaker, pattern = BROKEN[case]
    bundle = Path(shutil.copytree(eagle_bundle, tmp_path / "bundle"))
    breaker(bundle)
    with pytest.raises(BundleError, match=pattern) as info:
        Session(bundle, threads=1, prefill_chunk=64)
    assert "\n" not in str(info.value)
