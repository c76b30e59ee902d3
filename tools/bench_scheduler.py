"""Scheduler overhead and prompt-lookup speedup on the Spec-Bench summarization prompts.

    python tools/bench_scheduler.py BUNDLE [--category summarization] [--prompts 10]
                                           [--max-new-tokens 128] [--threads N]

Runs the native engine directly (no Python callback in the loop), greedy, interleaving
drafter "none" and "ngram" per prompt so machine drift hits both. Prints per prompt and in total:
tokens/s of each, the ngram/none ratio, whether the outputs are token-identical, and the
scheduler overhead = time of a decode step outside ONNX Runtime's Run (total − prefill − verify)
as a share of the decode time. Each prompt's line also gives the answer's length, why it ended
(eos or length) and its loop share (answer tokens that end a 16-gram already seen earlier in the
answer): a small model that loops is easy for prompt lookup, so the summary splits the ratio by
answers that ended at EOS, answers cut at --max-new-tokens, and answers that barely loop.
Spec-Bench's own runs use --max-new-tokens 1024 (generate to EOS, at most 1024 tokens).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import edgespec
from edgespec import _native
from edgespec.bench.dataset import default_prompts_path, load_questions
from edgespec.bench.metrics import loop_tokens


def _engine(bundle: edgespec.Bundle, threads: int | None) -> _native.Engine:
    target = _native.ModelSpec(**bundle.target.native_spec_kwargs())
    provider = _native.ProviderSpec(name="cpu", threads=threads or 0)
    return _native.Engine(target, None, provider)


def _loop_share(tokens: list[int]) -> float:
    return loop_tokens(tokens) / len(tokens) if tokens else 0.0


def _run(engine: _native.Engine, ids: list[int], drafter: str, n: int, eos: list[int]) -> dict:
    cfg = _native.GenConfig(max_new_tokens=n, drafter=drafter, eos_ids=eos)
    r = engine.generate(ids, cfg)
    st = r.stats
    decode_s = st.t_total_s - st.t_prefill_s
    outside = decode_s - st.t_verify_s  # ngram drafting is scheduler work, so it counts here
    return {
        "tokens": list(r.tokens),
        "finish": r.finish_reason,
        "tok_s": st.n_generated / st.t_total_s,
        "overhead": outside / decode_s if decode_s > 0 else 0.0,
        "steps": st.n_steps,
        "accept": st.n_accept / st.n_draft if st.n_draft else 0.0,
        "time": st.t_total_s,
        "n": st.n_generated,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--category", default="summarization")
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data", type=Path, default=default_prompts_path())
    args = ap.parse_args(argv)
    rows = load_questions(args.data)
    rows = [r for r in rows if r.category == args.category][: args.prompts]
    with edgespec.Session(args.bundle) as s:
        engine = _engine(s.bundle, args.threads)
        eos = list(s.bundle.tokenizer.eos_token_ids)
        warm = s.encode([{"role": "user", "content": "Hello"}])
        _run(engine, warm, "none", 8, eos)
        res: dict[str, list[dict]] = {"none": [], "ngram": []}
        same = 0
        for row in rows:
            ids = s.encode([{"role": "user", "content": row.turns[0]}])
            for drafter in ("none", "ngram"):
                res[drafter].append(_run(engine, ids, drafter, args.max_new_tokens, eos))
            a, b = res["none"][-1], res["ngram"][-1]
            same += a["tokens"] == b["tokens"]
            print(
                f"q{row.question_id:<4} none {a['tok_s']:6.1f} tok/s  ngram {b['tok_s']:6.1f} "
                f"tok/s  x{b['tok_s'] / a['tok_s']:.2f}  accept {b['accept']:.0%}  "
                f"identical {a['tokens'] == b['tokens']}  {a['n']} tokens ({a['finish']}, "
                f"loop {_loop_share(a['tokens']):.0%})"
            )
    _summary(res, same, len(rows))
    return 0


def _summary(res: dict[str, list[dict]], same: int, n: int) -> None:
    def agg(rs: list[dict]) -> float:  # tokens/s over the whole set
        return sum(r["n"] for r in rs) / sum(r["time"] for r in rs)

    ratio = agg(res["ngram"]) / agg(res["none"])
    ratios = [b["tok_s"] / a["tok_s"] for a, b in zip(res["none"], res["ngram"], strict=True)]
    print(
        f"\ntokens/s over all prompts: none {agg(res['none']):.1f}, ngram {agg(res['ngram']):.1f} "
        f"-> ngram/none {ratio:.2f}x (median per prompt {statistics.median(ratios):.2f}x, "
        f"min {min(ratios):.2f}x, max {max(ratios):.2f}x)"
    )
    subsets = {
        "ended at eos": lambda r: r["finish"] == "eos",
        "cut at max-new-tokens": lambda r: r["finish"] == "length",
        "loop share < 10%": lambda r: _loop_share(r["tokens"]) < 0.10,
    }
    for name, keep in subsets.items():
        idx = [i for i, r in enumerate(res["none"]) if keep(r)]
        if idx:
            sub = agg([res["ngram"][i] for i in idx]) / agg([res["none"][i] for i in idx])
            print(f"  answers {name}: {len(idx)}, ngram/none {sub:.2f}x")
    print(f"identical outputs: {same}/{n}")
    for d in ("none", "ngram"):
        ov = [r["overhead"] for r in res[d]]
        print(
            f"scheduler overhead ({d}): median {statistics.median(ov):.2%} of decode time "
            f"(max {max(ov):.2%})"
        )


if __name__ == "__main__":
    sys.exit(main())
