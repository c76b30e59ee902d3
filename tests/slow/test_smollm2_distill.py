"""`edgespec distill` on the real SmolLM2 bundle, cut short (a few dozen answers, a few dozen
steps): the command runs end to end from the manifest's source_path, the head loads, greedy output
with it is token-identical to plain decoding, and even this briefly trained head gets drafts
accepted. The full 30-minute run and its speedups are measured by `edgespec bench`."""

from __future__ import annotations

import json
import shutil

import pytest

from edgespec import Session
from edgespec.cli import main as cli_main

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a CPU cache is in two sentences.",
]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, smollm2_bundle):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("distill")
    bundle = root / "bundle"
    shutil.copytree(smollm2_bundle, bundle, ignore=shutil.ignore_patterns("eagle"))
    manifest = bundle / "edgespec.json"
    m = json.loads(manifest.read_text())
    m["models"].pop("eagle", None)  # the bundle under test may carry a head already
    manifest.write_text(json.dumps(m))
    argv = ["distill", str(bundle), "--prompts", "48", "--max-new-tokens", "64"]
    argv += ["--steps", "40", "--minutes", "8", "--work-dir", str(root / "work"), "--quiet"]
    assert cli_main(argv) == 0
    return bundle


def test_distilled_head_is_lossless_and_drafts(distilled):
    with Session(distilled, threads=2) as s:
        assert s.has_eagle
        accepted = 0
        for q in QUESTIONS:
            msgs = [{"role": "user", "content": q}]
            plain = s.generate(msgs, max_new_tokens=48, drafter="none")
            r = s.generate(msgs, max_new_tokens=48, drafter="eagle", adaptive=False)
            assert r.tokens == plain.tokens, q
            accepted += r.stats.accepted
        assert accepted > 0
    training = s.bundle.eagle.raw["training"]
    assert training["steps"] == 40 and training["n_prompts"] >= 48
