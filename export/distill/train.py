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
from dataclasses import asdict, dataclass, replace
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
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup: int = 20
    weight_decay: float = 0.0
    batch_tokens: int = 1024  # padded positions per batch (small batches: more steps)
    noise: float = 0.05  # uniform noise amplitude, relative to the features' RMS
    ce_weight: float = 1.0
    unroll_weight: float = 0.5  # 0 = no second step
    unroll_share: float = 0.25  # share of positions that get a second step (cost ~ share)
    ckpt_every: int = 200
    bf16: bool = True  # bfloat16 autocast for training steps (evaluation stays float32)


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


def _step_loss(head: EagleHead, f_hat, tok, f_tgt, mask, ce_weight: float) -> tuple:
    """(loss, correct top-1 count, positions) of one step: f_hat, f_tgt [B, m, H], tok and
    mask [B, m]."""
    sel = f_hat[mask]  # [K, H]
    tok = tok[mask]  # [K]
    logits = head.logits(sel)  # [K, V_draft]
    feat_loss = F.smooth_l1_loss(sel, f_tgt[mask])
    known = (tok >= 0).sum().clamp(min=1)
    ce = F.cross_entropy(logits, tok.clamp(min=0), reduction="none")  # [K]
    ce = (ce * (tok >= 0)).sum() / known
    correct = (logits.argmax(-1) == tok).sum()
    return feat_loss + ce_weight * ce, correct, torch.tensor(sel.shape[0])


def unroll_positions(n: int, share: float, gen) -> torch.Tensor:
    """int64 [m]: sorted head positions (1..n-1) that get a step 2; all of them when share >= 1
    or gen is None, else a random `share` of them."""
    if share >= 1.0 or gen is None:
        return torch.arange(1, n)
    m = max(1, int(share * (n - 1)))
    return torch.sort(torch.randperm(n - 1, generator=gen)[:m] + 1).values


def batch_loss(head: EagleHead, batch: dict, tc: TrainConfig, noise_abs: float, gen) -> tuple:
    """(total loss, [(correct, positions) per step]) for one batch; gen: torch Generator for
    the input noise and the step-2 positions (None: evaluation, no noise, every position).

    Step 2 at position i feeds the head's own f^_i (step-1 output at i-1) and attends to the
    step-1 keys of positions < i: what drafting a second token computes."""
    f_in = batch["f_in"]  # [B, n, H]
    if gen is not None and noise_abs > 0:
        f_in = f_in + (torch.rand(f_in.shape, generator=gen) * 2 - 1) * noise_abs  # [B, n, H]
    kv = KeepKV() if tc.unroll_weight > 0 else None
    f1 = head.features(batch["ids"], f_in, None, kv)  # [B, n, H]
    loss, c1, n1 = _step_loss(head, f1, batch["tok"], batch["f_tgt"], batch["mask"], tc.ce_weight)
    stats = [(c1, n1)]
    n = f1.shape[1]
    if kv is None or n < 2:
        return loss, stats
    pos = unroll_positions(n, tc.unroll_share, gen)  # [m]
    mask2 = batch["mask"][:, pos]  # [B, m]
    if not mask2.any():
        return loss, stats
    mask = unroll_mask(pos, n)  # [1, 1, m, n + m]
    f2 = head.features(batch["ids"][:, pos], f1[:, pos - 1], mask, kv, pos)  # [B, m, H]
    l2, c2, n2 = _step_loss(head, f2, batch["tok"][:, pos], batch["f_tgt"][:, pos], mask2,
                            tc.ce_weight)  # fmt: skip
    return loss + tc.unroll_weight * l2, stats + [(c2, n2)]


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
    tc = replace(tc, unroll_weight=1.0)  # always measure step 2 (own features), everywhere
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


class Pace:
    """This run's step timing: stops before a step would overrun the deadline and, when the
    step count is not fixed, sizes the LR schedule to the steps that fit (measured after 5
    steps, then every 25: other load on the machine changes the step time)."""

    def __init__(self, limits: RunLimits) -> None:
        self.limits = limits
        self.t_first = 0.0  # end of this run's first step (kernel warm-up, not timed)
        self.steps = 0

    def per_step(self) -> float:
        return (time.monotonic() - self.t_first) / (self.steps - 1) if self.steps > 1 else 0.0

    def out_of_time(self) -> bool:
        return time.monotonic() + self.per_step() >= self.limits.deadline

    def stepped(self, state: dict) -> None:
        self.steps += 1
        if self.steps == 1:
            self.t_first = time.monotonic()
        if self.limits.max_steps is None and self.steps >= 6 and (self.steps - 6) % 25 == 0:
            left = (self.limits.deadline - time.monotonic()) / self.per_step()
            state["total"] = state["step"] + int(left)


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
    batches = _epoch_batches(corpus, train_idx, tc, state["epoch"])
    bar = tqdm(total=state["total"], initial=state["step"], desc="distill train",
               disable=not limits.progress)  # fmt: skip
    head.train()
    pace = Pace(limits)
    while (state["total"] is None or state["step"] < state["total"]) and not pace.out_of_time():
        if state["batch"] >= len(batches):
            state["epoch"], state["batch"] = state["epoch"] + 1, 0
            batches = _epoch_batches(corpus, train_idx, tc, state["epoch"])
        seqs = batches[state["batch"]]
        _train_step(head, opt, params, corpus, seqs, inv, tc, noise_abs, gen, state)
        pace.stepped(state)
        bar.total = state["total"]
        bar.update(1)
        bar.set_postfix(loss=f"{state['loss']:.3f}", acc1=f"{state['acc1']:.2f}",
                        acc2=f"{state['acc2'] or 0:.2f}", epoch=state["epoch"])  # fmt: skip
        if state["step"] % tc.ckpt_every == 0:
            save_checkpoint(ckpt, head, opt, state, gen)
    bar.close()
    save_checkpoint(ckpt, head, opt, state, gen)
    return state


def _epoch_batches(corpus: Corpus, idx: np.ndarray, tc: TrainConfig, epoch: int) -> list:
    """The batches of one epoch, in an order fixed by (seed, epoch)."""
    return make_batches(corpus.lens, idx, tc.batch_tokens, np.random.default_rng([tc.seed, epoch]))


def _train_step(head, opt, params, corpus, seqs, inv, tc, noise_abs, gen, state) -> None:
    for g in opt.param_groups:
        g["lr"] = tc.lr * lr_factor(state["step"], state["total"], tc)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tc.bf16):
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
