"""Exported decoder graphs against the transformers reference (logits, KV reuse, rollback)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from conftest import save_random_model, tiny_config  # noqa: E402
from decoder_harness import SharedKVDecoder, decode_plan, torch_reference  # noqa: E402

from edgespec.export.graph import GraphOptions  # noqa: E402
from edgespec.export.hf_loader import load_hf  # noqa: E402
from edgespec.export.writer import ModelSpec, write_bundle  # noqa: E402

pytestmark = pytest.mark.export

VOCAB = 320
COMMON = dict(  # on top of conftest.TINY_DIMS
    vocab_size=VOCAB,
    intermediate_size=128,
    max_position_embeddings=128,
    initializer_range=0.15,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
CASES = {
    "llama": (transformers.LlamaConfig, {}),
    "llama-llama3-rope": (transformers.LlamaConfig, {"rope_scaling": LLAMA3_ROPE}),
    "llama-linear-rope-tied": (
        transformers.LlamaConfig,
        {"rope_scaling": {"rope_type": "linear", "factor": 4.0}, "tie_word_embeddings": True},
    ),
    "mistral": (transformers.MistralConfig, {"sliding_window": 64}),  # = capacity: no effect
    "qwen2": (transformers.Qwen2Config, {"tie_word_embeddings": False}),
    "qwen3": (transformers.Qwen3Config, {"head_dim": 16, "tie_word_embeddings": True}),
}


def export_case(tmp_path, case: str, precision: str, **opts):
    """(torch model, bundle dir, manifest target entry) for a CASES entry."""
    cls, extra = CASES[case]
    model_dir = tmp_path / "hf"
    model = save_random_model(model_dir, tiny_config(cls, **COMMON, **extra), seed=1)
    loaded = load_hf_no_tokenizer(model_dir)
    options = GraphOptions(precision=precision, capacity=64, **opts)
    bundle = write_bundle(tmp_path / "bundle", ModelSpec(loaded, options))
    entry = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
    return model, bundle, entry


def load_hf_no_tokenizer(model_dir):
    """load_hf on a directory without tokenizer files: borrow a minimal tokenizer.json."""
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    (model_dir / "tokenizer.json").write_text(tok.to_str())
    return load_hf(model_dir)


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_logits_match_torch(tmp_path, case):
    model, bundle, entry = export_case(tmp_path, case, "fp32")
    assert entry["architecture"] == case.split("-")[0]
    dec = SharedKVDecoder(bundle / entry["path"], entry)
    rng = np.random.default_rng(7)
    seq = [int(t) for t in rng.integers(0, VOCAB, 13)]
    results = decode_plan(dec, model, seq, rng)
    worst = max(d for _, d, _ in results)
    print(f"{case}: max|dlogits| per step {[(lbl, f'{d:.2e}') for lbl, d, _ in results]}")
    assert worst <= 1e-3, results
    assert all(top1 == 1.0 for _, _, top1 in results), results


@pytest.mark.parametrize("float_op", ["auto", "matmul"])
def test_float_linear_layers_on_either_op_match_torch(tmp_path, float_op):
    """float_op auto: ai.edgespec FMatMul (format 5); matmul: ONNX MatMul (format 3). qwen2: the
    projections' biases and an untied LM head ride on the same op."""
    import onnx

    model, bundle, entry = export_case(tmp_path, "qwen2", "fp32", float_op=float_op)
    graph = onnx.load(str(bundle / entry["path"]), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert ("FMatMul" in ops, "MatMul" in ops) == (float_op == "auto", float_op == "matmul")
    version = json.loads((bundle / "edgespec.json").read_text())["format_version"]
    assert version == (5 if float_op == "auto" else 3)
    ids = [5, 9, 200, 31, 7]
    logits = SharedKVDecoder(bundle / entry["path"], entry).forward(ids, 0)  # [5, vocab]
    assert np.abs(logits - torch_reference(model, ids)[0]).max() <= 1e-3


@pytest.mark.parametrize(("float_op", "head"), [("auto", "FMatMul"), ("matmul", "Gemm")])
def test_a_tied_table_is_held_once(tmp_path, float_op, head):
    """qwen3 ties its head to the embedding table: on FMatMul the graph holds the table once, as
    the head's tiles, and the embedding gathers its rows out of them (logits match torch; the
    table a test head copies is the checkpoint's); on MatMul, Gemm reads the table itself."""
    import onnx

    from edgespec.export.eagle_graph import _target_tensors

    model, bundle, entry = export_case(tmp_path, "qwen3", "fp32", float_op=float_op)
    graph = onnx.load(str(bundle / entry["path"]), load_external_data=False).graph
    (node,) = [n for n in graph.node if n.name == "lm_head"]
    inits = {i.name: list(i.dims) for i in graph.initializer}
    table = "model.embed_tokens.ftiles" if head == "FMatMul" else "model.embed_tokens.weight"
    assert node.op_type == head and table in node.input
    assert [n for n in inits if n.startswith("model.embed_tokens.")] == [table]
    ids = [5, 9, 200, 31, 7]
    logits = SharedKVDecoder(bundle / entry["path"], entry).forward(ids, 0)  # [5, vocab]
    assert np.abs(logits - torch_reference(model, ids)[0]).max() <= 1e-3
    embed = model.get_input_embeddings().weight.detach().numpy()  # [V, H]
    assert np.array_equal(_target_tensors(bundle, entry)["embed"], embed)


def test_unknown_float_op_is_refused():
    with pytest.raises(ValueError, match="unknown float_op 'mlas'"):
        GraphOptions(float_op="mlas")


def test_hidden_states_output_and_unbound(tmp_path):
    """hidden_states equals HF's final-norm output; leaving it unbound is fine (other tests)."""
    model, bundle, entry = export_case(tmp_path, "qwen2", "fp32")
    dec = SharedKVDecoder(bundle / entry["path"], entry)
    ids = [5, 9, 200, 31, 7]
    logits, hidden = dec.forward(ids, 0, hidden=True)  # [5, vocab], [5, 64]
    ref_logits, ref_hidden = torch_reference(model, ids)
    assert hidden.shape == (5, 64) and hidden.dtype == np.float32
    assert np.abs(hidden - ref_hidden).max() <= 1e-4
    assert np.abs(logits - ref_logits).max() <= 1e-3
    more = dec.forward([11], 5)  # [1, vocab]: only logits + presents bound
    assert np.abs(more - torch_reference(model, ids + [11])[0][5:]).max() <= 1e-3


def test_graph_without_hidden_states_output(tmp_path):
    import onnx

    _, bundle, entry = export_case(tmp_path, "llama", "fp32", hidden_states=False)
    assert "hidden_states" not in entry["outputs"]
    graph = onnx.load(str(bundle / entry["path"]), load_external_data=False)
    outs = [o.name for o in graph.graph.output]
    assert outs[0] == "logits" and "hidden_states" not in outs
    assert graph.ir_version == 10


@pytest.mark.parametrize("case", ["llama", "qwen3"])  # qwen3: tied head (Gemm) + q/k norms
def test_fp16_close_to_torch(tmp_path, case):
    model, bundle, entry = export_case(tmp_path, case, "fp16")
    assert entry["kv_dtype"] == "float16" and entry["logits_dtype"] == "float32"
    dec = SharedKVDecoder(bundle / entry["path"], entry)
    rng = np.random.default_rng(3)
    results = decode_plan(dec, model, [int(t) for t in rng.integers(0, VOCAB, 13)], rng)
    print(f"fp16 {case}: {results}")
    assert max(d for _, d, _ in results) <= 0.1, results
    assert np.mean([t for _, _, t in results]) >= 0.9, results


def test_capacity_beyond_sliding_window_is_refused(tmp_path):
    cls, extra = CASES["mistral"]
    save_random_model(tmp_path / "hf", tiny_config(cls, **COMMON, **extra), seed=1)
    loaded = load_hf_no_tokenizer(tmp_path / "hf")
    with pytest.raises(ValueError, match="capacity 128 exceeds the model's sliding_window 64"):
        write_bundle(tmp_path / "b", ModelSpec(loaded, GraphOptions(capacity=128)))
    assert not (tmp_path / "b").exists()
