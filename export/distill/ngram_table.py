"""The n-gram table: the target's own answers (the distillation corpus) as a lookup datastore.

Prompt lookup only finds what the conversation already contains. The target's answers to many
other prompts hold its stock phrases ("Here are some ...", list and code scaffolding); a table of
"after these n tokens the target most often wrote t" drafts them when the context has no match
(retrieval drafting, REST). The runtime's prompt lookup consults it (native/src/ngram_table.h);
greedy verification keeps the output exact whatever the table proposes.

Keys hash (n, t_1..t_n) with FNV-1a over 32-bit words (`ngram_key`, mirrored by the runtime):
h = offset; h = (h ^ n) * prime; for each t: h = (h ^ uint32(t)) * prime, all mod 2^64. A
collision can only cost a rejected draft.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..eagle_graph import _write_manifest
from ..writer import MANIFEST
from .data import Corpus

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
TABLE_PATH = "lookup/ngrams.npz"  # inside the bundle
N_MIN = 2  # shortest context an entry keys on (1 token predicts too little)
N_MAX = 4  # longest (longer keys repeat too rarely in a 1M-token corpus to matter)
MIN_HITS = 2  # an entry's top continuation was seen at least this often (singletons dropped)
_DTYPES = {"keys": np.uint64, "next": np.int32, "hits": np.uint32, "total": np.uint32}


def ngram_keys(windows: np.ndarray) -> np.ndarray:
    """uint64 [M]: the key of each row of int32 [M, n] token windows."""
    n = windows.shape[1]
    h = np.full(len(windows), FNV_OFFSET, np.uint64)  # [M]
    h = (h ^ np.uint64(n)) * FNV_PRIME
    for j in range(n):
        h = (h ^ windows[:, j].astype(np.uint32).astype(np.uint64)) * FNV_PRIME
    return h


def _pairs(corpus: Corpus, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys uint64 [M], next int32 [M]): every n tokens followed by an answer token, within
    one sequence (the window may reach back into the prompt)."""
    ids = corpus.ids  # int32 [N]
    starts = np.repeat(corpus.tok_off[:-1], corpus.lens)  # [N]: first position of each sequence
    answer = starts + np.repeat(corpus.prompt_lens, corpus.lens)  # [N]: its first answer position
    if len(ids) <= n:
        return np.zeros(0, np.uint64), np.zeros(0, np.int32)
    nxt = np.arange(n, len(ids))  # [N - n]: position of the predicted token
    ok = (nxt - n >= starts[nxt]) & (nxt >= answer[nxt])  # window inside, target in the answer
    nxt = nxt[ok]  # [M]
    windows = np.lib.stride_tricks.sliding_window_view(ids, n)[nxt - n]  # int32 [M, n]
    return ngram_keys(windows), ids[nxt]


def build_table(corpus: Corpus, n_min: int = N_MIN, n_max: int = N_MAX, min_hits: int = MIN_HITS):
    """{keys uint64 [E] ascending, next int32 [E], hits uint32 [E], total uint32 [E]}: for each
    context of n_min..n_max tokens seen in the corpus, its most frequent next answer token (ties:
    the lower id), how often it followed and how often the context occurred at all."""
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got {n_min}, {n_max}")
    parts = [_pairs(corpus, n) for n in range(n_min, n_max + 1)]
    keys = np.concatenate([p[0] for p in parts])  # [M]
    nxt = np.concatenate([p[1] for p in parts])  # [M]
    order = np.lexsort((nxt, keys))  # by key, then next token
    keys, nxt = keys[order], nxt[order]
    if not len(keys):
        return {name: np.zeros(0, dt) for name, dt in _DTYPES.items()}
    new_pair = np.ones(len(keys), bool)  # [M]: first of a (key, next) run
    new_pair[1:] = (keys[1:] != keys[:-1]) | (nxt[1:] != nxt[:-1])
    p_start = np.flatnonzero(new_pair)  # [P]
    p_count = np.diff(np.append(p_start, len(keys)))  # [P]
    p_key, p_next = keys[p_start], nxt[p_start]  # [P]
    k_start = np.flatnonzero(np.append(True, p_key[1:] != p_key[:-1]))  # [E]: first pair per key
    total = np.add.reduceat(p_count, k_start)  # [E]
    group = np.repeat(np.arange(len(k_start)), np.diff(np.append(k_start, len(p_key))))  # [P]
    rank = np.lexsort((p_next, -p_count, group))  # groups stay in place: top pair first in each
    top = rank[k_start]  # [E]: the largest count, then the lowest next id
    keep = p_count[top] >= min_hits  # [E]
    return {
        "keys": p_key[top][keep].astype(np.uint64),
        "next": p_next[top][keep].astype(np.int32),
        "hits": p_count[top][keep].astype(np.uint32),
        "total": total[keep].astype(np.uint32),
    }


def write_table(bundle: Path, corpus: Corpus, source: dict) -> dict:
    """Builds the table from `corpus`, writes it into the bundle and records it in the
    manifest's `lookup` entry; returns the entry."""
    table = build_table(corpus)
    path = bundle / TABLE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **table)
    tmp.replace(path)
    entry = {
        "path": TABLE_PATH,
        "kind": "ngram-table",
        "hash": "fnv1a64-words",
        "n_min": N_MIN,
        "n_max": N_MAX,
        "entries": len(table["keys"]),
        "file_bytes": path.stat().st_size,
        "source": source,
    }
    manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    manifest["lookup"] = entry
    _write_manifest(bundle, manifest)
    return entry
