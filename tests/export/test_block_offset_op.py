"""The ai.edgespec BlockOffset node on its own, through the onnxruntime Python package
(libedgespec_ops.so): z = y + blocksum(x) @ m with m float16, against a float64 reference, the
same bits for a row whatever the rows in the call, and a clear error for every bad input."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402
from op_session import one_node_session  # noqa: E402

pytestmark = pytest.mark.export


def _session(**attrs) -> ort.InferenceSession:
    inputs = [
        ("y", TensorProto.FLOAT),  # [..., N]
        ("x", TensorProto.FLOAT),  # [..., K]
        ("m", TensorProto.FLOAT16),  # [K / block_size, N]
    ]
    return one_node_session("BlockOffset", inputs, "z", **{"block_size": 32, **attrs})


@pytest.fixture(scope="module")
def s() -> ort.InferenceSession:
    return _session()


def _inputs(rng, rows: int, nb: int, n: int, bs: int = 32):
    y = rng.standard_normal((1, rows, n)).astype(np.float32)  # [1, rows, N]
    x = rng.standard_normal((1, rows, nb * bs)).astype(np.float32)  # [1, rows, K]
    m = (rng.standard_normal((nb, n)) * 0.05).astype(np.float16)  # [nb, N]
    m[0, :3] = [0.0, -0.0, 3e-7]  # zeros and a float16 subnormal
    return y, x, m


def _reference(y, x, m, bs: int = 32) -> np.ndarray:
    sums = x.astype(np.float64).reshape(*x.shape[:-1], -1, bs).sum(-1)  # [..., nb]
    return y.astype(np.float64) + sums @ m.astype(np.float64)


@pytest.mark.parametrize(
    ("rows", "nb", "n"),
    [(1, 18, 960), (1, 2, 40), (3, 48, 576), (37, 18, 300), (129, 5, 1030)],
)
def test_matches_a_float64_reference(s, rows, nb, n):
    """Full and partial 32-column chunks; large calls run on several threads."""
    y, x, m = _inputs(np.random.default_rng(rows * n), rows, nb, n)
    (z,) = s.run(None, {"y": y, "x": x, "m": m})
    ref = _reference(y, x, m)
    assert z.shape == y.shape and z.dtype == np.float32
    assert np.abs(z - ref).max() <= 1e-5 * (1 + np.abs(ref).max())


def test_a_row_gives_the_same_bits_in_any_call(s):
    """What a verify call of several rows gives for a row equals one-row calls, bit for bit."""
    y, x, m = _inputs(np.random.default_rng(7), 40, 18, 3072)
    (together,) = s.run(None, {"y": y, "x": x, "m": m})
    for r in (0, 1, 17, 39):
        (alone,) = s.run(None, {"y": y[:, r : r + 1], "x": x[:, r : r + 1], "m": m})
        assert np.array_equal(alone[0, 0], together[0, r])


def test_leading_dims_are_kept(s):
    y, x, m = _inputs(np.random.default_rng(3), 6, 4, 64)
    y2, x2 = y.reshape(2, 3, 64), x.reshape(2, 3, 128)
    (z,) = s.run(None, {"y": y2, "x": x2, "m": m})
    (flat,) = s.run(None, {"y": y, "x": x, "m": m})
    assert z.shape == (2, 3, 64) and np.array_equal(z.reshape(1, 6, 64), flat)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ("m_rows", r"m \[5, 64\] must be \[K / block_size, N\] = \[128 / 32, 64\]"),
        ("m_cols", r"m \[4, 63\] must be \[K / block_size, N\] = \[128 / 32, 64\]"),
        ("x_rows", r"y \[1, 3, 64\] and x \[1, 2, 128\] need the same leading dims"),
    ],
)
def test_bad_inputs_are_clear_errors(s, change, pattern):
    y, x, m = _inputs(np.random.default_rng(1), 3, 4, 64)
    if change == "m_rows":
        m = np.zeros((5, 64), np.float16)
    elif change == "m_cols":
        m = np.zeros((4, 63), np.float16)
    else:
        x = x[:, :2]
    with pytest.raises(Exception, match=r"ai\.edgespec\.BlockOffset: " + pattern) as info:
        s.run(None, {"y": y, "x": x, "m": m})
    assert "\n" not in str(info.value).strip()
    y, x, m = _inputs(np.random.default_rng(1), 3, 4, 64)
    (z,) = s.run(None, {"y": y, "x": x, "m": m})  # the session still works
    assert np.abs(z - _reference(y, x, m)).max() <= 1e-5 * (1 + np.abs(z).max())


@pytest.mark.parametrize(("attrs", "pattern"), [({"block_size": 0}, "block_size must be")])
def test_bad_attributes_fail_at_load(attrs, pattern):
    with pytest.raises(Exception, match=pattern):
        _session(**attrs)


def test_block_size_is_required():
    inputs = [("y", TensorProto.FLOAT), ("x", TensorProto.FLOAT), ("m", TensorProto.FLOAT16)]
    with pytest.raises(Exception, match="attribute block_size is missing"):
        one_node_session("BlockOffset", inputs, "z")


@pytest.mark.parametrize(("rows", "nb", "n"), [(1, 18, 3072), (5, 48, 576), (9, 3, 70)])
def test_portable_kernel_gives_the_avx2_bits(rows, nb, n):
    """Both kernels take one fma per block in the same order: the same bits on any CPU."""
    from edgespec._native import ops

    y, x, m = _inputs(np.random.default_rng(n), rows, nb, n)
    bits = m.view(np.uint16)
    fast = ops.block_offset(y[0], x[0], bits, 32)
    portable = ops.block_offset(y[0], x[0], bits, 32, generic=True)
    assert np.array_equal(fast, portable)
    assert np.abs(fast - _reference(y[0], x[0], m)).max() <= 1e-5 * (1 + np.abs(fast).max())
    with pytest.raises(ValueError, match="need y"):
        ops.block_offset(y[0], x[0, :, :-1], bits, 32)
