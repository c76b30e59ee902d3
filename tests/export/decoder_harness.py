"""Drive an exported decoder the way the runtime does: ORT IO binding, shared KV buffers."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SharedKVDecoder:
    """One ORT session + per-layer KV OrtValues bound as both past_* input and present_* output."""

    def __init__(self, graph: str | Path, manifest_entry: dict):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
        self.m = manifest_entry
        dtype = np.float16 if self.m["kv_dtype"] == "float16" else np.float32
        shape = (1, self.m["num_kv_heads"], self.m["capacity"], self.m["head_dim"])
        self.kv = {  # (layer, "key"|"value") -> OrtValue [1, kv_heads, capacity, head_dim]
            (i, kind): ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype))
            for i in range(self.m["num_layers"])
            for kind in ("key", "value")
        }

    def forward(self, ids: list[int], n_past: int, hidden: bool = False):
        """Run tokens at positions n_past.. ; logits float32 [n, vocab] (+ hidden [n, H])."""
        n = len(ids)
        ins, outs = self.m["inputs"], self.m["outputs"]
        io = self.sess.io_binding()
        io.bind_cpu_input(ins["input_ids"], np.array([ids], dtype=np.int64))  # [1, n]
        io.bind_cpu_input(ins["seqlens_k"], np.array([n_past + n - 1], dtype=np.int32))  # [1]
        io.bind_cpu_input(ins["total_sequence_length"], np.array(n_past + n, dtype=np.int32))
        io.bind_output(outs["logits"])
        if hidden:
            io.bind_output(outs["hidden_states"])
        for (i, kind), buf in self.kv.items():
            io.bind_ortvalue_input(ins[f"past_{kind}"].format(layer=i), buf)
            io.bind_ortvalue_output(outs[f"present_{kind}"].format(layer=i), buf)
        self.sess.run_with_iobinding(io)
        got = io.copy_outputs_to_cpu()
        logits = got[0][0]  # [n, vocab]
        return (logits, got[1][0]) if hidden else logits


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
