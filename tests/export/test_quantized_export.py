"""int4 / int8 exports: run through the shared-KV contract, agree with torch on top-1, and
carry pre-quantized weights exactly."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from conftest import save_random_model, tiny_config  # noqa: E402
from decoder_harness import SharedKVDecoder, torch_reference  # noqa: E402
from test_graph_parity import COMMON, VOCAB, load_hf_no_tokenizer  # noqa: E402

from edgespec.export.graph import GraphOptions  # noqa: E402
from edgespec.export.model_ir import QuantizedWeight  # noqa: E402
from edgespec.export.quantize import quantize_rtn  # noqa: E402
from edgespec.export.writer import ModelSpec, write_bundle  # noqa: E402

pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def qwen2_model(tmp_path_factory):
    """(torch model, LoadedModel) of a tiny random qwen2 (q/k/v biases, untied head)."""
    d = tmp_path_factory.mktemp("q_hf")
    cfg = tiny_config(
        transformers.Qwen2Config, **{**COMMON, "initializer_range": 0.05}, tie_word_embeddings=False
    )
    model = save_random_model(d, cfg, seed=2)
    return model, load_hf_no_tokenizer(d)


def export(tmp_path, loaded, name: str, **opts) -> SharedKVDecoder:
    bundle = write_bundle(tmp_path / name, ModelSpec(loaded, GraphOptions(capacity=64, **opts)))
    entry = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
    return SharedKVDecoder(bundle / entry["path"], entry)


@pytest.mark.parametrize(("precision", "min_top1"), [("int8", 0.9), ("int4", 0.55)])
def test_quantized_top1_agrees_with_torch(tmp_path, qwen2_model, precision, min_top1):
    model, loaded = qwen2_model
    dec = export(tmp_path, loaded, precision, precision=precision)
    rng = np.random.default_rng(0)
    ids = [int(t) for t in rng.integers(0, VOCAB, 40)]
    got = np.concatenate(
        [dec.forward(ids[:24], 0), dec.forward(ids[24:25], 24), dec.forward(ids[25:40], 25)]
    )  # [40, vocab]
    ref = torch_reference(model, ids)[0]  # [40, vocab]
    top1 = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
    print(f"{precision}: top-1 agreement {top1:.3f}, max|dlogits| {np.abs(got - ref).max():.3f}")
    assert top1 >= min_top1
    if precision == "int4":  # float weights quantized here take Q4_1's form: QMatMul runs all
        import onnx

        graph = onnx.load(
            str(tmp_path / "int4" / "target" / "model.onnx"), load_external_data=False
        )
        ops = [n.op_type for n in graph.graph.node]
        assert ops.count("QMatMul") == 2 * 4 + 1 and "MatMulNBits" not in ops
        manifest = json.loads((tmp_path / "int4" / "edgespec.json").read_text())
        assert manifest["format_version"] == 4  # older runtimes refuse it: they lack the op


def prequantize(loaded, rng, float16_m: bool = False):
    """Copy of `loaded` with every linear weight a QuantizedWeight: int4 RTN, except the
    q/k/v projections of layer 0 made GGUF-Q4_1-like (non-integer zero points). `float16_m`: as
    the GGUF loader stores Q4_1 (w = d q + m, m a float16): zero point -m / d."""
    weights = dict(loaded.weights)
    for key, w in loaded.weights.items():
        if key.endswith("_proj.weight") or key == "lm_head.weight":
            weights[key] = quantize_rtn(w, bits=4)
    for t in "qkv":
        key = f"model.layers.0.self_attn.{t}_proj.weight"
        qw = weights[key]
        frac = rng.uniform(0.1, 0.9, qw.zero_point.shape).astype(np.float32)
        zp = qw.zero_point + frac
        if float16_m:
            m = (-qw.scale * zp).astype(np.float16).astype(np.float64)  # [N, nb]
            zp = (-m / qw.scale.astype(np.float64)).astype(np.float32)
        weights[key] = dataclasses.replace(qw, zero_point=zp, source="gguf:Q4_1")
    return dataclasses.replace(loaded, weights=weights)


@pytest.mark.parametrize(
    ("float16_m", "attention", "offset_op"),
    [(True, "auto", "BlockOffset"), (False, "auto", "MatMul"), (True, "gqa", "MatMul")],
)
def test_prequantized_weights_are_packed_exactly(
    tmp_path, qwen2_model, float16_m, attention, offset_op
):
    """int4 graph (MatMulNBits, accuracy_level 0) == fp32 graph of the dequantized weights. A
    float16 m in a CPU graph (edgespec attention) is added by one ai.edgespec BlockOffset node;
    any other offset by Reshape / ReduceSum / MatMul / Add."""
    import onnx

    _, loaded = qwen2_model
    pre = prequantize(loaded, np.random.default_rng(1), float16_m)
    assert isinstance(pre.weights["model.layers.1.mlp.down_proj.weight"], QuantizedWeight)
    opts = dict(accuracy_level=0, attention=attention, quant_op="matmulnbits")
    q = export(tmp_path, pre, "int4", precision="int4", **opts)
    f = export(tmp_path, pre, "fp32", precision="fp32")  # fp32 dequantizes
    graph = onnx.load(str(tmp_path / "int4" / "target" / "model.onnx"), load_external_data=False)
    offsets = [n.op_type for n in graph.graph.node if n.name.endswith("/offset")]
    assert offsets == [offset_op] * 1  # the fused q/k/v projection of layer 0
    ids = [3, 17, 250, 99, 4, 8, 61]
    a, b = q.forward(ids, 0), f.forward(ids, 0)  # [7, vocab]
    assert np.abs(a - b).max() <= 1e-3
    a2, b2 = q.forward([5, 6], 7), f.forward([5, 6], 7)
    assert np.abs(a2 - b2).max() <= 1e-3


def gguf_like(loaded, rng):
    """Copy of `loaded` as SmolLM2's GGUF holds it: every projection Q4_1 (float16 m), the output
    layer Q8_0 (uint8 q + 128, zero point 128, float16 scale): QMatMul's inputs."""
    weights = dict(loaded.weights)
    for key, w in loaded.weights.items():
        if key.endswith("_proj.weight"):
            qw = quantize_rtn(w, bits=4)
            frac = rng.uniform(0.1, 0.9, qw.zero_point.shape)
            m = (-qw.scale * (qw.zero_point + frac)).astype(np.float16).astype(np.float64)
            zp = (-m / qw.scale.astype(np.float64)).astype(np.float32)  # [N, nb]
            weights[key] = dataclasses.replace(qw, zero_point=zp, source="gguf:Q4_1")
        elif key == "lm_head.weight":
            qw = quantize_rtn(w, bits=8)
            blocks = w.reshape(w.shape[0], -1, 32)  # [N, nb, 32]
            d = (np.abs(blocks).max(-1) / 127).astype(np.float16).astype(np.float32)  # [N, nb]
            q = np.clip(np.round(blocks / d[:, :, None]), -127, 127) + 128  # [N, nb, 32]
            weights[key] = dataclasses.replace(
                qw, q=q.reshape(w.shape).astype(np.uint8), scale=d,
                zero_point=np.full_like(d, 128.0), source="gguf:Q8_0",
            )  # fmt: skip
    return dataclasses.replace(loaded, weights=weights)


