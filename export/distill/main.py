"""`edgespec distill BUNDLE`: train a feature-level draft head (models.eagle) for a bundle's
target by self-distillation and add it to the bundle.

Steps: load the teacher (the checkpoint the target was exported from) and check it matches the
bundle's ONNX target; answer seed prompts greedily with it, keeping its final-norm features
(resumable shards in the work directory, reused by later runs); pick the draft vocabulary; train
the head (resumable checkpoints); measure held-out accuracy; write the head into the bundle.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import numpy as np

DATA_SHARE = 0.6  # of --minutes for generating data; the rest trains (more data beat more
# epochs in our SmolLM2 runs: the head overfits a few hundred thousand tokens)


def add_distill_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the distill options to `parser` (a subcommand parser or a fresh one)."""
    parser.add_argument("bundle", help="bundle directory written by `edgespec export`")
    parser.add_argument(
        "--teacher",
        metavar="PATH",
        help="the target's source checkpoint: GGUF file or HF model directory "
        "(default: the manifest's models.target.source_path)",
    )
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="time budget, data + training (default 30)"
    )
    parser.add_argument(
        "--draft-vocab", type=int, default=8192, help="draft vocabulary size (default 8192)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of prompts and training")
    parser.add_argument(
        "--work-dir",
        metavar="DIR",
        help="data shards and checkpoints (default: <bundle>/../.<bundle-name>.distill)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue training from the work dir's checkpoint"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing draft head")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    adv = parser.add_argument_group("advanced")
    adv.add_argument("--prompts", type=int, default=None, help="stop data after N answers")
    adv.add_argument("--max-new-tokens", type=int, default=200, help="answer length cap (200)")
    adv.add_argument("--gen-batch", type=int, default=48, help="teacher generation batch (48)")
    adv.add_argument("--steps", type=int, default=None, help="train exactly N steps")
    adv.add_argument("--batch-tokens", type=int, default=1024, help="positions per step (1024)")
    adv.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (3e-3)")
    adv.add_argument(
        "--init",
        choices=("random", "last-layer"),
        default="random",
        help="layer init: random, or the target's last layer (trained slower in our tests)",
    )
    adv.add_argument("--unroll-weight", type=float, default=0.5, help="step-2 loss weight (0.5)")
    adv.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float32"),
        default="auto",
        help="teacher generation / training autocast dtype (auto: bfloat16 where the CPU is "
        "faster with it)",
    )
    adv.add_argument(
        "--checkpoint-every", type=int, default=200, help="checkpoint every N steps (200)"
    )
    return parser


def _check_args(args: argparse.Namespace) -> None:
    positive = {
        "--minutes": args.minutes,
        "--draft-vocab": args.draft_vocab,
        "--max-new-tokens": args.max_new_tokens,
        "--gen-batch": args.gen_batch,
        "--batch-tokens": args.batch_tokens,
        "--checkpoint-every": args.checkpoint_every,
        "--prompts": 1 if args.prompts is None else args.prompts,
        "--steps": 1 if args.steps is None else args.steps,
    }
    for flag, value in positive.items():
        if value <= 0:
            raise ValueError(f"{flag} must be positive, got {value}")


def open_bundle(path: str, force: bool) -> tuple[Path, dict]:
    """(bundle dir, manifest); errors before any work is done."""
    bundle = Path(path).expanduser().absolute()
    manifest_path = bundle / "edgespec.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"not an edgespec bundle (no edgespec.json): {bundle}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    target = manifest["models"]["target"]
    if manifest["models"].get("eagle") is not None and not force:
        raise FileExistsError(f"bundle already has a draft head (use --force to replace): {bundle}")
    if "hidden_states" not in target.get("outputs", {}):
        raise ValueError(
            "the bundle's target has no hidden_states output (exported with --no-hidden-states): "
            "re-export it to add a draft head"
        )
    return bundle, manifest


