"""Prompt lookup (native/src/lookup.h) and the cost-aware draft-length policy per draft class
(native/src/draft_policy.h), through edgespec._native.spec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgespec  # noqa: F401  (loads ORT into the native module)
from edgespec._native import spec


def ref_lookup(seq: list[int], n_min: int, n_max: int, k: int) -> tuple[int, list[int]]:
    """The earlier occurrence of seq's suffix with the longest match (counted up to n_max), the
    most recent on ties; what followed it, copied with overlap; (0, []) below n_min."""
    best_len, best_end = 0, -1
    for e in range(len(seq) - 2, -1, -1):
        n = 0
        while n < min(n_max, e + 1) and seq[e - n] == seq[-1 - n]:
            n += 1
        if n > best_len:
            best_len, best_end = n, e
    if best_len < n_min:
        return 0, []
    s = list(seq)
    for i in range(k):
        s.append(s[best_end + 1 + i])
    return best_len, s[len(seq) :]


@given(
    st.lists(st.integers(0, 3), min_size=0, max_size=60),
    st.integers(1, 4),
    st.integers(0, 6),
    st.integers(0, 10),
)
@settings(max_examples=400, deadline=None)
def test_lookup_matches_reference(seq, n_min, extra, k):
    n_max = n_min + extra
    got_len, got = spec.lookup(np.array(seq, np.int32), n_min, n_max, k)
    assert (got_len, list(got)) == ref_lookup(seq, n_min, n_max, k)


def test_lookup_prefers_the_longest_match_over_the_most_recent():
    #           a  b  c  X  ...  b  c  Y  ...  a  b  c  -> "abc" matched 3 long at X, "bc" at Y
    seq = [1, 2, 3, 7, 8, 2, 3, 9, 8, 1, 2, 3]
    assert spec.lookup(np.array(seq, np.int32), 1, 8, 2) == (3, [7, 8])
    assert spec.lookup(np.array(seq, np.int32), 1, 2, 2) == (2, [9, 8])  # capped: most recent
    assert spec.lookup(np.array(seq, np.int32), 4, 8, 2) == (0, [])  # nothing 4 long


def test_lookup_overlapping_copy_extends_a_repetition():
    assert spec.lookup(np.array([5, 6, 5, 6, 5], np.int32), 1, 8, 5) == (3, [6, 5, 6, 5, 6])


def test_lookup_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_min"):
        spec.lookup(np.array([1, 2], np.int32), 0, 3, 2)


def _policy(k_max: int = 8, prior: float = 0.5) -> spec.DraftPolicy:
    p = spec.DraftPolicy(k_max)
    p.reset_acceptance(k_max, prior, True)
    return p


def _observe(p, cls: int, k: int, accept_rate: float, steps: int, slope: float = 0.05) -> None:
    """`steps` steps of class cls drafting k, each accepting round(k * rate) drafts, with a
    verify of width w taking (1 + slope (w - 1)) ms."""
    for _ in range(steps):
        p.observe(cls, k, round(k * accept_rate), 1e-3 * (1 + slope * k), 0.0)


def test_classes_earn_their_own_draft_length():
    """A class whose drafts are always right drafts long; one whose drafts are always wrong
    stops drafting; a class never seen borrows the pooled estimate of the others."""
    p = _policy()
    _observe(p, 6, 8, 1.0, 30)
    _observe(p, 1, 8, 0.0, 30)
    assert p.choose(6) == 8
    assert p.choose(1) == 0
    bad_only = _policy()
    _observe(bad_only, 1, 8, 0.0, 30)
    assert p.choose(3) > bad_only.choose(3)


def test_one_class_matches_the_pooled_policy():
    """With everything observed in one class, that class's choice tracks its acceptance:
    high acceptance -> long drafts, low -> short or none, for the same measured costs."""
    hi, lo = _policy(), _policy()
    _observe(hi, 0, 4, 1.0, 20)
    _observe(lo, 0, 4, 0.25, 20)
    assert hi.choose(0) > lo.choose(0)


def test_no_proposal_steps_teach_costs_not_acceptance():
    """cls -1 (nothing proposed) records a width-1 time only: acceptance stays at the prior."""
    a, b = _policy(prior=0.9), _policy(prior=0.9)
    for _ in range(50):
        a.observe(-1, 0, 0, 1e-3, 0.0)
    b.observe(-1, 0, 0, 1e-3, 0.0)
    assert a.choose(2) == b.choose(2) > 0


def test_policy_rejects_bad_class():
    p = _policy()
    with pytest.raises(ValueError, match="cls"):
        p.choose(spec.DRAFT_CLASSES)
    with pytest.raises(ValueError, match="n_accept"):
        p.observe(0, 2, 3, 1e-3, 0.0)


def test_a_new_widths_first_forward_is_a_warm_up():
    """The first forward of each width (ORT sets a new shape up) is not timed: 50x slow first
    verifies of every width must not stop a class whose drafts are always right from drafting
    once plain steps show the steady cost."""
    p = _policy()
    for k in range(9):  # each width's first forward, all drafts right, 50 ms instead of 1 ms
        p.observe(0 if k else -1, k, k, 50e-3, 0.0)
    for _ in range(20):
        p.observe(-1, 0, 0, 1e-3, 0.0)
    assert p.choose(0) == 8


def test_one_slow_forward_does_not_price_a_width_out():
    """A sample counts for at most kMaxJump times the width's estimate: after one 50x slow
    forward the class still drafts its full length (a width not chosen is never re-measured)."""
    p = _policy(k_max=4)
    p.observe(-1, 0, 0, 1e-3, 0.0)  # the warm-ups of widths 1 and 5
    p.observe(0, 4, 4, 1e-3, 0.0)
    for _ in range(5):
        p.observe(-1, 0, 0, 1e-3, 0.0)
    _observe(p, 0, 4, 1.0, 5, slope=0.0)
    assert p.choose(0) == 4
    p.observe(0, 4, 4, 50e-3, 0.0)
    assert p.choose(0) == 4


def test_greedy_generations_carry_acceptance_sampled_ones_start_afresh():
    """A greedy generation (use_times) after a greedy one with the same k_max and prior keeps the
    classes' acceptance; a sampled one starts from the prior (its tokens must not depend on
    earlier generations), and so does the greedy one after it, or one with another k_max."""
    p = _policy()
    _observe(p, 6, 8, 1.0, 30)
    _observe(p, 1, 8, 0.0, 30)
    assert p.choose(6) == 8 and p.choose(1) == 0
    p.reset_acceptance(8, 0.5, True)  # the next greedy generation
    assert p.choose(6) == 8 and p.choose(1) == 0
    for reset in ((8, 0.5, False), (8, 0.5, True)):  # sampled, then greedy again
        p.reset_acceptance(*reset)
        assert p.choose(1) > 0
    assert p.choose(6) < 8  # back at the prior
    q = _policy()
    _observe(q, 1, 8, 0.0, 30)
    q.reset_acceptance(7, 0.5, True)  # another draft bound: a fresh start
    assert q.choose(1) > 0
    q = _policy()
    _observe(q, 1, 8, 0.0, 30)
    q.reset_acceptance(8, 0.6, True)  # another prior (another drafter's): a fresh start
    assert q.choose(1) > 0