def test_qmatmul_graph(tmp_path, qwen2_model):
    """A CPU int4 graph of Q4_1 / Q8_0 weights runs every linear layer as one ai.edgespec
    QMatMul node (bits 4, the output layer bits 8):
    the function of MatMulNBits with int8 activations (accuracy_level 4) + BlockOffset (to within
    int8 rounding: the two round a few activations differently, which this tiny random model
    amplifies to ~2% of its largest logit), and a verify call equals one-token steps bit for
    bit."""
    import onnx

    _, loaded = qwen2_model
    pre = gguf_like(loaded, np.random.default_rng(3))
    q4 = export(tmp_path, pre, "q4", precision="int4")
    ref = export(tmp_path, pre, "nbits", precision="int4", quant_op="matmulnbits")
    graph = onnx.load(str(tmp_path / "q4" / "target" / "model.onnx"), load_external_data=False)
    attrs = {n.name: {a.name: a.i for a in n.attribute} for n in graph.graph.node}
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("QMatMul") == 2 * 4 + 1 and "MatMulNBits" not in ops  # 2 layers + head
    assert (attrs["lm_head"]["bits"], attrs["lm_head"]["zero_point"]) == (8, 128)  # Q8_0
    assert (
        attrs["model.layers.1.mlp.down_proj"]["bits"],
        attrs["model.layers.1.mlp.down_proj"]["zero_point"],
    ) == (4, 0)
    ids = [3, 17, 250, 99, 4, 8, 61, 5, 6]
    a, b = q4.forward(ids, 0), ref.forward(ids, 0)  # [9, vocab]
    assert np.abs(a - b).max() <= 0.05 * np.abs(b).max()  # a packing error gives ~100%
    steps = export(tmp_path, pre, "q4_steps", precision="int4")
    steps.forward(ids[:4], 0)
    rows = [steps.forward(ids[i : i + 1], i) for i in range(4, 9)]  # five 1-token calls
    together = export(tmp_path, pre, "q4_wide", precision="int4")
    together.forward(ids[:4], 0)
    assert np.array_equal(together.forward(ids[4:9], 4), np.concatenate(rows))


def test_int8_precision_keeps_int4_source_weights(tmp_path, qwen2_model):
    """A carried 4-bit weight stays 4-bit under --precision int8 (no re-quantization)."""
    import onnx

    _, loaded = qwen2_model
    pre = prequantize(loaded, np.random.default_rng(2))
    pre.weights["lm_head.weight"] = loaded.weights["lm_head.weight"]  # float: quantized here
    write_bundle(tmp_path / "b", ModelSpec(pre, GraphOptions(precision="int8", capacity=64)))
    graph = onnx.load(str(tmp_path / "b" / "target" / "model.onnx"), load_external_data=False)
    bits = {
        n.name: {a.name: a.i for a in n.attribute}["bits"]
        for n in graph.graph.node
        if n.op_type == "MatMulNBits"
    }
    assert bits["model.layers.0.mlp.gate_up_proj"] == 4  # carried
    assert bits["lm_head"] == 8  # float weight quantized here
