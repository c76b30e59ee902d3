"""Self-distillation data: the teacher's greedy answers to seed prompts and its final-norm
features, written as resumable .npz shards, and the reduced draft vocabulary.

Shard k is `shard-0000k.npz` (ids int32 [N], feats float16 [M, H], lens int32 [S], prompt_lens
int32 [S]; sequence i has T_i tokens and T_i - 1 feature rows: the feature of its last token is
never needed) plus `shard-0000k.json` (the prompts, the queue state after the batch, seconds). The
json is written last: a shard without it is incomplete and is generated again.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import seeds

FOLLOWUP_RATE = 0.12  # share of answered prompts that get a second user turn
BASE_PROMPTS = 6000  # the seed pool; a 30-minute run answers ~1500 prompts


def data_key(teacher: Path, seed: int, max_new_tokens: int, batch_size: int, dtype: str) -> str:
    """Cache key of a data directory: same teacher file, seed and generation settings."""
    st = teacher.stat()
    raw = json.dumps(
        [str(teacher), st.st_size, seed, max_new_tokens, batch_size, dtype, seeds.SEEDS_VERSION]
    )
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def _shard(data_dir: Path, k: int, ext: str) -> Path:
    return data_dir / f"shard-{k:05d}.{ext}"


def complete_shards(data_dir: Path) -> int:
    """Number of leading complete shards (npz + json)."""
    k = 0
    while _shard(data_dir, k, "json").is_file() and _shard(data_dir, k, "npz").is_file():
        k += 1
    return k


def _save_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def write_shard(data_dir: Path, k: int, seqs: list[dict], meta: dict) -> None:
    """seqs: {"ids": int list [T], "feats": float16 [T-1, H], "prompt_len": int}."""
    ids = np.concatenate([np.asarray(s["ids"], np.int32) for s in seqs])  # [N]
    feats = np.concatenate([s["feats"] for s in seqs]).astype(np.float16)  # [M, H]
    lens = np.array([len(s["ids"]) for s in seqs], np.int32)  # [S]
    plens = np.array([s["prompt_len"] for s in seqs], np.int32)  # [S]
    arrays = dict(ids=ids, feats=feats, lens=lens, prompt_lens=plens)
    _save_atomic(_shard(data_dir, k, "npz"), lambda f: np.savez(f, **arrays))
    body = json.dumps(meta, ensure_ascii=False).encode()
    _save_atomic(_shard(data_dir, k, "json"), lambda f: f.write(body))


def read_meta(data_dir: Path, k: int) -> dict:
    return json.loads(_shard(data_dir, k, "json").read_text(encoding="utf-8"))


@dataclass
class Corpus:
    """All sequences of a data directory, concatenated."""

    ids: np.ndarray  # int32 [N]: tokens of every sequence
    feats: np.ndarray  # float16 [M, H]: T_i - 1 feature rows per sequence
    lens: np.ndarray  # int32 [S]: T_i
    prompt_lens: np.ndarray  # int32 [S]: P_i (response = positions P_i .. T_i - 1)

    def __post_init__(self) -> None:
        self.tok_off = np.concatenate([[0], np.cumsum(self.lens, dtype=np.int64)])  # [S+1]
        self.feat_off = np.concatenate([[0], np.cumsum(self.lens - 1, dtype=np.int64)])  # [S+1]

    def __len__(self) -> int:
        return len(self.lens)

    def sequence(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(ids int32 [T], feats float16 [T-1, H], prompt length P)."""
        ids = self.ids[self.tok_off[i] : self.tok_off[i + 1]]  # [T]
        feats = self.feats[self.feat_off[i] : self.feat_off[i + 1]]  # [T-1, H]
        return ids, feats, int(self.prompt_lens[i])

    def response_tokens(self, indices: np.ndarray | None = None) -> np.ndarray:
        """int32 [R]: the answer tokens (EOS included) of the given sequences."""
        idx = range(len(self)) if indices is None else indices
        parts = [self.ids[self.tok_off[i] + self.prompt_lens[i] : self.tok_off[i + 1]] for i in idx]
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def load_corpus(data_dir: Path, min_response: int = 2) -> Corpus:
    """Every complete shard; sequences with fewer than `min_response` answer tokens dropped."""
    n_shards = complete_shards(data_dir)
    if not n_shards:
        raise ValueError(f"no distillation data in {data_dir}")
    ids, feats, lens, plens = [], [], [], []
    for k in range(n_shards):
        with np.load(_shard(data_dir, k, "npz")) as z:
            shard = {name: z[name] for name in z.files}  # each array read once
        keep = shard["lens"] - shard["prompt_lens"] >= min_response  # [S]
        ids.append(shard["ids"][np.repeat(keep, shard["lens"])])  # [N_kept]
        feats.append(shard["feats"][np.repeat(keep, shard["lens"] - 1)])  # [M_kept, H]
        lens.append(shard["lens"][keep])  # [S_kept]
        plens.append(shard["prompt_lens"][keep])  # [S_kept]
    lens_all = np.concatenate(lens).astype(np.int32)  # [S]
    if not len(lens_all):
        raise ValueError(f"no usable answers in {data_dir} (all shorter than {min_response})")
    return Corpus(
        np.concatenate(ids), np.concatenate(feats), lens_all, np.concatenate(plens).astype(np.int32)
    )


