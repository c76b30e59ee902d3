"""Greedy losslessness on the real SmolLM2-135M-Instruct bundle, on Spec-Bench dev prompts.

A sample of 3 prompts per category (13 categories, 39 prompts; the full 240-prompt run is the
benchmark's job), 64 new tokens: each drafter's tokens must equal plain decoding's. The draft-
model drafter runs on the self-draft bundle (the same fp32 target with an int4 copy of itself as
the draft, `make selfdraft-bundle`); it is skipped with the reason when that bundle is absent.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

NEW_TOKENS = 64
PER_CATEGORY = 3


def sample_prompts(rows: list[dict]) -> list[dict]:
    """PER_CATEGORY prompts per category, spread over it (not the first ones, which
    test_smollm2_session.py already uses)."""
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    out = []
    for rows_c in by_category.values():
        n = len(rows_c)
        picks = sorted({n // 3, (2 * n) // 3, n - 1})
        out += [rows_c[i] for i in picks]
    return out


@pytest.fixture(scope="module")
def prompts(spec_bench_prompts) -> list[dict]:
    chosen = sample_prompts(spec_bench_prompts)
    assert len(chosen) >= PER_CATEGORY * 10, len(chosen)
    return chosen


@pytest.fixture(scope="module")
def plain(smollm2_session, prompts) -> dict[int, list[int]]:
    """Greedy plain-decoding tokens per question_id."""
    s = smollm2_session
    return {
        p["question_id"]: s.generate(
            [{"role": "user", "content": p["turns"][0]}], max_new_tokens=NEW_TOKENS, drafter="none"
        ).tokens
        for p in prompts
    }


@pytest.mark.parametrize("drafter", ["ngram", "model"])
def test_greedy_drafter_identical_on_spec_bench_sample(request, prompts, plain, drafter):
    """The model drafter runs on the self-draft bundle: same fp32 target, so the same plain
    tokens are the reference."""
    fixture = "smollm2_selfdraft_session" if drafter == "model" else "smollm2_session"
    s = request.getfixturevalue(fixture)
    accepted = drafted = 0
    mismatched = []
    for p in prompts:
        messages = [{"role": "user", "content": p["turns"][0]}]
        r = s.generate(messages, max_new_tokens=NEW_TOKENS, drafter=drafter)
        accepted += r.stats.accepted
        drafted += r.stats.drafted
        if r.tokens != plain[p["question_id"]]:
            mismatched.append((p["question_id"], p["category"]))
    print(f"{drafter}: {len(prompts)} prompts, accepted {accepted}/{drafted}")
    assert not mismatched, f"{len(mismatched)}/{len(prompts)} differ from plain: {mismatched}"
    assert accepted > 0


def test_ngram_long_fixed_drafts_identical(smollm2_session, prompts, plain):
    """num_draft_tokens 16 without adaptation: long proposals, many partial rejections."""
    s = smollm2_session
    for p in prompts[::PER_CATEGORY]:
        messages = [{"role": "user", "content": p["turns"][0]}]
        r = s.generate(
            messages,
            max_new_tokens=NEW_TOKENS,
            drafter="ngram",
            num_draft_tokens=16,
            adaptive=False,
        )
        assert r.tokens == plain[p["question_id"]], p["question_id"]
