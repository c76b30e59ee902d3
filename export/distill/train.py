"""Training the draft head on the teacher's features (EAGLE loss), deterministic and resumable.

Per head position p (inputs t_{p+1}, f_p): SmoothL1(f^_{p+1}, f_{p+1}) + ce_weight * CE(logits,
t_{p+2} as a draft id; targets outside the draft vocabulary ignored), over the positions whose
prediction is drafted at run time (p >= P - 1: after the prompt). The inputs get uniform noise.
With unroll_weight > 0 a second step feeds the head's own predictions f^ (shifted by one) as
features, attending to the first step's keys of earlier positions, with its own loss term.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data import Corpus
from .head import EagleHead, KeepKV, unroll_mask

CHECKPOINT = "head-checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    lr: float = 6e-4
    min_lr_ratio: float = 0.05
    warmup: int = 20
    weight_decay: float = 0.0
    batch_tokens: int = 4096  # padded positions per batch
    noise: float = 0.05  # uniform noise amplitude, relative to the features' RMS
    ce_weight: float = 0.1
    unroll_weight: float = 0.5  # 0 = no second step
    ckpt_every: int = 50


def make_batches(lens: np.ndarray, indices: np.ndarray, batch_tokens: int, rng) -> list[list[int]]:
    """Sequence batches of similar lengths, <= batch_tokens padded positions each (a longer
    sequence gets a batch of its own); order shuffled with `rng` (numpy Generator)."""
    order = rng.permutation(indices)  # [S]
    batches: list[list[int]] = []
    for start in range(0, len(order), 64):
        chunk = sorted(order[start : start + 64].tolist(), key=lambda i: -int(lens[i]))
        cur: list[int] = []
        for i in chunk:
            if cur and (len(cur) + 1) * int(lens[cur[0]]) > batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
    return [batches[i] for i in rng.permutation(len(batches))]


def loss_positions(length: int, prompt_len: int) -> tuple[int, int]:
    """[lo, hi) head positions with a loss for a sequence of T=length tokens, P=prompt_len:
    p runs over 0..T-3 (t_{p+2} must exist); drafting uses p >= P-1."""
    return max(prompt_len - 1, 0), length - 2


def collate(corpus: Corpus, seqs: list[int], inv: np.ndarray) -> dict[str, torch.Tensor]:
    """Padded tensors of a batch; inv: int64 [V_target] target id -> draft id (-1: outside)."""
    n = max(int(corpus.lens[i]) for i in seqs) - 2
    b, h = len(seqs), corpus.feats.shape[1]
    ids = np.zeros((b, n), np.int64)  # [B, n] t_{p+1}
    f_in = np.zeros((b, n, h), np.float32)  # [B, n, H] f_p
    f_tgt = np.zeros((b, n, h), np.float32)  # [B, n, H] f_{p+1}
    tok = np.full((b, n), -1, np.int64)  # [B, n] draft id of t_{p+2}
    mask = np.zeros((b, n), bool)  # [B, n] loss positions
    for row, i in enumerate(seqs):
        t_ids, feats, p = corpus.sequence(i)  # [T], [T-1, H]
        m = len(t_ids) - 2
        ids[row, :m] = t_ids[1 : m + 1]
        f_in[row, :m] = feats[:m]
        f_tgt[row, :m] = feats[1 : m + 1]
        tok[row, :m] = inv[t_ids[2:]]
        lo, hi = loss_positions(len(t_ids), p)
        mask[row, lo:hi] = True
    names = ("ids", "f_in", "f_tgt", "tok", "mask")
    return {
        k: torch.from_numpy(v) for k, v in zip(names, (ids, f_in, f_tgt, tok, mask), strict=True)
    }


def _step_loss(head: EagleHead, f_hat, batch, mask, ce_weight: float) -> tuple[torch.Tensor, ...]:
    """(loss, correct top-1 count, positions) of one step over `mask` [B, n]."""
    sel = f_hat[mask]  # [K, H]
    tok = batch["tok"][mask]  # [K]
    logits = head.logits(sel)  # [K, V_draft]
    feat_loss = F.smooth_l1_loss(sel, batch["f_tgt"][mask])
    known = (tok >= 0).sum().clamp(min=1)
    ce = F.cross_entropy(logits, tok.clamp(min=0), reduction="none")  # [K]
    ce = (ce * (tok >= 0)).sum() / known
    correct = (logits.argmax(-1) == tok).sum()
    return feat_loss + ce_weight * ce, correct, torch.tensor(sel.shape[0])


def batch_loss(head: EagleHead, batch: dict, tc: TrainConfig, noise_abs: float, gen) -> tuple:
    """(total loss, [(correct, positions) per step]) for one batch; gen: torch Generator for
    the input noise (None: no noise, evaluation)."""
    f_in = batch["f_in"]  # [B, n, H]
    if gen is not None and noise_abs > 0:
        f_in = f_in + (torch.rand(f_in.shape, generator=gen) * 2 - 1) * noise_abs  # [B, n, H]
    kv = KeepKV() if tc.unroll_weight > 0 else None
    f1 = head.features(batch["ids"], f_in, None, kv)  # [B, n, H]
    loss, c1, n1 = _step_loss(head, f1, batch, batch["mask"], tc.ce_weight)
    stats = [(c1, n1)]
    if kv is not None:
        n = f1.shape[1]
        prev = torch.cat([batch["f_in"][:, :1], f1[:, :-1]], 1)  # [B, n, H]: f^_p from p-1
        f2 = head.features(batch["ids"], prev, unroll_mask(n), kv)  # [B, n, H]
        mask2 = batch["mask"].clone()  # [B, n]
        mask2[:, 0] = False  # position 0 has no predicted feature
        if mask2.any():
            l2, c2, n2 = _step_loss(head, f2, batch, mask2, tc.ce_weight)
            loss = loss + tc.unroll_weight * l2
            stats.append((c2, n2))
    return loss, stats


def lr_factor(step: int, total: int | None, tc: TrainConfig) -> float:
    """Linear warmup, then cosine to min_lr_ratio over `total` steps (flat while unknown)."""
    warm = min(1.0, (step + 1) / max(1, tc.warmup))
    if not total:
        return warm
    progress = min(1.0, step / max(1, total))
    return warm * (
        tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


@torch.no_grad()
def evaluate(head: EagleHead, corpus: Corpus, idx: np.ndarray, inv, tc: TrainConfig) -> dict:
    """Top-1 accuracy of step 1 (true features) and step 2 (own features) on sequences idx."""
    head.eval()
    hits = [[0, 0], [0, 0]]
    for seqs in make_batches(corpus.lens, idx, tc.batch_tokens, np.random.default_rng(0)):
        _, stats = batch_loss(head, collate(corpus, seqs, inv), tc, 0.0, None)
        for k, (c, n) in enumerate(stats):
            hits[k][0] += int(c)
            hits[k][1] += int(n)
    head.train()
    return {f"acc{k + 1}": (c / n if n else 0.0) for k, (c, n) in enumerate(hits)} | {
        "positions": hits[0][1]
    }


def feature_rms(corpus: Corpus, max_rows: int = 20000) -> float:
    rows = corpus.feats[: min(len(corpus.feats), max_rows)].astype(np.float32)  # [r, H]
    return float(np.sqrt(np.mean(rows**2)))


def save_checkpoint(path: Path, head: EagleHead, opt, state: dict, gen) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {"model": head.trainable_state(), "optimizer": opt.state_dict(), "state": dict(state),
         "torch_rng": gen.get_state()},
        tmp,
    )  # fmt: skip
    os.replace(tmp, path)


def load_checkpoint(path: Path, head: EagleHead, opt, key: str, gen) -> dict:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if ck["state"].get("key") != key:
        raise ValueError(
            f"checkpoint {path} was made with other data or settings; run without --resume"
        )
    head.load_state_dict(ck["model"], strict=False)
    opt.load_state_dict(ck["optimizer"])
    gen.set_state(ck["torch_rng"])
    return ck["state"]


def config_key(tc: TrainConfig, data_key: str, token_map: np.ndarray, init: str) -> str:
    import hashlib

    raw = repr((asdict(tc), data_key, token_map.tobytes(), init)).encode()
    return hashlib.sha1(raw).hexdigest()[:16]


@dataclass
class RunLimits:
    max_steps: int | None  # fixed step count (deterministic); None: as many as time allows
    deadline: float  # time.monotonic() at which training stops
    resume: bool
    progress: bool


def _fresh_state(key: str, limits: RunLimits) -> dict:
    return {"key": key, "step": 0, "total": limits.max_steps, "epoch": 0, "batch": 0,
            "positions": 0, "acc1": None, "acc2": None}  # fmt: skip


def _ema(old: float | None, new: float, rate: float = 0.05) -> float:
    return new if old is None else old + rate * (new - old)


def train(
    head: EagleHead,
    corpus: Corpus,
    train_idx: np.ndarray,
    inv: np.ndarray,
    tc: TrainConfig,
    key: str,
    ckpt: Path,
    limits: RunLimits,
) -> dict:
    """Train until limits.max_steps (or the estimated step count that fits before the deadline);
    checkpoints every tc.ckpt_every steps and at the end. Returns the final training state."""
    from tqdm import tqdm

    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    gen = torch.Generator().manual_seed(tc.seed)
    state = _fresh_state(key, limits)
    if limits.resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from: {ckpt}")
        state = load_checkpoint(ckpt, head, opt, key, gen)
        state["total"] = limits.max_steps or state["total"]
    noise_abs = tc.noise * feature_rms(corpus)
    batches = make_batches(corpus.lens, train_idx, tc.batch_tokens, _epoch_rng(tc, state["epoch"]))
    bar = tqdm(total=state["total"], initial=state["step"], desc="distill train",
               disable=not limits.progress)  # fmt: skip
    head.train()
    t_first, run_steps = 0.0, 0  # the first step of a run (kernel warm-up) is not timed
    while state["total"] is None or state["step"] < state["total"]:
        now = time.monotonic()
        per_step = (now - t_first) / (run_steps - 1) if run_steps > 1 else 0.0
        if now + per_step >= limits.deadline:
            break
        if state["batch"] >= len(batches):
            state["epoch"], state["batch"] = state["epoch"] + 1, 0
            batches = make_batches(
                corpus.lens, train_idx, tc.batch_tokens, _epoch_rng(tc, state["epoch"])
            )
        _train_step(
            head, opt, params, corpus, batches[state["batch"]], inv, tc, noise_abs, gen, state
        )
        run_steps += 1
        if run_steps == 1:
            t_first = time.monotonic()
        if state["total"] is None and run_steps == 6:  # schedule length from 5 timed steps
            per_step = (time.monotonic() - t_first) / 5
            state["total"] = state["step"] + int((limits.deadline - time.monotonic()) / per_step)
            bar.total = state["total"]
        bar.update(1)
        bar.set_postfix(loss=f"{state['loss']:.3f}", acc1=f"{state['acc1']:.2f}",
                        acc2=f"{state['acc2'] or 0:.2f}", epoch=state["epoch"])  # fmt: skip
        if state["step"] % tc.ckpt_every == 0:
            save_checkpoint(ckpt, head, opt, state, gen)
    bar.close()
    save_checkpoint(ckpt, head, opt, state, gen)
    return state


def _epoch_rng(tc: TrainConfig, epoch: int):
    return np.random.default_rng([tc.seed, epoch])


def _train_step(head, opt, params, corpus, seqs, inv, tc, noise_abs, gen, state) -> None:
    for g in opt.param_groups:
        g["lr"] = tc.lr * lr_factor(state["step"], state["total"], tc)
    loss, stats = batch_loss(head, collate(corpus, seqs, inv), tc, noise_abs, gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    state["step"] += 1
    state["batch"] += 1
    state["positions"] += int(stats[0][1])
    state["loss"] = _ema(state.get("loss"), float(loss.detach()))
    for k, (c, n) in enumerate(stats):
        state[f"acc{k + 1}"] = _ema(state[f"acc{k + 1}"], int(c) / max(1, int(n)))