def select_draft_vocab(
    response_ids: np.ndarray, target_vocab: int, size: int, eos_ids: list[int]
) -> np.ndarray:
    """int32 [min(size, target_vocab)]: the most frequent answer tokens (ties by lower id), the
    EOS ids always included, sorted by target id (draft id -> target id)."""
    size = min(size, target_vocab)
    forced = sorted({int(e) for e in eos_ids if 0 <= e < target_vocab})
    if size < len(forced):
        raise ValueError(f"draft vocabulary {size} is smaller than the {len(forced)} EOS ids")
    counts = np.bincount(np.asarray(response_ids, np.int64), minlength=target_vocab)  # [V]
    order = np.lexsort((np.arange(target_vocab), -counts))  # by count desc, then id asc
    chosen = set(forced)
    for tid in order:
        if len(chosen) >= size:
            break
        chosen.add(int(tid))
    return np.array(sorted(chosen), dtype=np.int32)


def draft_index(token_map: np.ndarray, target_vocab: int) -> np.ndarray:
    """int64 [target_vocab]: target id -> draft id, -1 where outside the draft vocabulary."""
    inv = np.full(target_vocab, -1, np.int64)
    inv[token_map] = np.arange(len(token_map))
    return inv


# -- generation ----------------------------------------------------------------------------------


def generate_batch(model: Any, prompts: list[list[int]], text: Any, max_new_tokens: int) -> list:
    """Greedy answers of the teacher, left-padded batch; features captured from the final norm
    during generation (the prefill gives the prompt's, each step the last token's). A row that
    has emitted EOS leaves the batch (its KV rows are dropped), so a batch costs what its
    answers need rather than its longest answer times its size (~20% faster on SmolLM2). The
    KV cache grows in place and a decode step's attention reads it there (kv_cache.py)."""
    import torch

    from .kv_cache import growing_cache, use_decode_attention

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), text.pad_id, dtype=torch.long)  # [B, W]
    mask = torch.zeros((len(prompts), width), dtype=torch.long)  # [B, W]
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    use_decode_attention(model)
    feats: list = []  # the last forward's final-norm output: [b, n, H]
    hook = model.model.norm.register_forward_hook(
        lambda m, a, out: feats.append(out.detach().float())
    )
    try:
        with torch.inference_mode():
            pos = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, W] positions, pads at 0
            cache = growing_cache(model.config.num_hidden_layers)
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                        past_key_values=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
            prefill = feats.pop().numpy()  # [B, W, H]
            gen, steps = _decode(model, cache, mask, out.logits[:, -1].argmax(-1), feats, text,
                                 max_new_tokens)  # fmt: skip
    finally:
        hook.remove()
    return [
        _sequence(p, np.array(gen[i]), prefill[i], steps[i], text.eos_ids)
        for i, p in enumerate(prompts)
    ]


def _decode(model: Any, cache: Any, mask, nxt, feats: list, text: Any, max_new_tokens: int):
    """Greedy steps after the prefill; nxt int64 [B]: each row's first answer token. Returns
    per row its answer ids (up to and including EOS) and float32 [R-1, H] step features."""
    import torch

    b, hidden = len(nxt), model.config.hidden_size
    eos = torch.tensor(list(text.eos_ids))  # [E]
    rows = torch.arange(b)  # [b] original row of each batch row still generating
    gen: list[list[int]] = [[] for _ in range(b)]
    steps: list[list[np.ndarray]] = [[] for _ in range(b)]  # [H] rows
    for step in range(max_new_tokens):
        for r, t in zip(rows.tolist(), nxt.tolist(), strict=True):
            gen[r].append(t)
        keep = (~torch.isin(nxt, eos)).nonzero().squeeze(1)  # [b'] rows without EOS yet
        if step == max_new_tokens - 1 or len(keep) == 0:
            break
        if len(keep) < len(rows):
            cache.batch_select_indices(keep)
            mask, rows, nxt = mask[keep], rows[keep], nxt[keep]
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype)], 1)  # [b', W+s+1]
        out = model(input_ids=nxt[:, None], attention_mask=mask,
                    position_ids=mask.sum(-1, keepdim=True) - 1, past_key_values=cache,
                    use_cache=True)  # fmt: skip
        f = feats.pop().numpy()  # [b', 1, H]
        for j, r in enumerate(rows.tolist()):
            steps[r].append(f[j, 0])
        nxt = out.logits[:, -1].argmax(-1)  # [b']
    arrays = [np.array(s, np.float32).reshape(len(s), hidden) for s in steps]  # [R-1, H]
    return gen, arrays


