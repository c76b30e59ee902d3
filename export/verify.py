"""Drive an exported decoder graph from Python the way the native runtime does (ORT IO
binding, one shared KV buffer per layer bound as past_* and present_*): used to check graphs
against a reference (tests, `tools/int4_agreement.py`). Needs only onnxruntime and numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SharedKVDecoder:
    """One ORT session + per-layer KV OrtValues bound as both past_* input and present_* output."""

    def __init__(self, graph: str | Path, manifest_entry: dict, threads: int = 1):
        """`threads`: intra-op threads (1: deterministic and cheap for tests; more for timing,
        with spinning off so that several decoders in one process do not starve each other)."""
        import onnxruntime as ort

        from edgespec._ort import ops_library

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        if threads > 1:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.register_custom_ops_library(ops_library())  # ai.edgespec attention
        self.sess = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
        self.m = manifest_entry
        dtype = np.float16 if self.m["kv_dtype"] == "float16" else np.float32
        shape = (1, self.m["num_kv_heads"], self.m["capacity"], self.m["head_dim"])
        self.kv = {  # (layer, "key"|"value") -> OrtValue [1, kv_heads, capacity, head_dim]
            (i, kind): ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype))
            for i in range(self.m["num_layers"])
            for kind in ("key", "value")
        }

    def forward(
        self,
        ids: list[int],
        n_past: int,
        hidden: bool = False,
        features=None,
        keep: int = 0,
        parents: list[int] | None = None,
    ):
        """Run tokens at positions n_past.. ; logits float32 [n, vocab] (+ hidden [n, H]).
        `features` float32 [n, H]: the draft head's features input (models.eagle only).
        `keep` > 0 (graphs with logits_to_keep): logits of the last `keep` rows only.
        `parents` (graphs with tree_parents): row i's parent row, -1 = the past; default a
        chain. Row i of a tree writes its KV at slot n_past + i."""
        n = len(ids)
        ins, outs = self.m["inputs"], self.m["outputs"]
        io = self.sess.io_binding()
        io.bind_cpu_input(ins["input_ids"], np.array([ids], dtype=np.int64))  # [1, n]
        if "logits_to_keep" in ins:  # default all n rows (the runtime's verify call)
            io.bind_cpu_input(ins["logits_to_keep"], np.array([keep or n], dtype=np.int64))
        if "tree_parents" in ins:
            tree = np.arange(-1, n - 1) if parents is None else parents
            io.bind_cpu_input(ins["tree_parents"], np.asarray(tree, dtype=np.int32))  # [n]
        elif parents is not None:
            raise ValueError("this graph has no tree_parents input")
        if features is not None:
            f = np.ascontiguousarray(np.asarray(features, dtype=np.float32)[None])  # [1, n, H]
            io.bind_cpu_input(ins["features"], f)
        io.bind_cpu_input(ins["seqlens_k"], np.array([n_past + n - 1], dtype=np.int32))  # [1]
        io.bind_cpu_input(ins["total_sequence_length"], np.array(n_past + n, dtype=np.int32))
        io.bind_output(outs["logits"])
        if hidden:
            io.bind_output(outs["hidden_states"])
        for (i, kind), buf in self.kv.items():
            io.bind_ortvalue_input(ins[f"past_{kind}"].format(layer=i), buf)
            io.bind_ortvalue_output(outs[f"present_{kind}"].format(layer=i), buf)
        self.sess.run_with_iobinding(io)
        got = io.get_outputs()  # logits (, hidden), then the KV buffers: copy the first only
        logits = got[0].numpy()[0]  # [n, vocab]
        return (logits, got[1].numpy()[0]) if hidden else logits

    def keep_rows(self, base: int, rows: list[int]) -> None:
        """After a tree forward at n_past = base: KV slots base + rows[i] move to base + i (the
        runtime's Model::keep_rows); slots after base + len(rows) are left as they are."""
        src = base + np.asarray(rows)
        for buf in self.kv.values():
            kv = buf.numpy()  # [1, kv_heads, capacity, head_dim] (a copy)
            kv[:, :, base : base + len(rows)] = kv[:, :, src]
            buf.update_inplace(kv)
