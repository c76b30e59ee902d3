"""The draft head graph (export/eagle_graph.py): contract, KV behaviour and bundle writing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgespec.bundle import load_bundle
from edgespec.export.eagle_graph import add_random_eagle, check_token_map, write_eagle
from edgespec.export.verify import SharedKVDecoder


@pytest.fixture
def eagle_bundle(tmp_path, tiny_bundle):
    dest = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dest)
    add_random_eagle(dest, draft_vocab=300, seed=1)
    return dest


def _head(bundle):
    m = json.loads((bundle / "edgespec.json").read_text())["models"]["eagle"]
    return SharedKVDecoder(bundle / m["path"], m), m


def test_head_chunked_equals_one_call(eagle_bundle):
    """5 rows in one call == 3 rows then 2 rows (the shared-KV contract), rollback included."""
    dec, m = _head(eagle_bundle)
    rng = np.random.default_rng(0)
    ids = [5, 17, 99, 3, 250]
    feats = rng.standard_normal((5, m["hidden_size"])).astype(np.float32)  # [5, H]
    full_l, full_h = dec.forward(ids, 0, hidden=True, features=feats)
    assert full_l.shape == (5, m["vocab_size"]) and full_h.shape == (5, m["hidden_size"])
    dec.forward([1, 2], 0, hidden=True, features=feats[:2] * 3)  # garbage, then rewound over
    a_l, a_h = dec.forward(ids[:3], 0, hidden=True, features=feats[:3])
    b_l, b_h = dec.forward(ids[3:], 3, hidden=True, features=feats[3:])
    np.testing.assert_allclose(np.concatenate([a_l, b_l]), full_l, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([a_h, b_h]), full_h, atol=1e-5)


def test_head_logits_to_keep_returns_the_last_rows(eagle_bundle):
    """The catch-up call (logits_to_keep = 1) gives the full call's last logits row, and the
    features of every row."""
    dec, m = _head(eagle_bundle)
    assert m["inputs"]["logits_to_keep"] == "logits_to_keep"
    rng = np.random.default_rng(1)
    ids = [7, 8, 9, 10]
    feats = rng.standard_normal((4, m["hidden_size"])).astype(np.float32)  # [4, H]
    full_l, full_h = dec.forward(ids, 0, hidden=True, features=feats)
    last_l, last_h = dec.forward(ids, 0, hidden=True, features=feats, keep=1)
    assert last_l.shape == (1, m["vocab_size"])
    np.testing.assert_allclose(last_l[0], full_l[-1], atol=1e-5)
    np.testing.assert_allclose(last_h, full_h, atol=1e-6)


def test_manifest_entry_and_token_map(eagle_bundle):
    b = load_bundle(eagle_bundle)
    m = b.manifest["models"]["eagle"]
    tm = np.fromfile(eagle_bundle / m["token_map"], dtype="<i4")
    assert tm.shape == (300,) and len(set(tm.tolist())) == 300
    assert set(b.tokenizer.eos_token_ids) <= set(tm.tolist())
    assert m["target_vocab_size"] == b.target.vocab_size and m["kind"] == "eagle-head"


def test_write_refuses_existing_head_without_force(eagle_bundle):
    m = json.loads((eagle_bundle / "edgespec.json").read_text())
    with pytest.raises(FileExistsError, match="already has a draft head"):
        write_eagle(eagle_bundle, None, {}, np.zeros(1), {})  # type: ignore[arg-type]
    assert json.loads((eagle_bundle / "edgespec.json").read_text()) == m  # untouched


@pytest.mark.parametrize(
    "tm, msg",
    [
        (np.arange(4), r"shape \(4,\)"),
        (np.array([0, 1, 2, 1, 4]), "duplicate"),
        (np.array([0, 1, 2, 3, 512]), "512 is outside"),
        (np.array([0, -1, 2, 3, 4]), "-1 is outside"),
    ],
)
def test_token_map_checks(tm, msg):
    with pytest.raises(ValueError, match=msg):
        check_token_map(tm, 5, 512)


def test_target_without_hidden_states_refused(tmp_path, tiny_bundle):
    dest = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dest)
    path = dest / "edgespec.json"
    m = json.loads(path.read_text())
    del m["models"]["target"]["outputs"]["hidden_states"]
    path.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="no hidden_states output"):
        add_random_eagle(dest, draft_vocab=100)
    assert not (dest / "eagle").exists() and json.loads(path.read_text()) == m


def test_target_tensors_read_an_untied_head_from_its_packed_tiles(tiny_bundle, tiny_hf_dir):
    """The tiny target's head is untied and runs on FMatMul: the head a test head copies rows
    from is lm_head.weight itself, not the embedding table."""
    from safetensors.numpy import load_file

    from edgespec.export.eagle_graph import _target_tensors

    hf = load_file(str(tiny_hf_dir / "model.safetensors"))
    target = json.loads((tiny_bundle / "edgespec.json").read_text())["models"]["target"]
    t = _target_tensors(tiny_bundle, target)
    assert np.array_equal(t["head"], hf["lm_head.weight"].astype(np.float32))
    assert np.array_equal(t["embed"], hf["model.embed_tokens.weight"].astype(np.float32))
