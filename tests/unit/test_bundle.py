import json

import pytest

from edgespec.bundle import FORMAT_VERSION, BundleError, load_bundle


def _manifest(**over):
    model = {
        "path": "target/model.onnx",
        "architecture": "llama",
        "precision": "fp32",
        "num_layers": 2,
        "num_heads": 4,
        "num_kv_heads": 2,
        "head_dim": 16,
        "hidden_size": 64,
        "vocab_size": 300,
        "capacity": 128,
        "kv_dtype": "float32",
        "logits_dtype": "float32",
        "inputs": {
            "input_ids": "input_ids",
            "seqlens_k": "seqlens_k",
            "total_sequence_length": "total_sequence_length",
            "past_key": "past_key_values.{layer}.key",
            "past_value": "past_key_values.{layer}.value",
        },
        "outputs": {
            "logits": "logits",
            "present_key": "present.{layer}.key",
            "present_value": "present.{layer}.value",
        },
    }
    m = {
        "format": "edgespec-bundle",
        "format_version": FORMAT_VERSION,
        "models": {"target": model},
        "tokenizer": {"path": "tokenizer.json", "chat_template": None, "eos_token_ids": [2]},
        "generation": {"max_new_tokens": 32},
    }
    m.update(over)
    return m


@pytest.fixture
def bundle_dir(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "model.onnx").write_bytes(b"\x08\x07" * 2048 * 512)
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "edgespec.json").write_text(json.dumps(_manifest()))
    return tmp_path


def _write(d, m):
    (d / "edgespec.json").write_text(json.dumps(m))


def test_valid_manifest_loads(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.capacity == 128 and b.draft is None
    assert b.tokenizer.eos_token_ids == (2,)
    kw = b.target.native_spec_kwargs()
    assert kw["past_key"] == "past_key_values.{layer}.key" and kw["vocab_size"] == 300


def test_missing_dir_and_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no edgespec.json"):
        load_bundle(tmp_path)


def test_newer_version_refused(bundle_dir):
    _write(bundle_dir, _manifest(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="newer than this edgespec reads"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    "bad", [{"format": "other"}, {"format_version": "1"}, {"format_version": 0}]
)
def test_bad_format_fields(bundle_dir, bad):
    _write(bundle_dir, _manifest(**bad))
    with pytest.raises(BundleError):
        load_bundle(bundle_dir)


def test_invalid_json(bundle_dir):
    (bundle_dir / "edgespec.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


def test_missing_graph_file(bundle_dir):
    (bundle_dir / "target" / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing the target graph"):
        load_bundle(bundle_dir)


def test_missing_tokenizer(bundle_dir):
    (bundle_dir / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="missing its tokenizer"):
        load_bundle(bundle_dir)


def test_missing_io_name(bundle_dir):
    m = _manifest()
    del m["models"]["target"]["inputs"]["seqlens_k"]
    _write(bundle_dir, m)
    with pytest.raises(BundleError, match="seqlens_k"):
        load_bundle(bundle_dir)


def test_bad_dims(bundle_dir):
    m = _manifest()
    m["models"]["target"]["capacity"] = 0
    _write(bundle_dir, m)
    with pytest.raises(BundleError, match="capacity"):
        load_bundle(bundle_dir)


def test_draft_with_other_vocab_refused(bundle_dir):
    m = _manifest()
    draft = dict(m["models"]["target"], vocab_size=999)
    m["models"]["draft"] = draft
    _write(bundle_dir, m)
    with pytest.raises(BundleError, match="draft vocabulary"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("attention", ["edgespec", "gqa", None])
def test_tree_parents_needs_edgespec_attention(bundle_dir, attention):
    """Only ai.edgespec attention verifies trees: a manifest naming tree_parents for a gqa graph
    is refused on load, an edgespec one passes the name on to the engine."""
    m = _manifest()
    target = m["models"]["target"]
    target["inputs"]["tree_parents"] = "tree_parents"
    if attention is not None:
        target["attention"] = attention
    _write(bundle_dir, m)
    if attention != "edgespec":
        with pytest.raises(BundleError, match="tree_parents' needs attention 'edgespec'"):
            load_bundle(bundle_dir)
        return
    assert load_bundle(bundle_dir).target.native_spec_kwargs()["tree_parents"] == "tree_parents"


def _lookup(**over):
    entry = {
        "path": "lookup/ngrams.npz",
        "kind": "ngram-table",
        "hash": "fnv1a64-words",
        "n_min": 2,
        "n_max": 4,
        "entries": 3,
    }
    entry.update(over)
    return entry


def test_lookup_table_entry_loads(bundle_dir):
    (bundle_dir / "lookup").mkdir()
    (bundle_dir / "lookup" / "ngrams.npz").write_bytes(b"x")
    _write(bundle_dir, _manifest(lookup=_lookup()))
    info = load_bundle(bundle_dir).lookup
    assert (info.path.name, info.n_min, info.n_max, info.entries) == ("ngrams.npz", 2, 4, 3)
    _write(bundle_dir, _manifest())
    assert load_bundle(bundle_dir).lookup is None


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"kind": "trie"}, "'lookup.kind' must be 'ngram-table', got 'trie'"),
        ({"hash": "md5"}, "'lookup.hash' must be 'fnv1a64-words'"),
        ({"path": "lookup/none.npz"}, "missing its n-gram table"),
        ({"n_max": 5}, r"need 1 <= lookup.n_min <= lookup.n_max <= 4, got 2, 5"),
        ({"n_min": 3, "n_max": 2}, "got 3, 2"),
        ({"entries": -1}, "'lookup.entries' must be >= 0, got -1"),
        ({"entries": "3"}, "'lookup.entries' has the wrong type"),
    ],
)
def test_bad_lookup_entries(bundle_dir, over, message):
    (bundle_dir / "lookup").mkdir()
    (bundle_dir / "lookup" / "ngrams.npz").write_bytes(b"x")
    _write(bundle_dir, _manifest(lookup=_lookup(**over)))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)
