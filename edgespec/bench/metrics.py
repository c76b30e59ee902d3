"""Spec-Bench figures from the raw per-turn records: speedups, mean accepted tokens, tokens/s,
time to first token, peak memory, output identity; medians with their spread (IQR, min/max).

Definitions (one record = one method answering one turn of one question):
- speed of a method on a question = its new tokens over all turns / its wall time over all
  turns (prefill included), as Spec-Bench computes it;
- speedup on a question = that speed / the speed of the reference plain decoding on the same
  question in the same run; a category's speedup is the median over its questions;
  `speedup.specbench` is Spec-Bench's own aggregate (mean speed / mean reference speed);
- mean accepted tokens (tau) = tokens committed after the first / target forward steps after
  the prefill, pooled over the category's turns (1.0 for plain decoding);
- identity = the turn's tokens equal the reference plain decoding's tokens (greedy: lossless
  speculation must give 100%);
- loop share = answer tokens that end a 16-token sequence already seen earlier in the same
  answer, over all answer tokens (a small model's greedy answers often loop until the token
  limit, and prompt lookup drafts a loop for free); cut rate = turns that stopped at the token
  limit or the context capacity rather than at EOS.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

OVERALL = "overall"
LOOP_NGRAM = 16  # a repeat this long is a loop, not a shared phrase


def loop_tokens(tokens: list[int], n: int = LOOP_NGRAM) -> int:
    """Tokens that end an n-gram already seen earlier in `tokens`."""
    seen: set[tuple[int, ...]] = set()
    hits = 0
    for i in range(n, len(tokens) + 1):
        gram = tuple(tokens[i - n : i])
        hits += gram in seen
        seen.add(gram)
    return hits


def quantiles(values: Iterable[float]) -> dict[str, float] | None:
    """median, q1, q3, min, max (None for no values)."""
    v = sorted(values)
    if not v:
        return None
    if len(v) == 1:
        q1 = q3 = v[0]
    else:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return {
        "median": statistics.median(v),
        "q1": q1,
        "q3": q3,
        "min": v[0],
        "max": v[-1],
        "n": len(v),
    }


def method_key(runtime: str, method: str) -> str:
    return f"{runtime}/{method}"


def question_speeds(records: list[dict[str, Any]]) -> dict[str, dict[Any, float]]:
    """{method key: {question_id: tokens over all turns / seconds over all turns}}."""
    tok: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    sec: dict[str, dict[Any, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        k = method_key(r["runtime"], r["method"])
        tok[k][r["question_id"]] += r["new_tokens"]
        sec[k][r["question_id"]] += r["total_s"]
    return {k: {q: tok[k][q] / s for q, s in qs.items() if s > 0} for k, qs in sec.items()}


def _ratio_stats(
    speeds: dict[Any, float], ref: dict[Any, float], qids: set[Any]
) -> dict[str, Any] | None:
    common = [q for q in qids if q in speeds and q in ref and ref[q] > 0]
    if not common:
        return None
    out = quantiles(speeds[q] / ref[q] for q in common) or {}
    out["specbench"] = statistics.fmean(speeds[q] for q in common) / statistics.fmean(
        ref[q] for q in common
    )
    return out


def _turn_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    steps = sum(r["steps"] for r in rows)
    after_first = sum(max(r["new_tokens"] - 1, 0) for r in rows)
    drafted = sum(r.get("drafted") or 0 for r in rows)
    accepted = sum(r.get("accepted") or 0 for r in rows)
    peaks = [r["peak_rss_kb"] / 1024 for r in rows if r.get("peak_rss_kb")]
    same = [r["identical_to_plain"] for r in rows if r.get("identical_to_plain") is not None]
    same_es = [
        r["identical_to_edgespec_plain"]
        for r in rows
        if r.get("identical_to_edgespec_plain") is not None
    ]
    n_tokens = sum(len(r["tokens"]) for r in rows)
    finished = [r["finish_reason"] for r in rows if r.get("finish_reason")]
    eng = [r["engine"] for r in rows if r.get("engine")]  # edgespec's own timings
    draft_s = sum(e["draft_s"] for e in eng)
    verify_s, verify_steps = sum(e["verify_s"] for e in eng), sum(e["steps"] for e in eng)
    return {
        "turns": len(rows),
        "new_tokens": sum(r["new_tokens"] for r in rows),
        "draft_s_per_token": draft_s / drafted if eng and drafted else None,
        "verify_s_per_step": verify_s / verify_steps if verify_steps else None,
        "mean_accepted_tokens": after_first / steps if steps else None,
        "acceptance_rate": accepted / drafted if drafted else None,
        "ttft_s": quantiles(r["ttft_s"] for r in rows),
        "turn_tokens_per_s": quantiles(r["tokens_per_s"] for r in rows),
        "peak_rss_mb": max(peaks) if peaks else None,
        "peak_rss_mb_median": statistics.median(peaks) if peaks else None,
        "identical_rate": sum(same) / len(same) if same else None,
        "loop_share": sum(loop_tokens(r["tokens"]) for r in rows) / n_tokens if n_tokens else None,
        "cut_rate": sum(f == "length" for f in finished) / len(finished) if finished else None,
        "identical_to_edgespec_plain_rate": sum(same_es) / len(same_es) if same_es else None,
    }


def summarize(
    records: list[dict[str, Any]], methods: list[tuple[str, str]], reference: tuple[str, str]
) -> dict[str, Any]:
    """{method key: {group | "overall": figures}} (see the module doc)."""
    speeds = question_speeds(records)
    ref_key = method_key(*reference)
    groups: dict[str, set[Any]] = defaultdict(set)
    for r in records:
        groups[r["group"]].add(r["question_id"])
        groups[OVERALL].add(r["question_id"])
    out: dict[str, Any] = {}
    for runtime, method in methods:
        key = method_key(runtime, method)
        own_ref = speeds.get(method_key(runtime, "none"), {})
        rows_by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in records:
            if (r["runtime"], r["method"]) == (runtime, method):
                rows_by_group[r["group"]].append(r)
                rows_by_group[OVERALL].append(r)
        per: dict[str, Any] = {}
        for g, qids in groups.items():
            sp = speeds.get(key, {})
            per[g] = {
                "questions": len([q for q in qids if q in sp]),
                "tokens_per_s": quantiles(sp[q] for q in qids if q in sp),
                "speedup": _ratio_stats(sp, own_ref, qids),
                "speedup_vs_reference": _ratio_stats(sp, speeds.get(ref_key, {}), qids),
                **_turn_stats(rows_by_group.get(g, [])),
            }
        _add_draft_cost(per, out.get(method_key(runtime, "none"), per))
        out[key] = per
    return out


def _add_draft_cost(per: dict[str, Any], plain: dict[str, Any]) -> None:
    """draft_cost: seconds per drafted token (catch-up included) / seconds per plain decoding
    step, i.e. the drafter's cost as a fraction of one target step, measured in the same run."""
    for g, fig in per.items():
        step = plain.get(g, {}).get("verify_s_per_step")
        d = fig.get("draft_s_per_token")
        fig["draft_cost"] = d / step if d is not None and step else None


def mark_identity(records: list[dict[str, Any]], reference: tuple[str, str]) -> None:
    """Set identical_to_plain (vs the same runtime's plain decoding) and
    identical_to_edgespec_plain (vs the reference) on every record, in place."""
    index = {(r["runtime"], r["method"], r["question_id"], r["turn"]): r["tokens"] for r in records}
    for r in records:
        own = index.get((r["runtime"], "none", r["question_id"], r["turn"]))
        ref = index.get((*reference, r["question_id"], r["turn"]))
        r["identical_to_plain"] = None if own is None else r["tokens"] == own
        r["identical_to_edgespec_plain"] = None if ref is None else r["tokens"] == ref
