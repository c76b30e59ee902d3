"""The ai.edgespec FMatMul node on its own, through the onnxruntime Python package
(libedgespec_ops.so): what the kernel computes (tests/unit/test_fmatmul.py) on ORT's threads,
leading dims kept, the same bits for a row in any call, and a clear error for every bad input."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402
from op_session import one_node_session  # noqa: E402

from edgespec import _native  # noqa: E402
from edgespec.export.quantize import pack_ftiles  # noqa: E402

pytestmark = pytest.mark.export


def _session(**attrs) -> ort.InferenceSession:
    # x [..., K], w [tiles, K, 16]
    inputs = [("x", TensorProto.FLOAT), ("w", TensorProto.FLOAT)]
    return one_node_session("FMatMul", inputs, "y", threads=2, **attrs)


@pytest.mark.parametrize(
    ("rows", "n", "k"), [(1, 960, 576), (5, 576, 1536), (37, 70, 64), (256, 300, 40), (3, 5, 2)]
)
def test_equals_the_kernel_on_ort_threads(rows, n, k):
    """Several ParallelFor units (64 columns each) give what one call of the kernel gives."""
    rng = np.random.default_rng(rows + n)
    w = pack_ftiles(rng.standard_normal((n, k)).astype(np.float32))
    x = rng.standard_normal((1, rows, k)).astype(np.float32)  # [1, rows, K]
    (y,) = _session(N=n).run(None, {"x": x, "w": w})
    assert y.shape == (1, rows, n) and y.dtype == np.float32
    assert np.array_equal(y[0], _native.ops.fmatmul(x[0], w, n))


def test_a_row_gives_the_same_bits_in_any_call():
    rng = np.random.default_rng(4)
    w = pack_ftiles(rng.standard_normal((300, 576)).astype(np.float32))
    s = _session(N=300)
    x = rng.standard_normal((1, 17, 576)).astype(np.float32)
    (together,) = s.run(None, {"x": x, "w": w})
    for r in (0, 8, 16):
        (alone,) = s.run(None, {"x": x[:, r : r + 1], "w": w})
        assert np.array_equal(alone[0, 0], together[0, r])
    (wide,) = s.run(None, {"x": x.reshape(17, 1, 576), "w": w})  # leading dims kept
    assert wide.shape == (17, 1, 300) and np.array_equal(wide[:, 0], together[0])


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ("k", r"w \[2, 64, 16\] must be \[2, 40, 16\] for K 40, N 20"),
        ("n", r"w \[2, 64, 16\] must be \[3, 64, 16\] for K 64, N 40"),
        ("scalar", r"x must have at least one dimension"),
    ],
)
def test_bad_inputs_are_clear_errors(change, pattern):
    rng = np.random.default_rng(1)
    w = pack_ftiles(rng.standard_normal((20, 64)).astype(np.float32))
    x = rng.standard_normal((1, 3, 64)).astype(np.float32)
    s = _session(N=40 if change == "n" else 20)
    feeds = {"x": x, "w": w}
    if change == "k":
        feeds["x"] = x[:, :, :40].copy()
    elif change == "scalar":
        feeds["x"] = np.array(1.0, np.float32)  # 0-d
    with pytest.raises(Exception, match=r"ai\.edgespec\.FMatMul: " + pattern) as info:
        s.run(None, feeds)
    assert "\n" not in str(info.value).strip()
    if change != "n":
        (y,) = s.run(None, {"x": x, "w": w})  # the session still works
        assert y.shape == (1, 3, 20)


@pytest.mark.parametrize(("attrs", "pattern"), [({"N": 0}, "N must be in"), ({}, "N is missing")])
def test_bad_attributes_fail_at_load(attrs, pattern):
    with pytest.raises(Exception, match=pattern):
        _session(**attrs)
