"""The benchmark loop: open the runtimes, warm them up, then for every question and turn run
every method back to back (the order rotates from question to question), each method
continuing its own conversation, and collect one raw record per method, question and turn."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import machine, metrics, peer_setup
from .dataset import Question, load_questions, select
from .peer_client import PeerError, PeerGroup, PeerRequestError
from .runners import METHODS, EdgespecRunner

PARTIAL_RECORDS = "records.partial.jsonl"  # written during the run, removed with results.json
REFERENCE = ("edgespec", "none")  # every speedup in the report is relative to this
WARMUP_TOKENS = 16
Progress = Callable[[str], None]  # called once per generation with a short label


@dataclass
class BenchConfig:
    bundle: Path
    prompts: Path
    out: Path
    categories: list[str] | None = None
    per_category: int | None = None
    max_new_tokens: int = 256
    drafters: list[str] = field(default_factory=lambda: ["none", "ngram", "model"])
    peers: list[str] = field(default_factory=list)
    threads: int = 1  # intra-op threads per model (CPU provider)
    provider: str = "cpu"  # edgespec's execution provider: cpu, cuda or tensorrt (peers: CPU)
    num_draft_tokens: int | None = None
    peer_model: Path | None = None
    peer_draft: Path | None = None
    peers_python: str | None = None
    peers_cache: Path | None = None
    warmup: bool = True


@dataclass
class Plan:
    """What will run: the questions, the runners and every method that was asked for."""

    questions: list[Question]
    runners: dict[str, Any]  # runtime -> runner
    methods: list[tuple[str, str]]  # (runtime, method), available ones
    skipped: list[dict[str, str]]  # {"runtime", "method" (or "*"), "reason"}
    runtimes: dict[str, dict[str, Any]]  # runtime -> version, load figures, settings


def open_edgespec(cfg: BenchConfig) -> tuple[Any, EdgespecRunner]:
    from ..session import Session

    session = Session(cfg.bundle, provider=cfg.provider, threads=cfg.threads)
    return session, EdgespecRunner(session, _wanted(cfg), cfg.num_draft_tokens)


def peer_inputs(cfg: BenchConfig, session: Any) -> peer_setup.PeerInputs:
    model, missing = (
        (cfg.peer_model, "") if cfg.peer_model else peer_setup.default_peer_model(session.bundle)
    )
    draft = cfg.peer_draft if session.has_draft else None
    return peer_setup.PeerInputs(
        model=model,
        draft=draft,
        bundle_has_draft=session.has_draft,
        precision=session.bundle.target.precision,
        missing=missing,
        tokenizer=peer_setup.tokenizer_facts(session.bundle),
        cache_dir=cfg.peers_cache or peer_setup.default_cache_dir(),
        pythons=peer_setup.peer_pythons(cfg.peers_python),
    )


def start_peer(peer: str, cfg: BenchConfig, inputs: peer_setup.PeerInputs) -> PeerGroup:
    """Start `peer` under the first interpreter that can run it; PeerError with every reason."""
    reasons = []
    logs = cfg.out / "logs"
    for python in inputs.pythons:
        try:
            wcfg = peer_setup.worker_config(
                peer, inputs, python, logs / f"{peer}-prepare.log", cfg.threads
            )
            wcfg["request_timeout_s"] = max(600.0, cfg.max_new_tokens * 5.0)
            return PeerGroup(peer, python, wcfg, _wanted(cfg), logs)
        except Exception as e:  # any failure to set a peer up is a reason to skip it
            reasons.append(f"{_short(python)}: {e}")
            if "not installed" not in str(e):
                break  # a real failure: another interpreter would fail the same way
    raise PeerError("; ".join(reasons))


def _wanted(cfg: BenchConfig) -> list[str]:
    """The methods to run: plain decoding (the reference) first, then the asked drafters."""
    return ["none"] + [d for d in cfg.drafters if d != "none"]


def _check_config(cfg: BenchConfig) -> None:
    if cfg.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {cfg.max_new_tokens}")
    if cfg.threads < 1:
        raise ValueError(f"threads must be >= 1, got {cfg.threads}")
    bad = [d for d in cfg.drafters if d not in METHODS]
    if bad:
        raise ValueError(f"unknown drafters {bad}; choose from {', '.join(METHODS)}")
    bad = [p for p in cfg.peers if p not in peer_setup.PEERS]
    if bad:
        raise ValueError(f"unknown peers {bad}; choose from {', '.join(peer_setup.PEERS)}")


def _short(python: str) -> str:
    p = Path(python)
    return str(p.parent.parent.name) if p.parent.name == "bin" else python


def make_plan(cfg: BenchConfig, progress: Progress | None = None) -> Plan:
    """Select the questions, open edgespec and start every peer that can be started."""
    _check_config(cfg)
    questions = select(load_questions(cfg.prompts), cfg.categories, cfg.per_category)
    session, es = open_edgespec(cfg)
    plan = Plan(questions, {"edgespec": es}, [], [], {})
    try:
        if session.bundle.tokenizer.chat_template is None:
            raise ValueError("the bundle has no chat template; Spec-Bench prompts are chat turns")
        plan.runtimes["edgespec"] = {
            "version": es.version,
            "load_rss_mb": _mb(es.load_rss_kb),
            "num_draft_tokens": cfg.num_draft_tokens,
            "threads": cfg.threads,
            "provider": cfg.provider,
            "ngram_table_entries": lk.entries if (lk := session.bundle.lookup) else 0,
        }
        plan.skipped += [
            {"runtime": "edgespec", "method": m, "reason": r} for m, r in es.methods.items() if r
        ]
        inputs = peer_inputs(cfg, session) if cfg.peers else None
        for peer in cfg.peers:
            if progress:
                progress(f"starting {peer}")
            _add_peer(plan, peer, cfg, inputs)  # type: ignore[arg-type]
    except BaseException:
        for runner in plan.runners.values():
            runner.close()
        raise
    for name, runner in plan.runners.items():
        plan.methods += [(name, m) for m in _wanted(cfg) if runner.methods.get(m, "-") is None]
    return plan


def _add_peer(plan: Plan, peer: str, cfg: BenchConfig, inputs: peer_setup.PeerInputs) -> None:
    t0 = time.perf_counter()
    try:
        runner = start_peer(peer, cfg, inputs)
    except PeerError as e:
        plan.skipped.append({"runtime": peer, "method": "*", "reason": str(e)})
        return
    plan.runners[peer] = runner
    plan.runtimes[peer] = {
        "version": runner.version,
        "python": runner.python,
        "load_rss_mb": _mb(runner.load_rss_kb),
        "load_s": runner.load_s,
        "setup_s": time.perf_counter() - t0,
        "threads": cfg.threads,
        "num_draft_tokens": runner.num_draft_tokens,
    }
    plan.skipped += [
        {"runtime": peer, "method": m, "reason": r}
        for m, r in runner.methods.items()
        if r and m in _wanted(cfg)
    ]


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024


def run(
    cfg: BenchConfig,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark; returns the results (see `results_dict`)."""
    t_start = time.perf_counter()
    load_start = machine.load_average()
    plan = make_plan(cfg, progress)
    try:
        if on_plan:
            on_plan(plan)
        loop = _Loop(cfg, plan, progress)
        if cfg.warmup:
            loop.warm_up()
        records = loop.run_all()
    finally:
        for runner in plan.runners.values():
            runner.close()
    metrics.mark_identity(records, REFERENCE)
    summary = metrics.summarize(records, plan.methods, REFERENCE)
    res = results_dict(cfg, plan, records, summary, loop.notes, time.perf_counter() - t_start)
    res["machine"]["load_average_start"] = load_start
    return res


