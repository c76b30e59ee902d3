"""`edgespec bench` end to end on the tiny bundle: two Spec-Bench-shaped questions, no peers."""

from __future__ import annotations

import importlib.util
import json

import pytest

from edgespec import Session
from edgespec.cli import main as cli_main

QUESTIONS = [
    {
        "question_id": 1,
        "category": "writing",
        "turns": ["the quick brown fox jumps over the lazy dog", "say it again: one two three"],
    },
    {"question_id": 3, "category": "translation", "turns": ["hello world, hello world"]},
    {"question_id": 5, "category": "qa", "turns": ["not selected: --categories"]},
]


@pytest.fixture(scope="module")
def bench_run(tiny_bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    prompts = d / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    out = d / "out"
    argv = [
        "bench",
        str(tiny_bundle),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--categories",
        "mt_bench,translation",
        "--per-category",
        "1",
        "--max-new-tokens",
        "12",
        "--threads",
        "1",
        "--drafters",
        "none,ngram,model",
    ]
    # Draft every lookup match: the tiny model's steps are so cheap that the cost-aware policy
    # often finds prompt lookup not worth it and drafts nothing in these 12-token answers (one
    # fresh-clone CI run, and 1 of 5 local runs), which leaves no drafter row to check.
    generate = Session.generate
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            Session, "generate", lambda self, *a, **kw: generate(self, *a, adaptive=False, **kw)
        )
        assert cli_main(argv) == 0
    return out


def test_results_json_has_every_figure(bench_run):
    res = json.loads((bench_run / "results.json").read_text())
    assert res["reference"] == "edgespec/none"
    assert res["methods"] == ["edgespec/none", "edgespec/ngram"]
    assert {"runtime": "edgespec", "method": "model", "reason": "bundle has no draft model"} in (
        res["skipped"]
    )
    assert [q["question_id"] for q in res["questions"]] == [1, 3]
    m = res["machine"]
    assert m["cpu"] and m["threads"] == 1 and m["onnxruntime"] and m["edgespec"]
    # 2 methods x 3 turns (question 1 has two turns; each method continues its own answer)
    recs = res["records"]
    assert len(recs) == 6
    assert {(r["question_id"], r["turn"]) for r in recs} == {(1, 1), (1, 2), (3, 1)}
    for r in recs:
        for k in (
            "new_tokens",
            "total_s",
            "ttft_s",
            "tokens_per_s",
            "steps",
            "tokens",
            "peak_rss_kb",
            "group",
            "order",
            "identical_to_plain",
        ):
            assert k in r, k
        assert 1 <= r["new_tokens"] <= 12 and r["total_s"] > 0 and r["peak_rss_kb"] > 0
        assert r["identical_to_plain"] is True  # greedy speculation is lossless
        # every request prefills its whole prompt (the methods share it; Spec-Bench's timing)
        assert r["engine"]["prompt_tokens_reused"] == 0
    overall = res["summary"]["edgespec/ngram"]["overall"]
    assert overall["identical_rate"] == 1.0 and overall["questions"] == 2
    assert overall["speedup"]["median"] > 0 and overall["mean_accepted_tokens"] >= 1.0
    plain = res["summary"]["edgespec/none"]
    assert plain["overall"]["speedup"]["median"] == pytest.approx(1.0)
    assert set(plain) == {"mt_bench", "translation", "overall"}


def _cell(lines: list[str], row_prefix: str, column: str) -> str:
    """The cell of a Markdown table (lines[0] its header) in the row starting with row_prefix."""
    col = [c.strip() for c in lines[0].split("|")].index(column)
    row = next(x for x in lines if x.startswith(row_prefix))
    return [c.strip() for c in row.split("|")][col]


