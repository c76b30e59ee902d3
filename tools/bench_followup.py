"""Chat follow-ups with and without prefix reuse, on the Spec-Bench MT-bench two-turn questions.

    python tools/bench_followup.py BUNDLE [--questions 40] [--drafters none,ngram]
                                          [--max-new-tokens 256] [--threads N]

A Session keeps the KV of the prefix a prompt shares with the conversation so far (README,
"Chat follow-ups"). Per question: turn 1 from a cold start (drafter "none"), then turn 2 (turn 1,
its answer, the second user message) twice per drafter, in an order that alternates per
question: once keeping what turn 1 left (Session.forget(keep) restores exactly that state, a
length change) and once from a cold start (Session.forget()). Prints per drafter the median
over questions of turn 2's time to first token and whole-turn time, reused / cold, the median
prompt tokens reused, and whether the two answers are token-identical (they must be).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import edgespec
from edgespec.bench.dataset import default_prompts_path, load_questions


def _turn(s: edgespec.Session, msgs: list[dict], drafter: str, n: int) -> edgespec.GenerationResult:
    return s.generate(msgs, max_new_tokens=n, temperature=0.0, drafter=drafter)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--questions", type=int, default=40, help="MT-bench questions (two turns)")
    ap.add_argument("--drafters", default="none,ngram")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    with edgespec.Session(a.bundle, threads=a.threads) as s:
        rows = _follow_ups(s, a)
    for d, r in rows.items():
        if not r:
            continue
        med = statistics.median
        print(
            f"{d}: {len(r)} follow-ups, reused/cold time to first token {med(x[0] for x in r):.3f}"
            f", whole turn {med(x[1] for x in r):.3f}; median prompt tokens reused "
            f"{med(x[2] for x in r):.0f}; identical {sum(x[3] for x in r)}/{len(r)}"
        )
    return 0


def _follow_ups(s: edgespec.Session, a: argparse.Namespace) -> dict[str, list[tuple]]:
    """Per drafter, per question: (TTFT kept / cold, turn time kept / cold, tokens kept,
    identical answers)."""
    drafters = a.drafters.split(",")
    qs = [q for q in load_questions(default_prompts_path()) if len(q.turns) >= 2][: a.questions]
    rows: dict[str, list[tuple[float, float, int, bool]]] = {d: [] for d in drafters}
    for i, q in enumerate(qs):
        s.forget()
        chat = [{"role": "user", "content": q.turns[0]}]
        r1 = _turn(s, chat, "none", a.max_new_tokens)
        kept = len(r1.prompt_tokens) + len(r1.tokens) - 1  # what turn 1 left in the KV
        chat2 = [*chat, {"role": "assistant", "content": r1.text}]
        chat2.append({"role": "user", "content": q.turns[1]})
        n2 = len(s.encode(chat2))
        if n2 + a.max_new_tokens > s.capacity:
            continue
        for d in drafters:
            got = {}
            for reuse in (True, False) if i % 2 == 0 else (False, True):
                s.forget(kept if reuse else 0)
                got[reuse] = _turn(s, chat2, d, a.max_new_tokens)
            hot, cold = got[True], got[False]
            rows[d].append(
                (
                    hot.stats.time_to_first_token_s / cold.stats.time_to_first_token_s,
                    hot.stats.total_s / cold.stats.total_s,
                    hot.stats.prompt_tokens_reused,
                    hot.tokens == cold.tokens,
                )
            )
        print(f"q{q.question_id}: turn 2 prompt {n2} tokens", file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main())