class _Loop:
    """Runs the plan: warm-up, then every question, turn and method."""

    def __init__(self, cfg: BenchConfig, plan: Plan, progress: Progress | None) -> None:
        self.cfg, self.plan, self.progress = cfg, plan, progress
        self.session = plan.runners["edgespec"].session
        self.notes: list[dict[str, Any]] = []
        self.failed: dict[tuple[str, str], str] = {}  # method -> why it stopped mid-run
        # every record as soon as it exists, so that a crash or Ctrl-C loses nothing measured
        cfg.out.mkdir(parents=True, exist_ok=True)
        self.partial = cfg.out / PARTIAL_RECORDS
        self.partial.write_text("", encoding="utf-8")

    def _fits(self, ids: list[int]) -> bool:
        return len(ids) + self.cfg.max_new_tokens <= self.session.capacity

    def warm_up(self) -> None:
        """One short generation per method, not recorded (first-call allocations, caches)."""
        msgs = [{"role": "user", "content": self.plan.questions[0].turns[0]}]
        ids = self.session.encode(msgs)
        for runtime, method in self.plan.methods:
            if self.progress:
                self.progress(f"warm-up {runtime}/{method}")
            try:
                self._generate((runtime, method), ids, msgs, WARMUP_TOKENS)
            except PeerRequestError:
                pass  # the measured requests will report it

    def run_all(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for qi, q in enumerate(self.plan.questions):
            records += self._question(q, _rotate(self.plan.methods, qi))
        return records

    def _question(self, q: Question, order: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every turn of `q` for every method; a method without an answer (its request failed)
        leaves the rest of this question, since its conversation cannot go on."""
        out: list[dict[str, Any]] = []
        history: dict[tuple[str, str], list[dict[str, str]]] = {m: [] for m in order}
        for t, user in enumerate(q.turns):
            convs = {m: [*history[m], {"role": "user", "content": user}] for m in order}
            ids = {m: self.session.encode(c) for m, c in convs.items()}
            if not all(self._fits(v) for v in ids.values()):  # keep the methods paired
                self._skip_turns(q, t, order, max(len(v) for v in ids.values()))
                break
            answered = []
            for pos, m in enumerate(order):
                rec = self._record(q, t, m, pos, ids[m], convs[m])
                if rec is None:
                    continue
                out.append(rec)
                answered.append(m)
                with open(self.partial, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
                text = self.session.tokenizer.decode(rec["tokens"], skip_special_tokens=True)
                history[m] = [*convs[m], {"role": "assistant", "content": text}]
            order = answered
        return out

    def _skip_turns(self, q: Question, t: int, order: list[Any], longest: int) -> None:
        need = f"prompt of {longest} tokens + {self.cfg.max_new_tokens} new tokens"
        self.notes.append(
            {
                "question_id": q.question_id,
                "turns_skipped": list(range(t + 1, len(q.turns) + 1)),
                "reason": f"{need} exceeds the context capacity {self.session.capacity}",
            }
        )
        if self.progress:
            for _ in range((len(q.turns) - t) * len(order)):
                self.progress(f"skip q{q.question_id}")

    def _record(
        self,
        q: Question,
        t: int,
        m: tuple[str, str],
        pos: int,
        ids: list[int],
        conv: list[dict[str, str]],
    ) -> dict[str, Any] | None:
        if self.progress:
            self.progress(f"{q.group} q{q.question_id} turn {t + 1} {m[0]}/{m[1]}")
        try:
            res = self._generate(m, ids, conv, self.cfg.max_new_tokens)
        except PeerRequestError as e:  # this answer is missing; the method goes on
            self.notes.append(
                {
                    "question_id": q.question_id,
                    "turns_skipped": [t + 1],
                    "method": "/".join(m),
                    "reason": f"failed: {e}",
                }
            )
            return None
        return None if res is None else _make_record(q, t, m, pos, len(ids), res)

    def _generate(
        self, m: tuple[str, str], ids: list[int], conv: Any, max_new: int
    ) -> dict[str, Any] | None:
        if m in self.failed:
            return None
        try:
            return self.plan.runners[m[0]].generate(m[1], ids, conv, max_new)
        except PeerRequestError:
            raise
        except PeerError as e:  # the worker is gone: no more answers from this method
            self.failed[m] = str(e)
            self.plan.skipped.append(
                {"runtime": m[0], "method": m[1], "reason": f"failed during the run: {e}"}
            )
            return None


def _rotate(methods: list[Any], i: int) -> list[Any]:
    k = i % len(methods)
    return methods[k:] + methods[:k]


def _make_record(
    q: Question, t: int, m: tuple[str, str], pos: int, n_prompt: int, res: dict[str, Any]
) -> dict[str, Any]:
    tokens = [int(x) for x in res["tokens"]]
    n, total, ttft, steps = len(tokens), float(res["total_s"]), float(res["ttft_s"]), res["steps"]
    decode_s = total - ttft
    rec = {
        "question_id": q.question_id,
        "category": q.category,
        "group": q.group,
        "turn": t + 1,
        "runtime": m[0],
        "method": m[1],
        "order": pos,
        "prompt_tokens": n_prompt,
        "new_tokens": n,
        "finish_reason": res["finish_reason"],
        "total_s": total,
        "ttft_s": ttft,
        "tokens_per_s": n / total if total > 0 else 0.0,
        "decode_tokens_per_s": (n - 1) / decode_s if n > 1 and decode_s > 0 else None,
        "steps": int(steps),
        "drafted": res.get("drafted"),
        "accepted": res.get("accepted"),
        "mean_accepted_tokens": (n - 1) / steps if steps else None,
        "peak_rss_kb": res.get("peak_rss_kb"),
        "rss_kb": res.get("rss_kb"),
        "peak_rss_reset": res.get("peak_rss_reset"),
        "tokens": tokens,
    }
    for extra in ("engine", "peer_stats"):
        if extra in res:
            rec[extra] = res[extra]
    return rec


def results_dict(
    cfg: BenchConfig,
    plan: Plan,
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    notes: list[dict[str, Any]],
    elapsed_s: float,
) -> dict[str, Any]:
    conf = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return {
        "schema": "edgespec-bench/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": elapsed_s,
        "config": conf,
        "machine": machine.describe(cfg.threads),
        "reference": metrics.method_key(*REFERENCE),
        "runtimes": plan.runtimes,
        "methods": [metrics.method_key(*m) for m in plan.methods],
        "skipped": plan.skipped,
        "notes": notes,
        "questions": [
            {
                "question_id": q.question_id,
                "category": q.category,
                "group": q.group,
                "turns": len(q.turns),
            }
            for q in plan.questions
        ],
        "summary": summary,
        "records": records,
    }
