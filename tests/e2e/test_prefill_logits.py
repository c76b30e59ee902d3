"""logits_to_keep: a prefill chunk computes the logits of its last row only.

A bundle exported without the input (as before the option existed) must still load and give
the same tokens; with it, the graph returns exactly the requested trailing rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgespec import Session

PROMPTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog " * 8,  # > 64 tokens: several prefill chunks
    "one two three " * 30,
]


@pytest.fixture(scope="module")
def bundle_without_keep(tmp_path_factory, tiny_hf_dir):
    from conftest import TINY_CAPACITY

    from edgespec.export.graph import GraphOptions
    from edgespec.export.hf_loader import load_hf
    from edgespec.export.writer import ModelSpec, write_bundle

    opts = GraphOptions(capacity=TINY_CAPACITY, logits_to_keep=False)
    out = tmp_path_factory.mktemp("nokeep") / "bundle"
    return write_bundle(out, ModelSpec(load_hf(str(tiny_hf_dir)), opts))


def test_manifest_declares_the_input(tiny_bundle, bundle_without_keep):
    new = json.loads((tiny_bundle / "edgespec.json").read_text())["models"]["target"]
    old = json.loads((bundle_without_keep / "edgespec.json").read_text())["models"]["target"]
    assert new["inputs"]["logits_to_keep"] == "logits_to_keep"
    assert "logits_to_keep" not in old["inputs"]


def test_graph_returns_the_last_k_rows(tiny_bundle):
    import onnxruntime as ort

    m = json.loads((tiny_bundle / "edgespec.json").read_text())["models"]["target"]
    from edgespec._ort import ops_library

    so = ort.SessionOptions()
    so.register_custom_ops_library(ops_library())  # the graph's ai.edgespec attention
    sess = ort.InferenceSession(
        str(tiny_bundle / m["path"]), so, providers=["CPUExecutionProvider"]
    )
    kv = np.zeros((1, m["num_kv_heads"], m["capacity"], m["head_dim"]), np.float32)
    feeds = {
        "input_ids": np.array([[5, 9, 31, 7, 100]], np.int64),  # [1, 5]
        "seqlens_k": np.array([4], np.int32),
        "total_sequence_length": np.array(5, np.int32),
        "tree_parents": np.arange(-1, 4, dtype=np.int32),  # [5]: a chain
    }
    for i in range(m["num_layers"]):
        feeds[f"past_key_values.{i}.key"] = kv
        feeds[f"past_key_values.{i}.value"] = kv
    rows = {
        k: sess.run(["logits"], {**feeds, "logits_to_keep": np.array([k], np.int64)})[0][0]
        for k in (1, 3, 5)
    }  # each [k, vocab]
    assert [r.shape[0] for r in rows.values()] == [1, 3, 5]
    np.testing.assert_allclose(rows[1], rows[5][-1:], atol=1e-5)
    np.testing.assert_allclose(rows[3], rows[5][-3:], atol=1e-5)


def test_same_tokens_with_and_without_the_input(tiny_bundle, bundle_without_keep):
    with Session(tiny_bundle, threads=1) as new, Session(bundle_without_keep, threads=1) as old:
        for p in PROMPTS:
            for drafter in ("none", "ngram"):
                a = new.generate(p, max_new_tokens=24, drafter=drafter)
                b = old.generate(p, max_new_tokens=24, drafter=drafter)
                assert a.tokens == b.tokens, (p, drafter)
