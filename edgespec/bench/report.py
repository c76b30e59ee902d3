"""results.md (a Spec-Bench-leaderboard-shaped table) and chart.png from the results dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .dataset import GROUP_TITLES, GROUPS
from .metrics import OVERALL

RUNTIME_TITLES = {
    "edgespec": "edgespec",
    "ortgenai": "onnxruntime-genai",
    "transformers": "transformers",
    "llamacpp": "llama.cpp",
}
METHOD_TITLES = {
    "none": "plain",
    "ngram": "prompt lookup",
    "model": "draft model",
    "eagle": "draft head (distilled)",
}


def groups_in(results: dict[str, Any]) -> list[str]:
    present = {q["group"] for q in results["questions"]}
    return [g for g in GROUPS if g in present] + sorted(present - set(GROUPS))


def method_label(key: str) -> tuple[str, str]:
    runtime, method = key.split("/", 1)
    return RUNTIME_TITLES.get(runtime, runtime), METHOD_TITLES.get(method, method)


def _x(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}×"


def _num(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _med(q: dict[str, Any] | None) -> float | None:
    return None if not q else q["median"]


def _iqr(q: dict[str, Any] | None, digits: int, suffix: str = "") -> str:
    if not q:
        return "–"
    return f"{q['median']:.{digits}f}{suffix} ({q['q1']:.{digits}f}–{q['q3']:.{digits}f})"


HEADER_TAIL = [
    "Overall speedup (IQR)",
    "Spec-Bench speedup",
    "Mean accepted tokens",
    "tok/s (IQR)",
    "tok/s ÷ edgespec plain",
    "TTFT s",
    "Peak RSS MB",
    "Identical to plain",
]


def table(results: dict[str, Any]) -> str:
    """The Markdown table: rows = runtime × method, category columns = speedup over the same
    runtime's plain decoding (median over questions)."""
    groups = groups_in(results)
    head = ["Runtime", "Method"] + [GROUP_TITLES.get(g, g) for g in groups] + HEADER_TAIL
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in results["methods"]:
        lines.append("| " + " | ".join(_row(key, results["summary"][key], groups)) + " |")
    for s in results["skipped"]:
        runtime = RUNTIME_TITLES.get(s["runtime"], s["runtime"])
        method = "all" if s["method"] == "*" else METHOD_TITLES.get(s["method"], s["method"])
        cells = [runtime, method, f"skipped: {_one_line(s['reason'])}"]
        cells += [""] * (len(head) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_table(results: dict[str, Any]) -> str:
    """Tokens/s per category and method (median over questions)."""
    groups = groups_in(results)
    head = ["Runtime", "Method"] + [GROUP_TITLES.get(g, g) for g in groups] + ["Overall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in results["methods"]:
        per = results["summary"][key]
        cells = list(method_label(key))
        cells += [_num(_med(per.get(g, {}).get("tokens_per_s"))) for g in [*groups, OVERALL]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def drafter_table(results: dict[str, Any]) -> str:
    """edgespec's drafters: acceptance per category, mean accepted tokens, drafter cost."""
    groups = groups_in(results)
    head = ["Method"] + [GROUP_TITLES.get(g, g) for g in groups]
    head += ["Overall acceptance", "Mean accepted tokens", "Drafter cost / target step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in results["methods"]:
        per = results["summary"][key]
        o = per.get(OVERALL, {})
        if not key.startswith("edgespec/") or o.get("draft_cost") is None:
            continue
        method = method_label(key)[1]
        cells = [method] + [_pct(per.get(g, {}).get("acceptance_rate")) for g in groups]
        cells += [
            _pct(o.get("acceptance_rate")),
            _num(o.get("mean_accepted_tokens"), 2),
            _num(o.get("draft_cost"), 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def answers_table(results: dict[str, Any]) -> str:
    """What plain decoding answered, per category: loop share and turns cut at the limit (the
    speedups above depend on them: a loop is free for prompt lookup)."""
    groups = groups_in(results)
    head = ["Runtime"] + [GROUP_TITLES.get(g, g) for g in groups] + ["Overall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in results["methods"]:
        if not key.endswith("/none"):
            continue
        per = results["summary"][key]
        cells = [method_label(key)[0]]
        for g in [*groups, OVERALL]:
            fig = per.get(g, {})
            cells.append(f"{_pct(fig.get('loop_share'))} / {_pct(fig.get('cut_rate'))}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _one_line(text: str, limit: int = 160) -> str:
    t = " ".join(str(text).split()).replace("|", "/")
    return t if len(t) <= limit else t[: limit - 1] + "…"


def _row(key: str, per: dict[str, Any], groups: list[str]) -> list[str]:
    runtime, method = method_label(key)
    o = per.get(OVERALL, {})  # empty when the method never answered
    cells = [runtime, method]
    cells += [_x(_med(per.get(g, {}).get("speedup"))) for g in groups]
    cells += [
        _iqr(o.get("speedup"), 2, "×"),
        _x((o.get("speedup") or {}).get("specbench")),
        _num(o.get("mean_accepted_tokens"), 2),
        _iqr(o.get("tokens_per_s"), 1),
        _x(_med(o.get("speedup_vs_reference"))),
        _num(_med(o.get("ttft_s")), 3),
        _num(o.get("peak_rss_mb"), 0),
        _pct(o.get("identical_rate")),
    ]
    return cells


def markdown(results: dict[str, Any]) -> str:
    """The whole results.md: header (machine, settings), table, definitions, skips, notes."""
    m, c = results["machine"], results["config"]
    n_q = len(results["questions"])
    n_turns = sum(q["turns"] for q in results["questions"])
    versions = "; ".join(v["version"] for v in results["runtimes"].values())
    out = [
        "# edgespec bench: Spec-Bench",
        "",
        f"- Bundle `{c['bundle']}`, prompts `{Path(c['prompts']).name}`: {n_q} questions "
        f"({n_turns} turns), greedy, at most {c['max_new_tokens']} new tokens per turn.",
        f"- Machine: {m['cpu']}, {m['cores_usable']} usable cores, {m['memory_gb']} GB"
        f"{''.join(f'; GPU {g}' for g in m.get('gpus') or [])}; "
        f"{c['threads']} thread(s) per runtime, edgespec on {c.get('provider', 'cpu')}; "
        f"load average {m.get('load_average_start')} at "
        f"the start, {m.get('load_average_end')} at the end; {m['os']}, Python {m['python']}.",
        f"- Versions: {versions}; ONNX Runtime {m['onnxruntime']}; git {m.get('git_commit')}.",
        *_table_line(results),
        f"- Run time {results['elapsed_s'] / 60:.1f} min; {results['created']}.",
        "",
        table(results),
        "",
        *DEFINITIONS,
        "",
        "Tokens/s per category (median over questions; new tokens over all turns ÷ wall time):",
        "",
        speed_table(results),
        "",
        "edgespec's drafters: acceptance (accepted ÷ drafted tokens) per category; drafter cost "
        "= time in the drafter per drafted token (catch-up included) ÷ time per plain decoding "
        "step, same run:",
        "",
        drafter_table(results),
        "",
        "Plain decoding's answers per category: loop share (answer tokens that repeat an earlier "
        "16-token sequence of the same answer) / turns cut at the token limit or the context "
        "capacity instead of ending at EOS:",
        "",
        answers_table(results),
    ]
    if results["notes"]:
        out += ["", "Skipped turns:"]
        out += [
            f"- question {n['question_id']}, turns {n['turns_skipped']}"
            f"{' (' + n['method'] + ')' if n.get('method') else ''}: {n['reason']}"
            for n in results["notes"]
        ]
    return "\n".join(out) + "\n"


def _table_line(results: dict[str, Any]) -> list[str]:
    """A line saying that edgespec's drafters drew on the bundle's n-gram table, if they did."""
    n = results["runtimes"].get("edgespec", {}).get("ngram_table_entries")
    if not n:
        return []
    return [
        f"- The bundle has an n-gram table ({n} entries): edgespec's prompt lookup and draft "
        "head draft from it where the conversation offers no copy."
    ]


DEFINITIONS = [
    "Category columns and *Overall speedup*: tokens/s of the method ÷ tokens/s of the **same "
    "runtime's** plain decoding on the same question in the same run (new tokens over all "
    "turns ÷ wall time over all turns, prefill included), median over questions (IQR in "
    "brackets). *Spec-Bench speedup*: Spec-Bench's own aggregate over the same questions, the "
    "mean of the method's per-question tokens/s ÷ the mean of plain decoding's (fast questions "
    "weigh more in it than in the median). *tok/s ÷ edgespec plain* compares against "
    "edgespec's plain decoding instead. "
    "*Mean accepted tokens*: tokens committed per target forward after the prefill. *TTFT*: "
    "median time to the first token. *Peak RSS*: the highest resident-memory high-water mark "
    "of the process running the method during one generation (reset before each generation "
    "via /proc/self/clear_refs; edgespec runs in the harness process, each peer in its own "
    "process; it includes the weights and the interpreter). *Identical to plain*: turns whose "
    "tokens equal the same runtime's plain decoding (greedy speculation is lossless when "
    "100%). Methods run back to back per question, in an order that rotates from question to "
    "question, after one warm-up generation each.",
]


def chart(results: dict[str, Any], path: Path) -> Path:
    """chart.png: speedup per category per speculative method, and tokens/s per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = groups_in(results) + [OVERALL]
    spec = [k for k in results["methods"] if not k.endswith("/none")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(len(spec), 1)
    for i, key in enumerate(spec):
        per = results["summary"][key]
        vals = [(_med(per.get(g, {}).get("speedup")) or 0.0) for g in groups]
        xs = [j + (i - (len(spec) - 1) / 2) * width for j in range(len(groups))]
        ax1.bar(xs, vals, width, label=" ".join(method_label(key)))
    ax1.axhline(1.0, color="black", linewidth=0.8)
    ax1.set_xticks(range(len(groups)))
    ax1.set_xticklabels([GROUP_TITLES.get(g, g.capitalize()) for g in groups], rotation=20)
    ax1.set_ylabel("speedup over the runtime's plain decoding (median)")
    ax1.set_title("Speedup per Spec-Bench category")
    if spec:
        ax1.legend(fontsize=8)
    _tokens_panel(ax2, results)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tokens_panel(ax: Any, results: dict[str, Any]) -> None:
    keys = results["methods"]
    meds, lo, hi = [], [], []
    for k in keys:
        o = results["summary"][k].get(OVERALL, {})
        q = o.get("tokens_per_s") or {"median": 0, "q1": 0, "q3": 0}
        meds.append(q["median"])
        lo.append(q["median"] - q["q1"])
        hi.append(q["q3"] - q["median"])
    ys = range(len(keys))
    ax.barh(list(ys), meds, xerr=[lo, hi], color="tab:gray", capsize=3)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([" / ".join(method_label(k)) for k in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("tokens/s per question (median, IQR)")
    ax.set_title("Throughput")


def write_all(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """results.json, results.md and (when matplotlib is importable) chart.png in `out`.

    Returns {"json", "md", "chart"} paths; "chart" is None with "chart_skipped" saying why."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"json": out / "results.json", "md": out / "results.md"}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    tmp.replace(written["json"])
    (out / "records.partial.jsonl").unlink(missing_ok=True)  # results.json holds them all now
    written["md"].write_text(markdown(results), encoding="utf-8")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        written["chart"] = None
        written["chart_skipped"] = "matplotlib is not installed (pip install 'edgespec[bench]')"
        return written
    written["chart"] = chart(results, out / "chart.png")
    return written
