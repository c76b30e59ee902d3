"""Top-1 agreement of a reduced-precision bundle with the fp32 target on greedy trajectories.

    python tools/int4_agreement.py FP32_BUNDLE INT4_BUNDLE [--prompts N] [--max-new-tokens N]

For each Spec-Bench dev prompt (first turn, chat template): the fp32 bundle decodes greedily
through edgespec (drafter "none"); then both graphs score prompt + trajectory teacher-forced in one
forward each, and we count the generated positions where their argmax agrees. Prints per-category
and overall agreement.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import edgespec
from edgespec.bench.dataset import default_prompts_path, load_questions
from edgespec.export.verify import SharedKVDecoder


def _decoder(bundle: Path) -> SharedKVDecoder:
    target = edgespec.load_bundle(bundle).target  # validated manifest entry
    return SharedKVDecoder(target.path, target.raw)


def _argmax_rows(dec: SharedKVDecoder, ids: list[int], first: int, chunk: int = 64) -> np.ndarray:
    """Argmax of the logits at positions first-1 .. len(ids)-2 (the rows predicting ids[first:])."""
    rows = []
    for start in range(0, len(ids) - 1, chunk):
        part = ids[start : min(start + chunk, len(ids) - 1)]
        logits = dec.forward(part, start)  # [len(part), vocab]
        rows.append(logits.argmax(-1))
    return np.concatenate(rows)[first - 1 :]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32_bundle", type=Path)
    ap.add_argument("other_bundle", type=Path)
    ap.add_argument("--prompts", type=int, default=240, help="number of dev prompts (max 240)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--data", type=Path, default=default_prompts_path())
    args = ap.parse_args(argv)
    rows = load_questions(args.data)
    rows = rows[: args.prompts]
    per_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # category -> [agree, total]
    self_mismatch = 0  # fp32 chunked teacher forcing vs its own token-by-token greedy decode
    with edgespec.Session(args.fp32_bundle) as s:
        ref = _decoder(args.fp32_bundle)
        other = _decoder(args.other_bundle)
        for row in rows:
            messages = [{"role": "user", "content": row.turns[0]}]
            ids = s.encode(messages)
            if len(ids) + args.max_new_tokens > s.capacity:
                continue
            r = s.generate(messages, max_new_tokens=args.max_new_tokens, drafter="none")
            full = ids + r.tokens
            a = _argmax_rows(ref, full, len(ids))  # fp32, teacher-forced in chunks
            b = _argmax_rows(other, full, len(ids))
            self_mismatch += int((a != np.array(r.tokens)).sum())
            c = per_cat[row.category]
            c[0] += int((a == b).sum())
            c[1] += len(a)
    total = [sum(v[0] for v in per_cat.values()), sum(v[1] for v in per_cat.values())]
    for cat, (agree, n) in sorted(per_cat.items()):
        print(f"{cat:16} {agree / n:7.2%}  ({agree}/{n} positions)")
    print(
        f"{'overall':16} {total[0] / total[1]:7.2%}  ({total[0]}/{total[1]} positions, "
        f"{len(rows)} prompts, {args.max_new_tokens} new tokens max)"
    )
    print(f"fp32 chunked-vs-stepwise argmax mismatches: {self_mismatch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
