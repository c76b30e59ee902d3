"""The speculative-decoding math of the native core (edgespec._native.spec).

Reference implementations in numpy; a chi-square test that speculative sampling reproduces the
target distribution with good and bad drafters; hypothesis property tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgespec  # noqa: F401  (loads ORT into the native module)
from edgespec._native import spec

# ---------------------------------------------------------------- references


def ref_order(p: np.ndarray) -> np.ndarray:
    """Indices by descending probability, ties by ascending index."""
    return np.lexsort((np.arange(p.size), -p))


def ref_process(logits, temperature=1.0, top_k=0, top_p=1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    n = p.size
    if 0 < top_k < n:
        keep = ref_order(p)[:top_k]
        mask = np.zeros(n, bool)
        mask[keep] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    if top_p < 1.0:
        order = ref_order(p)
        before = np.cumsum(p[order]) - p[order]  # mass strictly before each sorted token
        keep = order[before < top_p]
        mask = np.zeros(n, bool)
        mask[keep] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return p


def ref_greedy(logits: np.ndarray, draft) -> tuple[int, int]:
    n = 0
    for i, d in enumerate(draft):
        if int(np.argmax(logits[i])) != d:
            return n, int(np.argmax(logits[i]))
        n += 1
    return n, int(np.argmax(logits[len(draft)]))


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def normalise(a) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return f32(a / a.sum(axis=-1, keepdims=True))


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    support = expected > 0
    assert counts[~support].sum() == 0, "a zero-probability token was produced"
    return float((((counts - expected) ** 2)[support] / expected[support]).sum())


# chi-square critical values at p = 0.0005 (df → value); tests use fixed seeds (deterministic).
CHI2_CRIT = {3: 17.73, 4: 20.00, 5: 22.11, 7: 26.02}


# ---------------------------------------------------------------- rng, argmax, sample


def test_rng_uniform_is_deterministic_and_in_range():
    a = spec.uniform(7, 20000)
    b = spec.uniform(7, 20000)
    c = spec.uniform(8, 20000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() < 1.0
    assert abs(a.mean() - 0.5) < 0.01
    hist = np.histogram(a, bins=10, range=(0, 1))[0]
    assert chi_square(hist, np.full(10, 0.1)) < 30.0


def test_argmax_ties_take_lowest_index():
    assert spec.argmax(f32([0, 3, 3, 1])) == 1
    assert spec.argmax(f32([5])) == 0
    assert spec.argmax(f32([-1, -2, -1])) == 0


def test_sample_matches_distribution():
    p = normalise([0.1, 0.0, 0.5, 0.4])
    counts = np.bincount([spec.sample(p, s) for s in range(20000)], minlength=4)
    assert counts[1] == 0
    assert chi_square(counts, p.astype(np.float64)) < CHI2_CRIT[3]


def test_sample_zero_mass_falls_back_to_argmax():
    assert spec.sample(f32([0, 0, 0]), 1) == 0


# ---------------------------------------------------------------- process_logits


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("top_k", [0, 1, 5, 40, 1000])
@pytest.mark.parametrize("top_p", [1.0, 0.95, 0.5, 0.05])
def test_process_logits_matches_numpy(temperature, top_k, top_p):
    rng = np.random.default_rng(hash((temperature, top_k, top_p)) % 2**32)
    for vocab in (7, 257, 3000):
        logits = f32(rng.normal(0, 3, size=vocab))
        got = spec.process_logits(logits, temperature, top_k, top_p)
        want = ref_process(logits, temperature, top_k, top_p)
        assert got.dtype == np.float32 and got.shape == logits.shape
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-4)
        assert np.array_equal(got > 0, want > 0)


def test_process_logits_rows_and_greedy():
    logits = f32(np.random.default_rng(1).normal(size=(3, 50)))
    rows = spec.process_logits(logits, 0.7, 10, 0.9)
    for r in range(3):
        np.testing.assert_allclose(rows[r], ref_process(logits[r], 0.7, 10, 0.9), atol=2e-6)
    onehot = spec.process_logits(logits, 0.0)
    assert np.array_equal(onehot.argmax(axis=1), logits.argmax(axis=1))
    assert np.array_equal(onehot.sum(axis=1), np.ones(3, np.float32))


def test_process_logits_top_p_wide_distribution_sorts_lazily_past_64():
    # A flat distribution needs far more than 64 sorted tokens to reach top_p.
    logits = f32(np.random.default_rng(2).normal(0, 0.01, size=5000))
    got = spec.process_logits(logits, 1.0, 0, 0.9)
    want = ref_process(logits, 1.0, 0, 0.9)
    assert 4000 < (got > 0).sum() < 5000
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_process_logits_extreme_logits_stay_finite():
    logits = f32([1e4, -1e4, 0, 3e4])
    got = spec.process_logits(logits, 0.5)
    assert np.isfinite(got).all() and got[3] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad", [dict(temperature=-1), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)]
)
def test_process_logits_rejects_bad_parameters(bad):
    args = dict(temperature=1.0, top_k=0, top_p=1.0) | bad
    with pytest.raises(ValueError):
        spec.process_logits(f32([1, 2, 3]), **args)


# ---------------------------------------------------------------- residual


def test_residual_sums_to_one_and_is_zero_where_q_ge_p():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = normalise(rng.random(20) ** 3)
        q = normalise(rng.random(20) ** 3)
        ok, r = spec.residual(p, q)
        assert ok
        assert r.sum() == pytest.approx(1.0, abs=1e-5)
        assert (r[q >= p] == 0).all()
        want = np.maximum(p.astype(np.float64) - q, 0)
        np.testing.assert_allclose(r, want / want.sum(), atol=1e-6)


def test_residual_of_equal_distributions_is_empty():
    p = normalise([1, 2, 3])
    ok, r = spec.residual(p, p.copy())
    assert not ok and (r == 0).all()


def test_residual_one_hot_q_removes_the_draft():
    p = normalise([0.2, 0.5, 0.3])
    ok, r = spec.residual(p, None, 1)
    assert ok
    np.testing.assert_allclose(r, [0.4, 0.0, 0.6], atol=1e-6)
    ok, r = spec.residual(f32([0, 1, 0]), None, 1)  # p is the draft's one-hot: nothing left
    assert not ok


# ---------------------------------------------------------------- greedy acceptance


def test_accept_greedy_cases():
    vocab = 6
    rows = f32(np.eye(vocab)[[2, 4, 1, 5]])  # argmax per row: 2, 4, 1, 5
    assert spec.accept_greedy(rows, np.array([2, 4, 1], np.int32)) == (3, 5)  # all + bonus
    assert spec.accept_greedy(rows, np.array([2, 4, 0], np.int32)) == (2, 1)
    assert spec.accept_greedy(rows, np.array([3, 4, 1], np.int32)) == (0, 2)
    assert spec.accept_greedy(rows[:1], np.array([], np.int32)) == (0, 2)  # k = 0: plain step
    tie = f32([[1, 3, 3, 0], [0, 0, 0, 0]])
    assert spec.accept_greedy(tie, np.array([1], np.int32)) == (1, 0)
    assert spec.accept_greedy(tie, np.array([2], np.int32)) == (0, 1)


def test_accept_greedy_checks_shapes():
    with pytest.raises(ValueError):
        spec.accept_greedy(f32(np.zeros((2, 4))), np.array([1, 2], np.int32))


# ---------------------------------------------------------------- sampling acceptance


def test_p_equal_q_always_accepts():
    rng = np.random.default_rng(4)
    p = normalise(rng.random((4, 10)))
    for seed in range(300):
        p64 = p.astype(np.float64) / p.astype(np.float64).sum(axis=1, keepdims=True)
        draft = np.array([rng.choice(10, p=p64[i]) for i in range(3)], np.int32)
        n, nxt = spec.accept_sampling(p, p[:3].copy(), draft, seed)
        assert n == 3 and 0 <= nxt < 10


def test_zero_draft_probability():
    p = normalise([[0.5, 0.5, 0.0], [1, 1, 1]])
    # q(d) = 0 < p(d): accepted whatever u is.
    q = f32([[0.0, 0.0, 1.0]])
    for seed in range(100):
        assert spec.accept_sampling(p, q, np.array([1], np.int32), seed)[0] == 1
    # p(d) = 0 < q(d): always rejected, and the correction never is d.
    for seed in range(100):
        n, nxt = spec.accept_sampling(p, q, np.array([2], np.int32), seed)
        assert n == 0 and nxt in (0, 1)
    # one-hot q on a token the target never produces.
    for seed in range(100):
        n, nxt = spec.accept_sampling(p, None, np.array([2], np.int32), seed)
        assert n == 0 and nxt in (0, 1)


def test_one_hot_on_certain_token_accepts():
    p = f32([[0, 1, 0], [0.2, 0.3, 0.5]])
    for seed in range(50):
        assert spec.accept_sampling(p, None, np.array([1], np.int32), seed)[0] == 1


def test_accept_sampling_checks_shapes():
    p = normalise(np.ones((2, 4)))
    with pytest.raises(ValueError):
        spec.accept_sampling(p, f32(np.ones((2, 4))), np.array([1], np.int32), 0)
    with pytest.raises(ValueError):
        spec.accept_sampling(p, None, np.array([7], np.int32), 0)


def _spec_outputs(p, q, k, trials, seed, one_hot_draft=None):
    """First and second committed tokens of `trials` speculative steps (second: -1 if absent)."""
    rng = np.random.default_rng(seed)
    q64 = (
        None
        if q is None
        else q.astype(np.float64) / q.astype(np.float64).sum(axis=1, keepdims=True)
    )
    first = np.empty(trials, int)
    second = np.full(trials, -1)
    for t in range(trials):
        if q is None:
            draft = np.asarray(one_hot_draft, np.int32)
        else:
            draft = np.array([rng.choice(q.shape[1], p=q64[i]) for i in range(k)], np.int32)
        n, nxt = spec.accept_sampling(p, q, draft, seed * 1_000_003 + t)
        out = list(draft[:n]) + [nxt]
        first[t] = out[0]
        if len(out) > 1:
            second[t] = out[1]
    return first, second


P_ROWS = normalise(
    [
        [0.05, 0.30, 0.10, 0.40, 0.10, 0.05],
        [0.25, 0.05, 0.05, 0.05, 0.35, 0.25],
        [0.10, 0.10, 0.20, 0.20, 0.20, 0.20],
    ]
)
Q_GOOD = normalise([[0.06, 0.28, 0.12, 0.38, 0.11, 0.05], [0.20, 0.10, 0.05, 0.05, 0.30, 0.30]])
Q_BAD = normalise(
    [
        [0.60, 0.01, 0.30, 0.01, 0.01, 0.07],  # mass where p is small
        [0.01, 0.50, 0.40, 0.07, 0.01, 0.01],
    ]
)


@pytest.mark.parametrize("name,q", [("good", Q_GOOD), ("bad", Q_BAD)])
def test_spec_sampling_reproduces_target_distribution(name, q):
    first, second = _spec_outputs(P_ROWS, q, k=2, trials=20000, seed=11)
    p = P_ROWS.astype(np.float64)
    assert chi_square(np.bincount(first, minlength=6), p[0]) < CHI2_CRIT[5]
    has_second = second >= 0
    assert has_second.sum() > 1000
    assert chi_square(np.bincount(second[has_second], minlength=6), p[1]) < CHI2_CRIT[5]


@pytest.mark.parametrize("draft", [[3, 4], [5, 2]])  # a likely and an unlikely one-hot draft
def test_spec_sampling_one_hot_reproduces_target_distribution(draft):
    first, second = _spec_outputs(P_ROWS, None, k=2, trials=20000, seed=12, one_hot_draft=draft)
    p = P_ROWS.astype(np.float64)
    assert chi_square(np.bincount(first, minlength=6), p[0]) < CHI2_CRIT[5]
    has_second = second >= 0
    assert chi_square(np.bincount(second[has_second], minlength=6), p[1]) < CHI2_CRIT[5]


def test_bad_draft_is_accepted_less_often_than_good():
    def acceptance(q):
        rng = np.random.default_rng(5)
        q64 = q.astype(np.float64) / q.astype(np.float64).sum(axis=1, keepdims=True)
        total = 0
        for t in range(3000):
            draft = np.array([rng.choice(6, p=q64[i]) for i in range(2)], np.int32)
            total += spec.accept_sampling(P_ROWS, q, draft, t)[0]
        return total / 3000

    assert acceptance(Q_GOOD) > 1.5 > 0.5 > acceptance(Q_BAD)


# ---------------------------------------------------------------- properties


logit_rows = hnp.arrays(
    np.float32, st.integers(2, 64), elements=st.floats(-30, 30, width=32, allow_nan=False)
)


@settings(max_examples=200, deadline=None)
@given(
    logits=logit_rows,
    temperature=st.floats(0.05, 5.0),
    top_k=st.integers(0, 70),
    top_p=st.floats(0.01, 1.0),
)
def test_process_logits_properties(logits, temperature, top_k, top_p):
    p = spec.process_logits(logits, temperature, top_k, top_p)
    assert np.isfinite(p).all() and (p >= 0).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    kept = p > 0
    if 0 < top_k:
        assert kept.sum() <= top_k
    full = spec.process_logits(logits, temperature)  # unfiltered softmax(logits / T)
    assert full[kept].max() == full.max()  # a mode always survives
    if (~kept).any():  # every kept token is at least as likely as every dropped one
        assert full[kept].min() >= full[~kept].max()


@settings(max_examples=200, deadline=None)
@given(data=st.data(), vocab=st.integers(2, 12), k=st.integers(0, 5), seed=st.integers(0, 2**63))
def test_accept_sampling_properties(data, vocab, k, seed):
    weights = st.floats(0.0, 1.0, width=32)
    p = data.draw(hnp.arrays(np.float32, (k + 1, vocab), elements=weights))
    p[:, 0] += 1e-3
    p = normalise(p)
    use_q = data.draw(st.booleans())
    q = (
        normalise(data.draw(hnp.arrays(np.float32, (k, vocab), elements=weights)) + 1e-3)
        if use_q
        else None
    )
    draft = np.array(
        data.draw(st.lists(st.integers(0, vocab - 1), min_size=k, max_size=k)), np.int32
    )
    n, nxt = spec.accept_sampling(p, q, draft, seed)
    assert 0 <= n <= k and 0 <= nxt < vocab
    assert p[n, nxt] > 0  # never a token the target rules out
    for i in range(n):  # accepted drafts had target support
        assert p[i, draft[i]] > 0
    if n < k:  # the correction has positive residual mass (or the residual was empty)
        qn = q[n] if use_q else np.eye(vocab, dtype=np.float32)[draft[n]]
        ok, r = spec.residual(p[n], qn if use_q else None, int(draft[n]))
        assert r[nxt] > 0 or not ok


@settings(max_examples=200, deadline=None)
@given(data=st.data(), vocab=st.integers(1, 10), k=st.integers(0, 6))
def test_accept_greedy_matches_reference(data, vocab, k):
    logits = data.draw(
        hnp.arrays(np.float32, (k + 1, vocab), elements=st.integers(-3, 3).map(float))
    )
    draft = data.draw(st.lists(st.integers(0, vocab - 1), min_size=k, max_size=k))
    # Bias the drafts towards the argmax so long accepted prefixes occur.
    if data.draw(st.booleans()):
        prefix = data.draw(st.integers(0, k))
        for i in range(prefix):
            draft[i] = int(np.argmax(logits[i]))
    got = spec.accept_greedy(logits, np.array(draft, np.int32))
    assert got == ref_greedy(logits, draft)


def ref_greedy_tree(logits, draft, parent):
    """Walk the tree from row 0: the child of the current row holding its argmax, if any."""
    children = {}
    for i, p in enumerate(parent):
        children.setdefault(p, []).append(i)
    path, row = [], 0
    while True:
        best = int(np.argmax(logits[row]))
        match = [i for i in children.get(row, []) if draft[i] == best]
        if not match:
            return len(path), best, path
        path.append(match[0])
        row = match[0] + 1


@settings(max_examples=300, deadline=None)
@given(data=st.data(), vocab=st.integers(1, 6), k=st.integers(0, 10))
def test_accept_greedy_tree_matches_reference(data, vocab, k):
    logits = data.draw(
        hnp.arrays(np.float32, (k + 1, vocab), elements=st.integers(-3, 3).map(float))
    )
    parent = [data.draw(st.integers(0, i)) for i in range(k)]
    draft = data.draw(st.lists(st.integers(0, vocab - 1), min_size=k, max_size=k))
    for i in range(k):  # bias towards the argmax of the parent row: deep paths occur
        if data.draw(st.booleans()):
            draft[i] = int(np.argmax(logits[parent[i]]))
    got = spec.accept_greedy_tree(logits, np.array(draft, np.int32), np.array(parent, np.int32))
    assert got == ref_greedy_tree(logits, draft, parent)
    # the accepted path is a chain of the tree whose tokens the target itself would pick
    n, _, path = got
    assert [parent[i] for i in path] == ([0] + [i + 1 for i in path[:-1]] if n else [])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), vocab=st.integers(1, 10), k=st.integers(0, 6))
def test_a_chain_tree_is_accept_greedy(data, vocab, k):
    logits = data.draw(
        hnp.arrays(np.float32, (k + 1, vocab), elements=st.integers(-3, 3).map(float))
    )
    draft = [int(np.argmax(logits[i])) if data.draw(st.booleans()) else 0 for i in range(k)]
    n, nxt, path = spec.accept_greedy_tree(
        logits, np.array(draft, np.int32), np.arange(k, dtype=np.int32)
    )
    assert (n, nxt) == spec.accept_greedy(logits, np.array(draft, np.int32))
    assert path == list(range(n))


def test_accept_greedy_tree_cases():
    rows = f32(np.eye(6)[[2, 4, 1, 5, 3]])  # argmax per row: 2, 4, 1, 5, 3
    # root -> {3 (row 1), 2 (row 2)}; row 2 -> {1 (row 3)}; row 3 -> {0 (row 4)}
    draft, parent = np.array([3, 2, 1, 0], np.int32), np.array([0, 0, 2, 3], np.int32)
    assert spec.accept_greedy_tree(rows, draft, parent) == (2, 5, [1, 2])
    # the first matching sibling wins
    same = np.array([2, 2, 1, 0], np.int32)
    assert spec.accept_greedy_tree(rows, same, parent)[2] == [0]


@pytest.mark.parametrize("parent", [[1], [0, 2], [-1]])
def test_accept_greedy_tree_checks_parents(parent):
    k = len(parent)
    with pytest.raises(ValueError):
        spec.accept_greedy_tree(
            f32(np.zeros((k + 1, 4))), np.zeros(k, np.int32), np.array(parent, np.int32)
        )


# ---- cost-aware draft length (native/src/draft_policy.h) ----------------------------------------


def _rate_reference(accept, cost, draft_cost, k):
    """E(k) / C(k): E(k) = 1 + sum_j prod_{i<=j} a_i committed tokens, C(k) = c(k+1) + k d."""
    expected = 1 + sum(np.prod(accept[:j]) for j in range(1, k + 1))
    return expected / (cost[k] + k * draft_cost)


def _best_k_reference(accept, cost, draft_cost):
    rates = [_rate_reference(accept, cost, draft_cost, k) for k in range(len(accept) + 1)]
    return int(np.argmax(rates))


def test_draft_length_extremes():
    choose = spec.choose_draft_length
    cheap = [1 + 0.04 * w for w in range(9)]  # fp32-like verify widths 1..9
    dear = [1 + 0.15 * w for w in range(9)]  # int4-like
    assert choose([0.95] * 8, cheap) == 8  # near-certain drafts, cheap verify: draft all
    assert choose([0.3] * 8, dear) <= 1
    assert choose([0.05] * 8, dear, 0.5) == 0  # drafting cannot pay: plain decoding
    assert choose([0.9] * 8, [1.0] * 9, 2.0) == 0  # a draft token dearer than a target step


@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
    st.floats(0.0, 0.3),
    st.floats(0.0, 1.5),
)
@settings(max_examples=300, deadline=None)
def test_draft_length_matches_reference(accept, slope, draft_cost):
    cost = [1 + slope * w for w in range(len(accept) + 1)]
    got = spec.choose_draft_length(accept, cost, draft_cost)
    best = _best_k_reference(accept, cost, draft_cost)
    # Exact ties (e.g. every k giving E/C = 1) may go either way in floating point.
    rate = _rate_reference(accept, cost, draft_cost, got)
    assert rate >= _rate_reference(accept, cost, draft_cost, best) * (1 - 1e-12)


def test_draft_length_rejects_bad_cost_size():
    with pytest.raises(ValueError, match="cost must hold"):
        spec.choose_draft_length([0.5, 0.5], [1.0, 1.1])
