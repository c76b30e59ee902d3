"""The QMatMul kernel (native/src/ops/qmatmul.h) and its packing (export/quantize.py
pack_qtiles): y = x @ (scale * q + m)^T, 4- or 8-bit q, int8 activations per block of 32,
against a numpy reference of the same quantization; the same bits on every path (AVX-512 VNNI,
AVX2, portable) and for a row whatever the rows in the call."""

from __future__ import annotations

import numpy as np
import pytest

from edgespec import _native
from edgespec.export.quantize import pack_qtiles, quantize_rtn

ops = _native.ops


def _weights(rng, n: int, k: int, bits: int = 4, z: int = 0):
    """(packed tiles, dense W float64 [N, K]) of random 4- or 8-bit weights (levels 0..15 or
    0..255), zero point z and float16 offsets: W = scale (q - z) + m."""
    qw = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32), bits=bits, block_size=32)
    m16 = (rng.standard_normal(qw.scale.shape) * 0.05).astype(np.float16)  # [N, nb]
    dense = np.repeat(qw.scale.astype(np.float64), 32, axis=1) * (qw.q.astype(np.float64) - z)
    dense += np.repeat(m16.astype(np.float64), 32, axis=1)  # [N, K]
    return pack_qtiles(qw, m16, z), dense


def _run(p, x, kernel="auto") -> np.ndarray:
    args = (x, p.q, p.scale, p.m.view(np.uint16), p.n)
    return ops.qmatmul(*args, bits=p.bits, zero_point=p.zero_point, kernel=kernel)


def _kernels() -> list[str]:
    """The kernels this CPU runs (the portable one always)."""
    out = []
    for name in ("generic", "avx2", "avx512vnni"):
        try:
            ops.qmatmul(np.zeros((1, 32), np.float32), *_empty_tiles(), 16, kernel=name)
        except ValueError:
            continue
        out.append(name)
    return out


def _empty_tiles():
    z = np.zeros((1, 1, 16), np.float32)
    return np.zeros((1, 1, 256), np.uint8), z, z.astype(np.uint16)


