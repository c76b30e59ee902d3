"""Blockwise quantization, MatMulNBits packing (exact against numpy), quantized exports."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from edgespec.export.graph import IR_VERSION, OPSETS  # noqa: E402
from edgespec.export.model_ir import QuantizedWeight  # noqa: E402
from edgespec.export.quantize import (  # noqa: E402
    concat_quantized,
    pack_matmulnbits,
    quantize_rtn,
)

pytestmark = pytest.mark.export


def unpack_reference(p, n_blocks: int) -> np.ndarray:
    """Independent numpy decode of the MatMulNBits layout -> float32 W [N, K]."""
    if p.bits == 4:
        lo, hi = p.b & 0x0F, p.b >> 4  # [N, nb, bs/2] each
        q = np.stack([lo, hi], axis=-1).reshape(p.n, n_blocks, p.block_size)
        zp_bytes = p.zero_points.reshape(p.n, -1)  # [N, ceil(nb/2)]
        zp = np.stack([zp_bytes & 0x0F, zp_bytes >> 4], axis=-1).reshape(p.n, -1)[:, :n_blocks]
    else:
        q = p.b.reshape(p.n, n_blocks, p.block_size)
        zp = p.zero_points.reshape(p.n, n_blocks)
    scales = p.scales.reshape(p.n, n_blocks)
    w = (q.astype(np.float32) - zp[:, :, None]) * scales[:, :, None]  # [N, nb, bs]
    return w.reshape(p.n, p.k)


def run_matmulnbits(qw: QuantizedWeight, x: np.ndarray, accuracy_level: int = 0) -> np.ndarray:
    """x float32 [m, K] through the packed op (+ offset term) -> [m, N]."""
    from edgespec.export.graph import GraphOptions, _Builder
    from edgespec.export.model_ir import ArchConfig, LoadedModel, TokenizerData

    cfg = ArchConfig("llama", 1, 1, 1, 2, x.shape[1], 1, 1, 1e-5, 1e4, 1, False)
    lm = LoadedModel(cfg, {}, TokenizerData("", None, None, [], None, False), "t")
    b = _Builder(lm, GraphOptions(precision=f"int{qw.bits}", accuracy_level=accuracy_level))
    y = b.matmul_nbits("x", qw, "lin")
    b.nodes.append(helper.make_node("Identity", [y], ["y"]))
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        b.nodes,
        "g",
        [vi("x", TensorProto.FLOAT, [1, "m", x.shape[1]])],
        [vi("y", TensorProto.FLOAT, None)],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x[None]})[0][0]


@pytest.mark.parametrize(("bits", "n_in"), [(4, 96), (4, 64), (8, 96), (8, 128)])
def test_rtn_roundtrip_and_packing_layout(bits, n_in):
    rng = np.random.default_rng(bits + n_in)
    w = rng.standard_normal((40, n_in)).astype(np.float32)  # [out, in]
    qw = quantize_rtn(w, bits=bits, block_size=32)
    assert qw.q.dtype == np.uint8 and qw.q.max() < 2**bits
    step = qw.scale[:, :, None]  # [out, nb, 1]
    err = np.abs(qw.dequantize() - w).reshape(40, -1, 32)
    assert np.all(err <= step / 2 + 1e-5)  # RTN: within half a step
    p = pack_matmulnbits(qw)
    nb = n_in // 32
    assert p.b.shape == (40, nb, 32 * bits // 8) and p.scales.shape == (40 * nb,)
    assert p.zero_points.shape == (40 * ((nb * bits + 7) // 8),)
    np.testing.assert_array_equal(unpack_reference(p, nb), qw.dequantize())


@pytest.mark.parametrize("bits", [4, 8])
def test_matmulnbits_is_exact(bits):
    rng = np.random.default_rng(bits)
    qw = quantize_rtn(rng.standard_normal((48, 96)).astype(np.float32), bits=bits)  # 3 blocks
    x = rng.standard_normal((5, 96)).astype(np.float32)  # [m, K]
    y = run_matmulnbits(qw, x)  # [m, N]
    np.testing.assert_allclose(y, x @ qw.dequantize().T, atol=1e-4, rtol=1e-5)


def q4_1_weight(rng, n: int, k: int) -> QuantizedWeight:
    """A GGUF Q4_1-like weight: W = d*q + m, i.e. zero_point = -m/d (non-integer)."""
    q = rng.integers(0, 16, (n, k)).astype(np.uint8)
    d = rng.uniform(0.01, 0.1, (n, k // 32)).astype(np.float32)
    m = rng.uniform(-1.0, 0.2, (n, k // 32)).astype(np.float32)
    return QuantizedWeight(
        q=q,
        scale=d,
        zero_point=(-m / d).astype(np.float32),
        block_size=32,
        bits=4,
        source="gguf:Q4_1",
    )


@pytest.mark.parametrize("bits", [4, 8])
def test_fractional_zero_points_exact_via_offset_term(bits):
    rng = np.random.default_rng(11)
    qw = q4_1_weight(rng, 24, 128)
    if bits == 8:  # same construction with 8-bit levels
        qw = QuantizedWeight(
            q=(qw.q * 16).astype(np.uint8),
            scale=qw.scale / 16,
            zero_point=qw.zero_point * 16,
            block_size=32,
            bits=8,
        )
    p = pack_matmulnbits(qw)
    assert p.offset is not None and p.offset.shape == (4, 24)
    assert not p.zero_points.any()
    x = rng.standard_normal((3, 128)).astype(np.float32)
    y = run_matmulnbits(qw, x)
    ref = x.astype(np.float64) @ qw.dequantize().astype(np.float64).T
    assert np.abs(y - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_integer_zero_points_need_no_offset_and_concat():
    rng = np.random.default_rng(5)
    a = quantize_rtn(rng.standard_normal((8, 64)).astype(np.float32))
    b = quantize_rtn(rng.standard_normal((4, 64)).astype(np.float32))
    assert pack_matmulnbits(a).offset is None
    ab = concat_quantized([a, b])
    np.testing.assert_array_equal(ab.dequantize(), np.concatenate([a.dequantize(), b.dequantize()]))
    with pytest.raises(ValueError, match="cannot fuse"):
        concat_quantized([a, quantize_rtn(rng.standard_normal((4, 64)).astype(np.float32), 8)])


def test_bad_quantization_arguments():
    w = np.zeros((4, 64), np.float32)
    with pytest.raises(ValueError, match="bits"):
        quantize_rtn(w, bits=3)
    with pytest.raises(ValueError, match="multiple of block_size"):
        quantize_rtn(np.zeros((4, 40), np.float32))
    bad = QuantizedWeight(
        q=np.zeros((4, 48), np.uint8),
        scale=np.ones((4, 2), np.float32),
        zero_point=np.zeros((4, 2), np.float32),
        block_size=24,
        bits=4,
    )
    with pytest.raises(ValueError, match="block_size"):
        pack_matmulnbits(bad)
