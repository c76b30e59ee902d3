"""Which execution provider runs each node of a bundle's target graph, and for how long.

    python tools/ort_placement.py BUNDLE [--provider cuda] [--context 300] [--widths 1,5]

Opens the target graph in an onnxruntime Python session with profiling on, runs one forward of
each width at a fixed context, and prints per provider and op type: node count and kernel time
(ms per call). A node that the provider cannot run falls back to the CPU, with copies around it;
this shows where. Needs the onnxruntime package of the provider (onnxruntime-gpu for cuda).
With edgespec's attention op, ORT Python binds present and past KV to different buffers, so
the op's time here includes a full KV copy per layer that the engine (shared buffers) never does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

EPS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _feeds(m: dict, inputs: list[str], context: int, width: int) -> dict[str, np.ndarray]:
    kv_type = np.float16 if m["kv_dtype"] == "float16" else np.float32
    kv = np.zeros((1, m["num_kv_heads"], m["capacity"], m["head_dim"]), kv_type)
    total = context + width
    feeds = {
        m["inputs"]["input_ids"]: np.full((1, width), 7, np.int64),  # [1, width]
        m["inputs"]["seqlens_k"]: np.array([total - 1], np.int32),  # [1]
        m["inputs"]["total_sequence_length"]: np.array(total, np.int32),  # scalar
    }
    if m["inputs"].get("logits_to_keep"):
        feeds[m["inputs"]["logits_to_keep"]] = np.array([width], np.int64)  # [1]
    if m["inputs"].get("tree_parents"):
        feeds[m["inputs"]["tree_parents"]] = np.arange(-1, width - 1, dtype=np.int32)  # chain
    for name in inputs:
        feeds.setdefault(name, kv)  # past key/value: [1, kv_heads, capacity, head_dim]
    return feeds


def profile(bundle: Path, provider: str, context: int, widths: list[int], reps: int) -> None:
    import onnxruntime as ort

    from edgespec._ort import ops_library

    m = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
    so = ort.SessionOptions()
    so.register_custom_ops_library(ops_library())  # ai.edgespec ops (edgespec attention, int4)
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    providers = [EPS[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
    sess = ort.InferenceSession(str(bundle / m["path"]), so, providers=providers)
    names = [i.name for i in sess.get_inputs()]
    wall: list[float] = []
    for w in widths:
        feeds = _feeds(m, names, context, w)
        sess.run(None, feeds)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t0)
        wall.append(statistics.median(times) * 1e3)
    events = json.loads(Path(sess.end_profiling()).read_text())
    _report(events, widths, reps, wall)


def _report(events: list[dict], widths: list[int], reps: int, wall: list[float]) -> None:
    """Kernel events grouped by the run that holds them: 1 + reps runs per width, in order;
    each width's warm-up run is left out."""
    starts = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    runs: list[list[dict]] = [[] for _ in starts]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            i = next((i for i, (a, b) in enumerate(starts) if a <= e["ts"] <= b), None)
            if i is not None:
                runs[i].append(e)
    per = 1 + reps
    for i, w in enumerate(widths):
        table: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
        for run in runs[i * per + 1 : (i + 1) * per]:
            for e in run:
                key = (e["args"].get("provider", "?"), e["args"].get("op_name", "?"))
                table[key][0] += 1
                table[key][1] += e["dur"] / 1000.0
        total = sum(v[1] for v in table.values()) / reps
        print(f"width {w}: wall {wall[i]:.3f} ms per call (median, profiling on), ", end="")
        print(f"kernels {total:.3f} ms")
        for (prov, op), (n, ms) in sorted(table.items(), key=lambda kv: -kv[1][1]):
            print(f"  {prov:28s} {op:28s} nodes {n // reps:4d}  {ms / reps:8.3f} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--provider", choices=sorted(EPS), default="cuda")
    p.add_argument("--context", type=int, default=300, help="cached tokens before the call")
    p.add_argument("--widths", default="1,5", help="tokens per call, comma-separated")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    profile(args.bundle, args.provider, args.context, widths, args.reps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
