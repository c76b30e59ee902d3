"""The CUDA execution provider end to end, on the tiny random bundles (tests/conftest.py).

Needs ONNX Runtime with CUDA (onnxruntime-gpu) and a GPU; elsewhere the module is skipped with
the reason. EDGESPEC_REQUIRE_GPU=1 turns that skip into a failure (tools/gpu_check.sh sets it,
so a device run cannot pass by skipping).

What runs on the GPU: fp16 target and draft graphs with ORT's GroupQueryAttention, their KV
caches in device memory (IO binding), rewind after rejected drafts. Checked: greedy speculative
output equals plain greedy output on the same provider (on these tiny models; on SmolLM2 a
verify call's kernels round differently from one-token steps: README, "GPU"), seeded sampling
repeats, and the graphs' logits on CUDA agree with the CPU's at fp16 and fp32. A Session refuses
fp32 attention on a GPU provider (tests/e2e/test_bad_bundles.py): ORT runs it on the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import edgespec
from edgespec import Session


def _cuda_missing() -> str:
    if "CUDAExecutionProvider" not in edgespec.available_providers():
        return (
            f"ONNX Runtime {edgespec.runtime_version()} has no CUDA execution provider "
            "(install onnxruntime-gpu on a machine with an NVIDIA GPU)"
        )
    return ""


_REASON = _cuda_missing()
if _REASON:
    if os.environ.get("EDGESPEC_REQUIRE_GPU") == "1":
        raise RuntimeError(f"EDGESPEC_REQUIRE_GPU=1 but {_REASON}")
    pytest.skip(_REASON, allow_module_level=True)

PROMPTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog " * 6,  # repeats: prompt lookup drafts
    "one two three four five six seven eight nine ten one two three four",
    "speculative decoding draft verify token model runtime cache layer attention",
    "apple banana cherry " * 20,  # longer than one 64-token prefill chunk
]


def _tokens(session: Session, prompt: str, **kw) -> tuple[list[int], object]:
    kw.setdefault("max_new_tokens", 48)
    result = session.generate(prompt, **kw)
    return list(result.tokens), result.stats


@pytest.mark.parametrize("drafter", ["ngram", "model"])
def test_greedy_speculative_equals_plain_on_cuda(tiny_fp16_bundle_with_draft, drafter):
    with Session(tiny_fp16_bundle_with_draft, provider="cuda", prefill_chunk=64) as s:
        n_accept = 0
        for prompt in PROMPTS:
            plain, st_plain = _tokens(s, prompt, drafter="none")
            spec, st = _tokens(s, prompt, drafter=drafter, adaptive=False)
            assert st_plain.new_tokens == len(plain) > 0
            assert spec == plain, f"{drafter} on cuda diverged for {prompt[:30]!r}"
            n_accept += st.accepted
        assert n_accept > 0, f"{drafter} never got a token accepted on cuda"


def test_seeded_sampling_repeats_on_cuda(tiny_fp16_bundle_with_draft):
    with Session(tiny_fp16_bundle_with_draft, provider="cuda") as s:
        kw = dict(drafter="model", temperature=0.8, top_p=0.95, seed=7, max_new_tokens=40)
        first, _ = _tokens(s, PROMPTS[1], **kw)
        again, _ = _tokens(s, PROMPTS[1], **kw)
        assert first == again


def _prefill_logits(bundle: Path, providers: list[str], ids: list[int]) -> np.ndarray:
    """The target graph's logits for `ids` from an empty cache, through onnxruntime Python."""
    import onnxruntime as ort

    m = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
    sess = ort.InferenceSession(str(bundle / m["path"]), providers=providers)
    kv_type = np.float16 if m["kv_dtype"] == "float16" else np.float32
    kv = np.zeros((1, m["num_kv_heads"], m["capacity"], m["head_dim"]), kv_type)
    feeds = {
        m["inputs"]["input_ids"]: np.array([ids], np.int64),  # [1, n]
        m["inputs"]["seqlens_k"]: np.array([len(ids) - 1], np.int32),  # [1]
        m["inputs"]["total_sequence_length"]: np.array(len(ids), np.int32),  # scalar
    }
    if m["inputs"].get("logits_to_keep"):
        feeds[m["inputs"]["logits_to_keep"]] = np.array([len(ids)], np.int64)  # [1]
    if m["inputs"].get("tree_parents"):
        feeds[m["inputs"]["tree_parents"]] = np.arange(-1, len(ids) - 1, dtype=np.int32)  # chain
    for name in (i.name for i in sess.get_inputs()):
        if name not in feeds:
            feeds[name] = kv  # every past key/value: [1, kv_heads, capacity, head_dim]
    out = sess.run([m["outputs"]["logits"]], feeds)[0]  # [1, n, vocab]
    return out[0].astype(np.float64)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_graph_logits_on_cuda_match_cpu(
    tiny_gqa_bundle_with_draft, tiny_fp16_bundle_with_draft, precision
):
    import onnxruntime as ort

    bundle = tiny_gqa_bundle_with_draft if precision == "fp32" else tiny_fp16_bundle_with_draft
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("the onnxruntime Python package here has no CUDA provider")
    ids = list(np.random.default_rng(0).integers(0, 512, 40))
    gpu = _prefill_logits(bundle, ["CUDAExecutionProvider"], ids)
    cpu = _prefill_logits(bundle, ["CPUExecutionProvider"], ids)
    rel = np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu)
    assert rel < (2e-2 if precision == "fp16" else 5e-3), f"relative difference {rel:.2e}"
    assert (gpu.argmax(-1) == cpu.argmax(-1)).mean() >= 0.9