def test_results_md_has_the_leaderboard_rows(bench_run):
    md = (bench_run / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Runtime"))
    for col in ("MT-bench", "Translation", "Overall speedup", "Spec-Bench speedup", "tok/s"):
        assert col in header
    assert "Mean accepted tokens" in header
    assert "| edgespec | plain | 1.00× | 1.00× |" in md
    assert "| edgespec | prompt lookup |" in md
    summary = json.loads((bench_run / "results.json").read_text())["summary"]
    specbench = summary["edgespec/ngram"]["overall"]["speedup"]["specbench"]
    lines = md.splitlines()
    board = lines[lines.index(header) :]  # the leaderboard and what follows it
    assert _cell(board, "| edgespec | prompt lookup |", "Spec-Bench speedup") == f"{specbench:.2f}×"
    assert "| edgespec | draft model | skipped: bundle has no draft model |" in md
    drafters = md.split("edgespec's drafters:")[1]
    assert "Drafter cost / target step" in drafters and "| prompt lookup |" in drafters
    assert "| plain |" not in drafters  # plain decoding drafts nothing
    answers = md.split("Plain decoding's answers per category")[1]
    assert "| edgespec |" in answers and "| prompt lookup |" not in answers


def test_loop_share_and_cut_rate_of_plain_answers(bench_run):
    from edgespec.bench.metrics import loop_tokens

    res = json.loads((bench_run / "results.json").read_text())
    plain = [r for r in res["records"] if r["method"] == "none"]
    o = res["summary"]["edgespec/none"]["overall"]
    n = sum(len(r["tokens"]) for r in plain)
    assert o["loop_share"] == pytest.approx(sum(loop_tokens(r["tokens"]) for r in plain) / n)
    cut = [r["finish_reason"] == "length" for r in plain]
    assert o["cut_rate"] == pytest.approx(sum(cut) / len(cut))


def test_loop_tokens_counts_repeats_of_earlier_ngrams():
    from edgespec.bench.metrics import loop_tokens

    assert loop_tokens([]) == 0
    assert loop_tokens(list(range(40))) == 0  # no repeat at all
    assert loop_tokens([1, 2, 3, 4], n=5) == 0  # shorter than one n-gram
    # 1..5 then 1..5 again: with n=3 the 3-grams ending at the 2nd "3", "4", "5" were seen
    assert loop_tokens([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], n=3) == 3
    assert loop_tokens([7] * 10, n=4) == 6  # a one-token loop: every 4-gram after the first
    assert loop_tokens([1, 2, 3, 9, 1, 2, 3, 8], n=4) == 0  # shared 3-gram, no 4-gram repeat


def test_drafter_cost_is_draft_time_per_token_over_plain_step(bench_run):
    res = json.loads((bench_run / "results.json").read_text())
    s = res["summary"]
    ngram, plain = s["edgespec/ngram"]["overall"], s["edgespec/none"]["overall"]
    assert ngram["draft_cost"] == pytest.approx(
        ngram["draft_s_per_token"] / plain["verify_s_per_step"]
    )
    assert 0 < ngram["draft_cost"] < 1  # prompt lookup is far cheaper than a target step


def test_chart(bench_run):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib not installed (the `bench` extra): no chart.png expected")
    png = (bench_run / "chart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_select_round_robins_mt_bench_and_orders_groups(tmp_path):
    from edgespec.bench.dataset import load_questions, select

    rows = [
        {"question_id": 1, "category": "rag", "turns": ["r"]},
        {"question_id": 2, "category": "writing", "turns": ["w1", "w2"]},
        {"question_id": 3, "category": "writing", "turns": ["w"]},
        {"question_id": 4, "category": "coding", "turns": ["c"]},
    ]
    p = tmp_path / "q.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    qs = load_questions(p)
    assert [q.question_id for q in select(qs, None, 2)] == [2, 4, 1]  # MT-bench first
    assert [q.question_id for q in select(qs, ["writing"], None)] == [2, 3]
    with pytest.raises(ValueError, match="unknown categories"):
        select(qs, ["nope"], None)
    p.write_text('{"question_id": 1, "category": "qa", "turns": []}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="q.jsonl:1"):
        load_questions(p)


def test_summarize_pairs_methods_per_question():
    from edgespec.bench.metrics import mark_identity, summarize

    def rec(runtime, method, qid, tokens, seconds, steps):
        n = len(tokens)
        return {
            "runtime": runtime,
            "method": method,
            "question_id": qid,
            "turn": 1,
            "group": "qa",
            "new_tokens": n,
            "total_s": seconds,
            "ttft_s": 0.1,
            "tokens_per_s": n / seconds,
            "steps": steps,
            "tokens": tokens,
            "peak_rss_kb": 2048,
        }

    recs = [
        rec("edgespec", "none", 1, [1, 2, 3, 4, 5], 1.0, 4),
        rec("edgespec", "ngram", 1, [1, 2, 3, 4, 5], 0.5, 2),
        rec("edgespec", "none", 2, [1, 2, 3], 1.0, 2),
        rec("edgespec", "ngram", 2, [1, 2, 9], 0.25, 1),
    ]
    mark_identity(recs, ("edgespec", "none"))
    methods = [("edgespec", "none"), ("edgespec", "ngram")]
    summary = summarize(recs, methods, ("edgespec", "none"))
    s = summary["edgespec/ngram"]["overall"]
    assert s["speedup"]["median"] == pytest.approx(3.0)  # per question: 2x and 4x
    assert s["speedup"]["specbench"] == pytest.approx(((10 + 12) / 2) / ((5 + 3) / 2))
    assert s["mean_accepted_tokens"] == pytest.approx((4 + 2) / (2 + 1))
    assert s["identical_rate"] == 0.5 and s["peak_rss_mb"] == 2.0
    # The leaderboard shows both: the median (3.00x) and Spec-Bench's aggregate (2.75x).
    from edgespec.bench.report import table

    results = {
        "methods": ["edgespec/none", "edgespec/ngram"],
        "summary": summary,
        "skipped": [],
        "questions": [{"group": "qa"}],
    }
    lines = table(results).splitlines()
    lookup = "| edgespec | prompt lookup |"
    assert _cell(lines, lookup, "Spec-Bench speedup") == "2.75×"
    assert _cell(lines, lookup, "Overall speedup (IQR)").startswith("3.00× (")


def test_peers_flag_accepts_none_all_and_names():
    from edgespec.bench.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["b", "--peers", "none"]).peers == []
    assert parse(["b"]).peers == []
    assert parse(["b", "--peers", "ortgenai,llamacpp"]).peers == ["ortgenai", "llamacpp"]
    assert len(parse(["b", "--peers", "all"]).peers) == 3


def test_provider_flag_reaches_the_config(tmp_path, capsys):
    from edgespec.bench.cli import build_parser, config_from_args

    parse = build_parser().parse_args
    prompts = ["--prompts", str(tmp_path / "p.jsonl")]
    assert config_from_args(parse(["b", *prompts])).provider == "cpu"
    assert config_from_args(parse(["b", "--provider", "cuda", *prompts])).provider == "cuda"
    with pytest.raises(SystemExit):
        parse(["b", "--provider", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_bench_refuses_a_gpu_provider_for_edgespec_attention(tiny_bundle, tmp_path):
    """The Session's check reaches the bench: a clear ValueError before any question runs."""
    from edgespec.bench.harness import BenchConfig, make_plan

    cfg = BenchConfig(bundle=tiny_bundle, prompts=tmp_path / "p.jsonl", out=tmp_path / "o")
    cfg.provider = "cuda"
    (tmp_path / "p.jsonl").write_text(
        '{"question_id": 1, "category": "qa", "turns": ["hi"]}\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match="edgespec attention, a CPU op; provider 'cuda'"):
        make_plan(cfg)


def test_machine_lists_gpus_from_nvidia_smi(tmp_path, monkeypatch):
    from edgespec.bench import machine

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    assert machine.gpus() == []
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200, 580.159.04, 143771 MiB'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/bin:/usr/bin")
    assert machine.gpus() == ["NVIDIA H200, 580.159.04, 143771 MiB"]


def test_results_md_names_the_provider_and_gpus(bench_run):
    from edgespec.bench.report import markdown

    results = json.loads((bench_run / "results.json").read_text())
    assert "edgespec on cpu;" in markdown(results)
    results["machine"]["gpus"] = ["NVIDIA H200, 580.159.04, 143771 MiB"]
    results["config"]["provider"] = "cuda"
    line = next(x for x in markdown(results).splitlines() if x.startswith("- Machine:"))
    assert "GB; GPU NVIDIA H200, 580.159.04, 143771 MiB;" in line and "edgespec on cuda;" in line


def test_results_md_says_when_drafters_had_an_ngram_table(bench_run):
    from edgespec.bench.report import markdown

    results = json.loads((bench_run / "results.json").read_text())
    assert results["runtimes"]["edgespec"]["ngram_table_entries"] == 0  # the tiny bundle has none
    assert "n-gram table" not in markdown(results)
    results["runtimes"]["edgespec"]["ngram_table_entries"] = 1234
    assert "- The bundle has an n-gram table (1234 entries)" in markdown(results)
