"""`edgespec bench`: Spec-Bench metrics for edgespec's drafters and for peer runtimes.

Writes results.json (every raw figure), results.md (the table) and chart.png (with the `bench`
extra: matplotlib) into --out, and prints the table. The only module of the package that prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..config import PROVIDERS
from .dataset import default_prompts_path
from .machine import usable_cores
from .peer_setup import PEERS
from .runners import METHODS


def _csv(choices: tuple[str, ...] | None, none_ok: bool = False) -> Any:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if choices is not None:
            if items == ["all"]:
                return list(choices)
            if none_ok and items == ["none"]:  # what --help calls the default
                return []
            bad = [t for t in items if t not in choices]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {', '.join(bad)}; choose from {', '.join(choices)}"
                )
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgespec bench", description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path, help="bundle directory written by `edgespec export`")
    _add_run_args(p)
    _add_peer_args(p)
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up generations")
    return p


def _add_run_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument  # fmt: skip
    a(
        "--prompts",
        type=Path,
        default=None,
        help="Spec-Bench JSONL (default: $EDGESPEC_SPEC_BENCH, else "
        "../shared/data/spec_bench_dev.jsonl next to the repo)",
    )
    a(
        "--categories",
        type=_csv(None),
        default=None,
        help="comma-separated categories or groups (mt_bench, translation, summarization, qa, "
        "math_reasoning, rag, writing, ...); default all",
    )
    a(
        "--per-category",
        type=int,
        default=None,
        help="at most N questions per Spec-Bench category group",
    )
    a("--max-new-tokens", type=int, default=256, help="per turn (default 256)")
    a(
        "--drafters",
        type=_csv(METHODS),
        default=list(METHODS),
        help="methods: none,ngram,model (plain decoding always runs: the reference)",
    )
    a(
        "--threads",
        type=int,
        default=None,
        help="threads for every runtime (default: the usable cores)",
    )
    a(
        "--provider",
        choices=PROVIDERS,
        default="cpu",
        help="edgespec's execution provider (default cpu; cuda/tensorrt need a bundle exported "
        "with --precision fp16)",
    )
    a(
        "--num-draft-tokens",
        type=int,
        default=None,
        help="edgespec's max drafted tokens per step (default: the engine's)",
    )
    a("--out", type=Path, default=Path("bench_out"), help="output directory (bench_out)")


def _add_peer_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a(
        "--peers",
        type=_csv(PEERS, none_ok=True),
        default=[],
        help=f"peer runtimes: {','.join(PEERS)}, all or none (default: none)",
    )
    a(
        "--peer-model",
        type=Path,
        default=None,
        help="GGUF file or HF directory of the bundle's target, for the peers "
        "(default: the SmolLM2 GGUF the default bundle is exported from)",
    )
    a(
        "--peer-draft",
        type=Path,
        default=None,
        help="HF directory or GGUF of the bundle's draft model, for the peers",
    )
    a(
        "--peers-python",
        default=None,
        help="interpreter with the peer runtimes (default: build/peers-venv from "
        "`make bench-setup`, then this one)",
    )
    a(
        "--peers-cache",
        type=Path,
        default=None,
        help="cache of the peers' converted models (default: $XDG_CACHE_HOME/edgespec/peers)",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    from .harness import BenchConfig

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    threads = args.threads if args.threads is not None else usable_cores()
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    return BenchConfig(
        bundle=args.bundle,
        prompts=args.prompts or default_prompts_path(),
        out=args.out,
        categories=args.categories,
        per_category=args.per_category,
        max_new_tokens=args.max_new_tokens,
        drafters=args.drafters,
        peers=args.peers,
        threads=threads,
        provider=args.provider,
        num_draft_tokens=args.num_draft_tokens,
        peer_model=args.peer_model,
        peer_draft=args.peer_draft,
        peers_python=args.peers_python,
        peers_cache=args.peers_cache,
        warmup=not args.no_warmup,
    )


class _Progress:
    """A tqdm bar on a terminal (when tqdm is importable); elsewhere (a log file) one line per
    LOG_EVERY_S seconds at most."""

    LOG_EVERY_S = 60.0

    def __init__(self, tty: bool) -> None:
        self.bar = None
        self.done, self.total, self.last_log = 0, 0, 0.0
        self.t0 = time.monotonic()
        if tty:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=None, unit="gen", dynamic_ncols=True, file=sys.stderr)

    def set_total(self, plan: Any) -> None:
        self.total = sum(len(q.turns) for q in plan.questions) * len(plan.methods)
        if self.bar is not None:
            self.bar.reset(total=self.total)

    def __call__(self, label: str) -> None:
        counted = not label.startswith(("warm-up", "starting"))
        self.done += counted
        if self.bar is not None:
            self.bar.set_description_str(label[:60], refresh=False)
            self.bar.update(int(counted))
            return
        now = time.monotonic()
        if now - self.last_log >= self.LOG_EVERY_S or not counted:
            self.last_log = now
            minutes = (now - self.t0) / 60
            print(f"[{self.done}/{self.total or '?'}, {minutes:.1f} min] {label}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(args)
    from . import harness, report

    progress = _Progress(sys.stderr.isatty() or os.environ.get("EDGESPEC_PROGRESS") == "bar")
    try:
        results = harness.run(cfg, progress=progress, on_plan=progress.set_total)
    finally:
        progress.close()
    written = report.write_all(results, cfg.out)
    print(report.table(results))
    print(file=sys.stderr)
    for name in ("json", "md", "chart"):
        if written.get(name):
            print(f"wrote {written[name]}", file=sys.stderr)
    if written.get("chart_skipped"):
        print(f"no chart: {written['chart_skipped']}", file=sys.stderr)
    print(f"took {results['elapsed_s'] / 60:.1f} min", file=sys.stderr)
    return 0