def split_indices(n: int, seed: int, share: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) sequence indices: a seeded 5% of the sequences held out (>= 1 when
    there are at least 2)."""
    perm = np.random.default_rng([seed, 7]).permutation(n)  # [n]
    n_held = 0 if n < 2 else max(1, round(share * n))
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _teacher_and_data(args, bundle: Path, manifest: dict, t0: float, budget: float) -> dict:
    """Load + check the teacher, generate (or reuse) data; returns what training needs."""
    import torch

    from .data import GenSettings, data_key, generate_data
    from .teacher import (
        BundleText,
        arch_config,
        check_shapes,
        check_teacher,
        fast_dtype,
        frozen_tensors,
        load_teacher,
        teacher_path,
    )

    progress = not args.quiet
    target = manifest["models"]["target"]
    tpath = teacher_path(args.teacher, target)
    text = BundleText(bundle, manifest)
    model = load_teacher(tpath, progress)
    cfg = arch_config(model)
    check_shapes(cfg, target, str(tpath))
    agreement = check_teacher(model, bundle, target, text, str(tpath))
    work = Path(args.work_dir) if args.work_dir else bundle.parent / f".{bundle.name}.distill"
    frozen = frozen_tensors(model)  # float32 copies, before any dtype change
    dtype = fast_dtype(args.dtype)
    key = data_key(tpath, args.seed, args.max_new_tokens, args.gen_batch, dtype)
    gs = GenSettings(
        seed=args.seed,
        batch_size=args.gen_batch,
        max_new_tokens=args.max_new_tokens,
        capacity=int(target["capacity"]),
        max_prompts=args.prompts,
        budget_s=DATA_SHARE * budget,
        deadline=t0 + DATA_SHARE * budget,
    )
    summary = generate_data(
        model.to(getattr(torch, dtype)), text, work / f"data-{key}", gs, progress
    )
    del model
    gc.collect()
    return {"teacher": tpath, "agreement": agreement, "cfg": cfg, "text": text, "work": work,
            "data_key": key, "data": summary, "frozen": frozen, "dtype": dtype}  # fmt: skip


def _train_and_measure(args, ctx: dict, deadline: float) -> tuple:
    """Pick the vocabulary, train, evaluate; returns (cfg, head, token_map, record, corpus)."""
    from ..eagle_graph import head_config
    from .data import draft_index, load_corpus, select_draft_vocab
    from .head import EagleHead
    from .train import CHECKPOINT, RunLimits, TrainConfig, config_key, evaluate, train

    corpus = load_corpus(ctx["work"] / f"data-{ctx['data_key']}")
    train_idx, held_idx = split_indices(len(corpus), args.seed)
    v_target = ctx["cfg"].vocab_size
    answers = corpus.response_tokens(train_idx)  # [R]
    token_map = select_draft_vocab(answers, v_target, args.draft_vocab, ctx["text"].eos_ids)
    cfg = head_config(ctx["cfg"], len(token_map))
    head = EagleHead(cfg, ctx["frozen"], token_map, args.init, args.seed)
    tc = TrainConfig(
        seed=args.seed,
        lr=args.lr,
        batch_tokens=args.batch_tokens,
        unroll_weight=args.unroll_weight,
        ckpt_every=args.checkpoint_every,
        bf16=ctx["dtype"] == "bfloat16",
    )
    key = config_key(tc, ctx["data_key"], token_map, args.init)
    inv = draft_index(token_map, v_target)
    limits = RunLimits(args.steps, deadline, args.resume, not args.quiet)
    t = time.monotonic()
    state = train(head, corpus, train_idx, inv, tc, key, ctx["work"] / CHECKPOINT, limits)
    state["seconds"] = time.monotonic() - t
    held = evaluate(head, corpus, held_idx, inv, tc) if len(held_idx) else {}
    record = _record(args, ctx, corpus, train_idx, inv, state, held)
    record["draft_vocab"] = len(token_map)
    return cfg, head, token_map, record, corpus


def _record(args, ctx: dict, corpus, train_idx, inv: np.ndarray, state: dict, held: dict):
    """The manifest's models.eagle.training: how the head was made and how well it predicts."""
    answers = corpus.response_tokens(train_idx)  # [R]
    lo = np.maximum(corpus.prompt_lens[train_idx] - 1, 0)  # [S_train]
    train_positions = int(np.sum(corpus.lens[train_idx] - 2 - lo))  # loss positions per epoch
    return {
        "seed": args.seed,
        "teacher": str(ctx["teacher"]),
        "teacher_top1_agreement": round(ctx["agreement"], 4),
        "compute_dtype": ctx["dtype"],
        "n_prompts": len(corpus),
        "n_tokens": int(corpus.lens.sum()),
        "n_answer_tokens": int(len(corpus.response_tokens())),
        "draft_vocab_coverage": round(float(np.mean(inv[answers] >= 0)), 4),
        "init": args.init,
        "steps": state["step"],
        "epochs": round(state["positions"] / max(1, train_positions), 3),
        "train_top1": _round(state.get("acc1")),
        "train_top1_step2": _round(state.get("acc2")),
        "heldout_top1": _round(held.get("acc1")),
        "heldout_top1_step2": _round(held.get("acc2")),
        "heldout_positions": held.get("positions", 0),
        "data_seconds": round(ctx["data"]["seconds"], 1),
        "train_seconds": round(state["seconds"], 1),
        "max_new_tokens": args.max_new_tokens,
        "lr": args.lr,
        "batch_tokens": args.batch_tokens,
        "unroll_weight": args.unroll_weight,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def run_distill(args: argparse.Namespace) -> Path:
    """Distill a draft head for `args.bundle` and add it to the bundle; returns the bundle."""
    import torch

    from ..eagle_graph import write_eagle
    from .ngram_table import write_table

    t0 = time.monotonic()
    _check_args(args)
    bundle, manifest = open_bundle(args.bundle, args.force)
    torch.set_num_threads(os.cpu_count() or 1)
    budget = args.minutes * 60.0
    ctx = _teacher_and_data(args, bundle, manifest, t0, budget)
    reserve = min(90.0, 0.05 * budget)  # held-out evaluation and writing the head
    cfg, head, token_map, record, corpus = _train_and_measure(args, ctx, t0 + budget - reserve)
    record["wall_seconds"] = round(time.monotonic() - t0, 1)
    write_eagle(bundle, cfg, head.export_weights(), token_map, record, force=args.force)
    source = {k: record[k] for k in ("teacher", "seed", "n_prompts", "n_answer_tokens")}
    write_table(bundle, corpus, source)  # the same answers as prompt lookup's n-gram table
    if not args.quiet:
        print(_summary(bundle, record))
    return bundle


def _summary(bundle: Path, r: dict) -> str:
    held = "n/a" if r["heldout_top1"] is None else f"{r['heldout_top1']:.1%}"
    return (
        f"wrote {bundle / 'eagle'}: {r['n_prompts']} answers, {r['n_tokens']} tokens, "
        f"{r['steps']} steps ({r['epochs']} epochs), held-out top-1 {held}, "
        f"{r['wall_seconds']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = add_distill_arguments(argparse.ArgumentParser(prog="edgespec distill"))
    run_distill(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
