"""Drive an exported decoder the way the runtime does: ORT IO binding, shared KV buffers."""

from __future__ import annotations

import numpy as np

from edgespec.export.verify import SharedKVDecoder

__all__ = ["SharedKVDecoder", "decode_plan", "torch_reference"]


def torch_reference(model, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """HF logits float32 [n, vocab] and final-norm hidden states [n, H] for the full sequence."""
    import torch

    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    return out.logits[0].float().numpy(), out.hidden_states[-1][0].float().numpy()


def decode_plan(dec: SharedKVDecoder, model, seq: list[int], rng) -> list[tuple[str, float, float]]:
    """Prefill 7, +1, +5, then roll back 3 and run 3 new tokens; returns per step
    (label, max |logits delta|, fraction of top-1 agreements) against the torch model."""
    vocab = dec.m["vocab_size"]
    cur = list(seq[:13])
    results = []
    for label, n_past, n in (("prefill7", 0, 7), ("+1", 7, 1), ("+5", 8, 5), ("rollback3", 10, 3)):
        if label == "rollback3":
            cur = cur[:10] + [int(t) for t in rng.integers(0, vocab, 3)]
        got = dec.forward(cur[n_past : n_past + n], n_past)  # [n, vocab]
        exp = torch_reference(model, cur[: n_past + n])[0][n_past:]  # [n, vocab]
        top1 = float(np.mean(got.argmax(-1) == exp.argmax(-1)))
        results.append((label, float(np.abs(got - exp).max()), top1))
    return results
