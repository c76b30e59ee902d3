"""The ai.edgespec attention kernel (native/src/ops/row_attention.h, edgespec._native.ops).

Both kernels (AVX2 where the CPU has it, and the portable one) are checked against a float64
reference, and for what the op exists for: a query row's result does not depend on how many rows
share the call, bit for bit (a verify call must equal one-token decode steps).
"""

from __future__ import annotations

import numpy as np
import pytest

import edgespec  # noqa: F401  (loads ORT into the native module)
from edgespec._native import ops

KERNELS = pytest.mark.parametrize("generic", [False, True], ids=["dispatch", "generic"])
# 16/32/64/128 have an AVX2 kernel; 24 takes the portable one either way.
DIMS = pytest.mark.parametrize("dim", [16, 24, 64, 128])
# key counts around the 8-key score blocks, the 4-row v blocks and the 32-row v passes
N0S = pytest.mark.parametrize("n0", [1, 3, 7, 8, 9, 31, 32, 33, 250, 700])


def _inputs(n0: int, dim: int, rows: int = 8, seed: int = 0, spread: float = 1.0):
    rng = np.random.default_rng(seed + 1000 * dim + n0)
    n = n0 + rows - 1
    q = (rng.standard_normal((rows, dim)) * spread).astype(np.float32)  # [rows, D]
    k = rng.standard_normal((n, dim)).astype(np.float32)  # [n, D]
    v = rng.standard_normal((n, dim)).astype(np.float32)  # [n, D]
    return q, k, v


def _reference(q, k, v, n0: int, scale: float) -> np.ndarray:
    """float64 softmax attention; row r sees keys j < n0 + r."""
    out = []
    for r, qr in enumerate(q.astype(np.float64)):
        n = n0 + r
        s = scale * (k[:n].astype(np.float64) @ qr)  # [n]
        e = np.exp(s - s.max())
        out.append(e @ v[:n].astype(np.float64) / e.sum())
    return np.array(out)  # [rows, D]


@KERNELS
@DIMS
@N0S
def test_matches_a_float64_reference(generic, dim, n0):
    q, k, v = _inputs(n0, dim, rows=5)
    scale = 1.0 / np.sqrt(dim)
    got = ops.attend_rows(q, k, v, n0, scale, generic=generic)  # [5, D]
    np.testing.assert_allclose(got, _reference(q, k, v, n0, scale), rtol=1e-5, atol=2e-6)


@KERNELS
@pytest.mark.parametrize("dim", [16, 64])
def test_peaked_scores_stay_accurate(generic, dim):
    """Scores spread over ~100 nats: most terms underflow to 0 and the max term dominates."""
    q, k, v = _inputs(300, dim, rows=3, spread=40.0)
    got = ops.attend_rows(q, k, v, 300, 1.0, generic=generic)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _reference(q, k, v, 300, 1.0), rtol=1e-5, atol=2e-6)


@KERNELS
@DIMS
@N0S
def test_rows_do_not_depend_on_the_call_width(generic, dim, n0):
    q, k, v = _inputs(n0, dim)
    scale = 1.0 / np.sqrt(dim)
    alone = np.concatenate(
        [ops.attend_rows(q[r : r + 1], k, v, n0 + r, scale, generic=generic) for r in range(8)]
    )  # [8, D]: one row per call
    for start, stop in [(0, 2), (0, 5), (0, 8), (3, 7), (7, 8)]:
        got = ops.attend_rows(q[start:stop], k, v, n0 + start, scale, generic=generic)
        assert np.array_equal(got, alone[start:stop]), (start, stop)