def _sequence(prompt: list[int], gen: np.ndarray, prefill: np.ndarray, steps, eos: list) -> dict:
    """One row: answer up to and including the first EOS; T - 1 feature rows."""
    hits = np.flatnonzero(np.isin(gen, eos))  # [k]
    r = int(hits[0]) + 1 if hits.size else len(gen)
    p = len(prompt)
    feats = np.concatenate([prefill[len(prefill) - p :], steps[: r - 1]])  # [P + R - 1, H]
    return {
        "ids": list(prompt) + gen[:r].tolist(),
        "feats": feats.astype(np.float16),
        "prompt_len": p,
        "finished": bool(hits.size),
    }


@dataclass
class GenSettings:
    seed: int
    batch_size: int
    max_new_tokens: int
    capacity: int  # prompt + answer must fit the target's (and head's) KV cache
    max_prompts: int | None  # stop after this many answered prompts (None: time only)
    budget_s: float  # generation seconds in total, this run and earlier ones
    deadline: float  # time.monotonic() by which this run stops generating


def _next_batch(state: dict, base: list[dict], text: Any, gs: GenSettings, n: int) -> list:
    """Up to n (prompt, ids) pairs of similar lengths (left padding costs a full prefill per
    pad): a batch of queued derived prompts (long: passages, earlier turns) once n are queued
    or the base prompts are used up, else a batch of base prompts. Prompts that leave no room
    for an answer are skipped."""
    limit = gs.capacity - gs.max_new_tokens
    pending = state["pending"]
    if len(pending) >= n or state["cursor"] >= len(base):
        chosen = [pending.pop(0) for _ in range(min(n, len(pending)))]
    else:
        chosen = base[state["cursor"] : state["cursor"] + n]
        state["cursor"] += len(chosen)
    pairs = [(p, text.encode_chat(p["messages"])) for p in chosen]
    return [(p, ids) for p, ids in pairs if len(ids) <= limit]


def _derive(state: dict, batch: list, seqs: list[dict], text: Any, rng: random.Random) -> None:
    """Queue second-round prompts from this batch's answers (passages, follow-up turns)."""
    for (p, _), s in zip(batch, seqs, strict=True):
        if not s["finished"]:
            continue
        answer = text.decode(s["ids"][s["prompt_len"] :])
        if p.get("derive") == "passage":
            passage = seeds.clean_passage(answer)
            if passage:
                state["pending"].append(seeds.passage_task(passage, p.get("topic"), rng))
        elif p["kind"] != "followup" and rng.random() < FOLLOWUP_RATE:
            state["pending"].append(seeds.followup_task(p["messages"], answer, rng))


def _batch_size(state: dict, gs: GenSettings, last: float) -> int:
    """Prompts in the next batch; 0 when the prompt cap or the time budget is reached (a batch
    is started when at least half of one, going by the last batch's time, still fits)."""
    over = state["seconds"] + 0.5 * last >= gs.budget_s
    late = time.monotonic() + 0.5 * last >= gs.deadline
    if over or late:
        return 0
    left = gs.batch_size if gs.max_prompts is None else gs.max_prompts - state["prompts"]
    return max(0, min(gs.batch_size, left))


def generate_data(model: Any, text: Any, data_dir: Path, gs: GenSettings, progress: bool) -> dict:
    """Answer prompts batch by batch until the budget is spent; resumes after the last complete
    shard. Returns {"shards", "prompts", "tokens", "seconds", "new_seconds"}."""
    from tqdm import tqdm

    data_dir.mkdir(parents=True, exist_ok=True)
    base = seeds.base_prompts(gs.seed, BASE_PROMPTS)
    k = complete_shards(data_dir)
    state = {"cursor": 0, "pending": [], "prompts": 0, "tokens": 0, "seconds": 0.0}
    if k:
        state.update(read_meta(data_dir, k - 1)["state"])
    spent_here, last = 0.0, 0.0
    bar = tqdm(total=round(gs.budget_s), initial=min(round(state["seconds"]), round(gs.budget_s)),
               desc="distill data", unit="s", disable=not progress)  # fmt: skip
    while (n := _batch_size(state, gs, last)) > 0:
        batch = _next_batch(state, base, text, gs, n)
        if not batch:  # all too long for the capacity
            if state["cursor"] >= len(base) and not state["pending"]:
                break
            continue
        t = time.monotonic()
        seqs = generate_batch(model, [ids for _, ids in batch], text, gs.max_new_tokens)
        _derive(state, batch, seqs, text, random.Random(f"edgespec-distill:{gs.seed}:derive:{k}"))
        last = time.monotonic() - t
        spent_here += last
        state["prompts"] += len(seqs)
        state["tokens"] += sum(len(s["ids"]) for s in seqs)
        state["seconds"] += last
        meta = {"prompts": [p for p, _ in batch], "seconds": last, "state": state}
        write_shard(data_dir, k, seqs, meta)
        k += 1
        bar.update(min(round(last), max(0, bar.total - bar.n)))
        answered = sum(len(s["ids"]) - s["prompt_len"] for s in seqs)
        bar.set_postfix(
            prompts=state["prompts"], tokens=state["tokens"], tok_s=f"{answered / last:.0f}"
        )
    bar.close()
    return {
        "shards": k,
        "prompts": state["prompts"],
        "tokens": state["tokens"],
        "seconds": state["seconds"],
        "new_seconds": spent_here,
    }
