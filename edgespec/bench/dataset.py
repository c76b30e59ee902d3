"""Spec-Bench prompts: loading, grouping into the leaderboard's categories, selection."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# Spec-Bench's six task groups, in its leaderboard's column order. The eight MT-bench
# categories together form "Multi-turn Conversation".
MT_BENCH = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
)
GROUPS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
GROUP_TITLES = {
    "mt_bench": "MT-bench",
    "translation": "Translation",
    "summarization": "Summarization",
    "qa": "QA",
    "math_reasoning": "Math",
    "rag": "RAG",
}
ENV_PROMPTS = "EDGESPEC_SPEC_BENCH"


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str  # as in the file (e.g. "writing")
    group: str  # leaderboard column (e.g. "mt_bench")
    turns: tuple[str, ...]  # user messages


def group_of(category: str) -> str:
    return "mt_bench" if category in MT_BENCH else category


def default_prompts_path() -> Path:
    """$EDGESPEC_SPEC_BENCH, else ../shared/data/spec_bench_dev.jsonl next to the repo."""
    env = os.environ.get(ENV_PROMPTS)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data" / "spec_bench_dev.jsonl"


def load_questions(path: str | os.PathLike[str]) -> list[Question]:
    """Read a Spec-Bench JSONL file; one clear ValueError for a malformed line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"Spec-Bench prompts not found: {p} (pass --prompts or set {ENV_PROMPTS})"
        )
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            turns = obj["turns"]
            if (
                not isinstance(turns, list)
                or not turns
                or not all(isinstance(t, str) and t for t in turns)
            ):
                raise ValueError("turns must be a non-empty list of strings")
            cat = str(obj["category"])
            out.append(Question(obj["question_id"], cat, group_of(cat), tuple(turns)))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{p}:{n}: not a Spec-Bench question ({e})") from None
    if not out:
        raise ValueError(f"{p}: no questions")
    return out


def select(
    questions: list[Question], categories: list[str] | None, per_category: int | None
) -> list[Question]:
    """Questions of `categories` (file categories or leaderboard groups, e.g. "mt_bench"),
    at most `per_category` per group; MT-bench picks round-robin over its sub-categories.
    File order is kept within a group; groups come in leaderboard order."""
    if per_category is not None and per_category < 1:
        raise ValueError(f"--per-category must be >= 1, got {per_category}")
    wanted = set(categories or [])
    known = {q.category for q in questions} | {q.group for q in questions}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"unknown categories {unknown}; the file has {sorted(known)}")
    chosen = [q for q in questions if not wanted or q.category in wanted or q.group in wanted]
    by_group: dict[str, list[Question]] = {}
    for q in chosen:
        by_group.setdefault(q.group, []).append(q)
    out = []
    for g in sorted(by_group, key=_group_rank):
        out.extend(_round_robin(by_group[g], per_category))
    return out


def _group_rank(group: str) -> tuple[int, str]:
    return (GROUPS.index(group) if group in GROUPS else len(GROUPS), group)


def _round_robin(qs: list[Question], limit: int | None) -> list[Question]:
    if limit is None:
        return qs
    by_cat: dict[str, list[Question]] = {}
    for q in qs:
        by_cat.setdefault(q.category, []).append(q)
    lanes = list(by_cat.values())
    out: list[Question] = []
    i = 0
    while len(out) < limit and any(i < len(lane) for lane in lanes):
        out.extend(lane[i] for lane in lanes if i < len(lane))
        i += 1
    return out[:limit]