@KERNELS
@DIMS
@pytest.mark.parametrize("n0", [1, 7, 9, 33, 700])
@pytest.mark.parametrize("per_row", [1, 3])
def test_vectors_sharing_a_call_equal_their_own_calls(generic, dim, n0, per_row):
    """The op gives one call a key/value group's heads (vectors at one position, equal key
    counts), and several rows of them: each vector must equal its own one-vector call."""
    q, k, v = _inputs(n0, dim, rows=24)
    counts = np.repeat(n0 + np.arange(24 // per_row), per_row)[:24].astype(np.int32)
    scale = 1.0 / np.sqrt(dim)
    got = ops.attend_rows(q, k, v, n0, scale, generic=generic, counts=counts)  # [24, D]
    for r in range(24):
        alone = ops.attend_rows(q[r : r + 1], k, v, int(counts[r]), scale, generic=generic)
        assert np.array_equal(got[r : r + 1], alone), r


@pytest.mark.parametrize(
    "counts", [[5, 4], [4], [3, 3, 3], [5, 6, 0]], ids=["decreasing", "short", "not-n0", "zero"]
)
def test_bad_counts_raise_value_error(counts):
    q, kv = np.zeros((3 if len(counts) != 2 else 2, 16), np.float32), np.zeros((9, 16), np.float32)
    with pytest.raises(ValueError, match="counts"):
        ops.attend_rows(q, kv, kv, 5, 1.0, counts=np.array(counts, np.int32))


def test_exp_matches_numpy():
    xs = np.linspace(-87.0, 0.0, 20001).astype(np.float32).astype(np.float64)  # float32 inputs
    got = np.array([ops.exp_nonpositive(float(x)) for x in xs])
    rel = np.abs(got - np.exp(xs)) / np.exp(xs)
    assert rel.max() < 3e-7
    assert ops.exp_nonpositive(0.0) == 1.0
    assert ops.exp_nonpositive(-1000.0) == ops.exp_nonpositive(-87.0) > 0  # clamped, no inf/nan


@pytest.mark.parametrize(
    ("q_shape", "n", "n0"),
    [((0, 16), 4, 1), ((25, 16), 40, 1), ((2, 16), 4, 4), ((2, 16), 4, 0), ((16,), 4, 1)],
)
def test_bad_shapes_raise_value_error(q_shape, n, n0):
    q = np.zeros(q_shape, np.float32)
    kv = np.zeros((n, 16), np.float32)
    with pytest.raises(ValueError):
        ops.attend_rows(q, kv, kv, n0, 1.0)


@KERNELS
@DIMS
@N0S
@pytest.mark.parametrize("depth", [1, 4, 9])
def test_gathered_keys_equal_the_same_keys_in_a_row(generic, dim, n0, depth):
    """A tree row attends to the past, then to its ancestors wherever they lie in the cache: it
    must give the bits of the same keys laid out contiguously (a chain of the same tokens)."""
    q, k, v = _inputs(n0 + 20, dim, rows=1)
    rng = np.random.default_rng(dim + n0 + depth)
    tail = np.sort(rng.choice(np.arange(n0, n0 + 20), depth, replace=False)).astype(np.int32)
    k_chain = np.concatenate([k[:n0], k[tail]])  # [n0 + depth, D]
    v_chain = np.concatenate([v[:n0], v[tail]])
    scale = 1.0 / np.sqrt(dim)
    want = ops.attend_rows(q, k_chain, v_chain, n0 + depth, scale, generic=generic)
    got = ops.attend_rows(q, k, v, n0 + depth, scale, generic=generic, tail=tail, n_direct=n0)
    assert np.array_equal(got, want)
    # and not just any keys: a different ancestor changes the result
    other = tail.copy()
    other[-1] = n0 + 20 - 1 if tail[-1] != n0 + 20 - 1 else n0
    moved = ops.attend_rows(q, k, v, n0 + depth, scale, generic=generic, tail=other, n_direct=n0)
    assert not np.array_equal(moved, want)


@KERNELS
@pytest.mark.parametrize("n0", [1, 9, 250])
def test_gathered_keys_serve_every_head_of_a_tree_row(generic, n0):
    """A tree row's unit holds its key/value group's heads: same keys, one call."""
    q, k, v = _inputs(n0 + 20, 64, rows=3)
    tail = np.array([n0 + 2, n0 + 7, n0 + 19], np.int32)
    n = np.full(3, n0 + 3, np.int32)
    kw = dict(generic=generic, tail=tail, n_direct=n0)
    got = ops.attend_rows(q, k, v, n0 + 3, 0.125, counts=n, **kw)  # [3, 64]
    for r in range(3):
        assert np.array_equal(
            got[r : r + 1], ops.attend_rows(q[r : r + 1], k, v, n0 + 3, 0.125, **kw)
        )


@pytest.mark.parametrize(
    ("rows", "tail", "n_direct"),
    [(2, [5], 4), (1, [5, 6], 4), (1, [-1], 4), (1, [20], 4), (1, [5], 6)],
    ids=["two-rows", "tail-too-long", "negative-row", "row-past-k", "n_direct-past-n0"],
)
def test_bad_tails_raise_value_error(rows, tail, n_direct):
    q = np.zeros((rows, 16), np.float32)
    kv = np.zeros((10, 16), np.float32)
    with pytest.raises(ValueError):
        ops.attend_rows(q, kv, kv, 5, 1.0, tail=np.array(tail, np.int32), n_direct=n_direct)
