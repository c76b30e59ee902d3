"""The ai.edgespec QMatMul node on its own, through the onnxruntime Python package
(libedgespec_ops.so): what the kernel computes (tests/unit/test_qmatmul.py) on ORT's threads,
leading dims kept, the same bits for a row in any call, and a clear error for every bad input."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402
from op_session import one_node_session  # noqa: E402

from edgespec import _native  # noqa: E402
from edgespec.export.quantize import pack_qtiles, quantize_rtn  # noqa: E402

pytestmark = pytest.mark.export


def _session(**attrs) -> ort.InferenceSession:
    inputs = [
        ("x", TensorProto.FLOAT),  # [..., K]
        ("q", TensorProto.UINT8),  # [tiles, K / 32, 256]
        ("s", TensorProto.FLOAT),  # [tiles, K / 32, 16]
        ("m", TensorProto.FLOAT16),  # [tiles, K / 32, 16]
    ]
    return one_node_session("QMatMul", inputs, "y", threads=2, **attrs)


def _packed(rng, n: int, k: int, bits: int = 4, z: int = 0):
    qw = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32), bits=bits, block_size=32)
    m16 = (rng.standard_normal(qw.scale.shape) * 0.05).astype(np.float16)  # [N, nb]
    return pack_qtiles(qw, m16, z)


def _feeds(p, x) -> dict:
    return {"x": x, "q": p.q, "s": p.scale, "m": p.m}


@pytest.mark.parametrize(
    ("rows", "n", "k", "bits"),
    [(1, 960, 576, 4), (5, 576, 1536, 4), (37, 70, 64, 4), (1, 3000, 576, 8), (9, 70, 64, 8)],
)
def test_equals_the_kernel_on_ort_threads(rows, n, k, bits):
    """Several ParallelFor units (64 columns each) give what one call of the kernel gives."""
    rng = np.random.default_rng(rows + n)
    z = 0 if bits == 4 else 128
    p = _packed(rng, n, k, bits, z)
    x = rng.standard_normal((1, rows, k)).astype(np.float32)  # [1, rows, K]
    attrs = {"N": n} if bits == 4 else {"N": n, "bits": 8, "zero_point": z}  # defaults: 4, 0
    (y,) = _session(**attrs).run(None, _feeds(p, x))
    assert y.shape == (1, rows, n) and y.dtype == np.float32
    args = (x[0], p.q, p.scale, p.m.view(np.uint16), n)
    assert np.array_equal(y[0], _native.ops.qmatmul(*args, bits=bits, zero_point=z))


def test_a_row_gives_the_same_bits_in_any_call():
    rng = np.random.default_rng(4)
    p = _packed(rng, 300, 576)
    s = _session(N=300)
    x = rng.standard_normal((1, 17, 576)).astype(np.float32)
    (together,) = s.run(None, _feeds(p, x))
    for r in (0, 8, 16):
        (alone,) = s.run(None, _feeds(p, x[:, r : r + 1]))
        assert np.array_equal(alone[0, 0], together[0, r])
    (wide,) = s.run(None, _feeds(p, x.reshape(17, 1, 576)))  # leading dims kept
    assert wide.shape == (17, 1, 300) and np.array_equal(wide[:, 0], together[0])


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ("k", r"K = 40 is not a multiple of 32"),
        ("q", r"q \[2, 2, 255\], scale \[2, 2, 16\], m \[2, 2, 16\] must be \[2, 2, 256\]"),
        (
            "n",
            r"q \[2, 2, 256\].* must be \[3, 2, 256\], \[3, 2, 16\], \[3, 2, 16\] for K 64, N 40",
        ),
    ],
)
def test_bad_inputs_are_clear_errors(change, pattern):
    rng = np.random.default_rng(1)
    p = _packed(rng, 20, 64)
    x = rng.standard_normal((1, 3, 64)).astype(np.float32)
    s = _session(N=40 if change == "n" else 20)
    feeds = _feeds(p, x)
    if change == "k":
        feeds["x"] = x[:, :, :40].copy()
    elif change == "q":
        feeds["q"] = p.q[:, :, :255].copy()
    with pytest.raises(Exception, match=r"ai\.edgespec\.QMatMul: " + pattern) as info:
        s.run(None, feeds)
    assert "\n" not in str(info.value).strip()
    if change != "n":
        (y,) = s.run(None, _feeds(p, x))  # the session still works
        assert y.shape == (1, 3, 20)


@pytest.mark.parametrize(
    ("attrs", "pattern"),
    [
        ({"N": 0}, "N must be"),
        ({}, "N is missing"),
        ({"N": 16, "bits": 2}, "bits must be 4 or 8"),
        ({"N": 16, "zero_point": 16}, r"zero_point must be in \[0, 15\], got 16"),
    ],
)
def test_bad_attributes_fail_at_load(attrs, pattern):
    with pytest.raises(Exception, match=pattern):
        _session(**attrs)