def _quantized_reference(x: np.ndarray, dense: np.ndarray, p) -> np.ndarray:
    """The kernel's arithmetic in float64: x rounded to int8 levels per block (d = max|x| / 127),
    the offset term on the exact block sums."""
    rows, k = x.shape
    xb = x.reshape(rows, k // 32, 32)  # [rows, nb, 32]
    d = np.abs(xb).max(-1, keepdims=True).astype(np.float32) / np.float32(127)  # [rows, nb, 1]
    inv = np.where(d > 0, np.float32(127) / np.maximum(np.abs(xb).max(-1, keepdims=True), 1e-30), 0)
    levels = np.clip(np.rint(xb * inv.astype(np.float32)), -127, 127)  # [rows, nb, 32]
    xq = (levels * d.astype(np.float64)).reshape(rows, k)
    m = p.m.transpose(0, 2, 1).reshape(-1, k // 32)[: p.n].astype(np.float64)  # [N, nb]
    w_no_m = dense - np.repeat(m, 32, axis=1)  # [N, K]: scale (q - z), applied to int8 x
    return xq @ w_no_m.T + xb.astype(np.float64).sum(-1) @ m.T


@pytest.mark.parametrize(("bits", "z"), [(4, 0), (4, 8), (8, 0), (8, 128)])
@pytest.mark.parametrize(
    ("rows", "n", "k"), [(1, 16, 32), (1, 100, 96), (5, 33, 576), (19, 64, 64)]
)
def test_matches_a_reference_of_the_same_quantization(rows, n, k, bits, z):
    """Partial tiles (N not a multiple of 16), one block and many, more rows than a pass takes;
    the zero point of GGUF Q4_0 (8) and Q8_0 (128) subtracted exactly."""
    rng = np.random.default_rng(rows * n + k)
    p, dense = _weights(rng, n, k, bits, z)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block: scale 0, levels 0
    got = _run(p, x)  # [rows, N]
    ref = _quantized_reference(x, dense, p)
    assert got.shape == (rows, n)
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    exact = x.astype(np.float64) @ dense.T  # int8 activations: ~1% of the output's scale
    assert np.abs(got - exact).max() <= 0.03 * np.abs(exact).max()


@pytest.mark.parametrize(("bits", "z"), [(4, 0), (8, 128)])
def test_every_path_and_every_call_width_give_the_same_bits(bits, z):
    rng = np.random.default_rng(7)
    p, _ = _weights(rng, 70, 192, bits, z)
    assert p.q.shape == (5, 6, 64 * bits) and (bits == 4 or p.q.max() > 240)  # levels past 15
    x = (rng.standard_normal((17, 192)) * 3).astype(np.float32)
    together = _run(p, x)  # [17, N]
    kernels = _kernels()
    assert "generic" in kernels and ops.qmatmul_kernel() in kernels
    for kernel in kernels:  # every path this CPU has gives the same bits
        assert np.array_equal(together, _run(p, x, kernel)), kernel
    alone = np.concatenate([_run(p, x[i : i + 1]) for i in range(17)])
    assert np.array_equal(together, alone)
    assert ops.qmatmul_kernel() in ("avx512vnni", "avx2", "generic")


def test_packing_layout():
    """Byte 4j + t of group i in a tile's block: column j's input 4i + t (low nibble) and input
    4(i + 4) + t (high nibble); padded columns are zero."""
    q = np.random.default_rng(5).integers(0, 16, (20, 64))
    qw = quantize_rtn(np.zeros((20, 64), np.float32), bits=4, block_size=32)
    qw = type(qw)(**{**qw.__dict__, "q": q.astype(np.uint8)})
    p = pack_qtiles(qw, np.zeros((20, 2), np.float16))
    assert p.q.shape == (2, 2, 256) and p.scale.shape == p.m.shape == (2, 2, 16)
    for t, b, i, j, u in [(0, 0, 0, 0, 0), (0, 1, 3, 15, 3), (1, 0, 2, 3, 1)]:
        col, byte = 16 * t + j, int(p.q[t, b, 64 * i + 4 * j + u])
        assert byte & 15 == q[col, 32 * b + 4 * i + u]
        assert byte >> 4 == q[col, 32 * b + 4 * (i + 4) + u]
    assert not p.q[1].reshape(2, 4, 16, 4)[:, :, 4:].any()  # columns 20..31 are padding
    assert not p.scale[1, :, 4:].any()


def test_packing_of_8_bits_and_other_formats():
    """8 bits: byte 4j + t of group i holds column j's input 4i + t; blocks must be 32."""
    q = np.random.default_rng(6).integers(0, 256, (16, 64))
    qw = quantize_rtn(np.zeros((16, 64), np.float32), bits=8, block_size=32)
    p = pack_qtiles(type(qw)(**{**qw.__dict__, "q": q.astype(np.uint8)}), np.zeros((16, 2)))
    assert p.q.shape == (1, 2, 512)
    for b, i, j, u in [(0, 0, 0, 0), (1, 7, 15, 3), (0, 5, 2, 1)]:
        assert p.q[0, b, 64 * i + 4 * j + u] == q[j, 32 * b + 4 * i + u]
    qw = quantize_rtn(np.ones((16, 64), np.float32), bits=4, block_size=64)
    with pytest.raises(ValueError, match="4 or 8 bits in blocks of 32"):
        pack_qtiles(qw, np.zeros((16, 1), np.float16))


def test_bad_shapes_raise_value_error():
    rng = np.random.default_rng(0)
    p, _ = _weights(rng, 16, 64)
    with pytest.raises(ValueError, match="multiple of 32"):
        ops.qmatmul(np.zeros((1, 40), np.float32), p.q, p.scale, p.m.view(np.uint16), 16)
    with pytest.raises(ValueError, match="tiles"):
        ops.qmatmul(np.zeros((1, 64), np.float32), p.q, p.scale, p.m.view(np.uint16), 40)
    with pytest.raises(ValueError, match="tiles"):  # 4-bit tiles read as 8-bit ones
        ops.qmatmul(np.zeros((1, 64), np.float32), p.q, p.scale, p.m.view(np.uint16), 16, bits=8)
    with pytest.raises(ValueError, match="kernel must be auto, generic"):
        ops.qmatmul(
            np.zeros((1, 64), np.float32), p.q, p.scale, p.m.view(np.uint16), 16, kernel="x"
        )
    with pytest.raises(ValueError, match="zero_point must be in"):
        ops.qmatmul(np.zeros((1, 64), np.float32), p.q, p.scale, p.m.view(np.uint16), 16, 4, 16)
    with pytest.raises(ValueError, match="bits must be 4 or 8, got 6"):
        ops.qmatmul(np.zeros((1, 64), np.float32), p.q, p.scale, p.m.view(np.uint16), 16, bits=6)


def test_q4_1_rounding_of_float_weights():
    """quantize_q4_1 (float weights quantized at export): m = the block minimum as float16, so
    the offset QMatMul takes is exact, and every weight is within half a step (+ m's rounding)."""
    from edgespec.export.quantize import quantize_q4_1

    rng = np.random.default_rng(11)
    w = rng.standard_normal((24, 96)).astype(np.float32)  # [N, K]
    w[0, :32] = 0.25  # a constant block: step 1, every level 0
    qw = quantize_q4_1(w)
    assert qw.q.max() <= 15 and qw.bits == 4 and qw.block_size == 32
    m = -qw.scale * qw.zero_point  # [N, nb]: d * (m / d), m to within float32 rounding
    m16 = m.astype(np.float16).astype(np.float32)
    assert np.all(np.abs(m16 - m) <= 2.0**-20 * np.abs(m))  # what export's float16 check allows
    step = np.repeat(qw.scale, 32, axis=1)  # [N, K]
    err = np.abs(qw.dequantize() - w)
    assert np.all(err <= 0.5 * step + 1e-3 * np.abs(w).max())
    assert np.abs(qw.dequantize()[0, :32] - 0.25).max() == 0
