"""The FMatMul kernel (native/src/ops/fmatmul.h) and its packing (export/quantize.py
pack_ftiles): y = x @ W^T for float32 W [N, K] in tiles of 16 columns, each output one fma chain
in input order, so the same bits on every path (AVX-512, AVX2, portable) and for a row whatever
the rows in the call."""

from __future__ import annotations

import numpy as np
import pytest

from edgespec import _native
from edgespec.export.quantize import pack_ftiles, unpack_ftiles

ops = _native.ops


def _kernels() -> list[str]:
    """The kernels this CPU runs (the portable one always)."""
    out = []
    for name in ("generic", "avx2", "avx512"):
        try:
            ops.fmatmul(np.zeros((1, 1), np.float32), np.zeros((1, 1, 16), np.float32), 1, name)
        except ValueError:
            continue
        out.append(name)
    return out


KERNELS = _kernels()


def test_packing_puts_column_16t_plus_j_at_tile_t_lane_j():
    w = np.arange(35 * 3, dtype=np.float32).reshape(35, 3)  # [N, K]
    p = pack_ftiles(w)
    assert p.shape == (3, 3, 16) and p.dtype == np.float32 and p.flags.c_contiguous
    for n in range(35):
        assert np.array_equal(p[n // 16, :, n % 16], w[n])
    assert not p[2, :, 3:].any()  # columns 35..47 are zero padding
    assert np.array_equal(unpack_ftiles(p, 35), w)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("rows", "n", "k"), [(1, 1, 1), (3, 17, 5), (9, 48, 64), (20, 33, 130)])
def test_small_integers_give_the_exact_product(kernel, rows, n, k):
    """Integer inputs and weights keep every partial sum exact in float32: any mistake in the
    layout, the tails (N not a multiple of 16, an odd tile) or the row groups shows."""
    rng = np.random.default_rng(rows * n + k)
    w = rng.integers(-8, 9, (n, k)).astype(np.float32)  # [N, K]
    x = rng.integers(-8, 9, (rows, k)).astype(np.float32)  # [rows, K]
    y = ops.fmatmul(x, pack_ftiles(w), n, kernel)
    assert y.shape == (rows, n) and np.array_equal(y, x @ w.T)


@pytest.mark.parametrize(("n", "k"), [(960, 576), (576, 1536), (70, 7), (3000, 64)])
def test_every_path_gives_the_portable_bits_close_to_float64(n, k):
    rng = np.random.default_rng(n + k)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((11, k)).astype(np.float32)
    p = pack_ftiles(w)
    ref = ops.fmatmul(x, p, n, "generic")
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    # an fma chain over k terms: |error| <= k * 2^-24 * sum |x w| (loosely)
    bound = k * 2.0**-24 * (np.abs(x).astype(np.float64) @ np.abs(w.T).astype(np.float64))
    assert np.all(np.abs(ref - exact) <= bound)
    for kernel in KERNELS:
        assert np.array_equal(ops.fmatmul(x, p, n, kernel), ref), kernel


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_row_gives_the_same_bits_in_any_call(kernel):
    """1..24 rows in one call (row groups of 8 and 6, split evenly: 9 = 5 + 4) equal one-row
    calls: a verify call equals one-token steps."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((50, 96)).astype(np.float32)
    p = pack_ftiles(w)
    x = rng.standard_normal((24, 96)).astype(np.float32)
    alone = np.concatenate([ops.fmatmul(x[i : i + 1], p, 50, kernel) for i in range(24)])
    for rows in range(1, 25):
        assert np.array_equal(ops.fmatmul(x[:rows], p, 50, kernel), alone[:rows]), rows


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "n", "kernel", "pattern"),
    [
        ((2, 8, 1), (1, 8, 16), 4, "auto", r"need x \[rows, K\]"),
        ((2, 8), (1, 8, 16), 0, "auto", "n >= 1"),
        ((2, 8), (2, 8, 16), 4, "auto", r"need w \[ceil\(n / 16\), K, 16\] = \[1, 8, 16\]"),
        ((2, 8), (1, 7, 16), 4, "auto", r"= \[1, 8, 16\]"),
        ((2, 8), (1, 8, 16), 4, "sse", "kernel must be auto, generic, or one this CPU runs"),
    ],
)
def test_bad_arguments_raise_value_error(x_shape, w_shape, n, kernel, pattern):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    with pytest.raises(ValueError, match=pattern):
        ops.fmatmul(x, w, n, kernel)


def test_the_op_runs_a_fast_path_on_x86_with_avx2():
    name = ops.fmatmul_kernel()
    assert name in KERNELS
    if "avx512" in KERNELS:
        assert name == "avx512"
    elif "avx2" in KERNELS:
        assert name == "avx2"
