"""Does a row's result depend on how many rows share the call? Verification scores k + 1 tokens
in one call where plain decoding runs them one at a time, so any width dependence can change a
greedy path. These tests pin what README states: ORT's GroupQueryAttention is width-dependent
(int4 targets exported with it are not token-identical), edgespec's attention op is not."""

from __future__ import annotations

import json
import platform
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_quantize import run_matmulnbits  # noqa: E402

from edgespec.export.quantize import quantize_rtn  # noqa: E402

pytestmark = pytest.mark.export


@pytest.mark.parametrize(("bits", "k"), [(4, 576), (4, 1536), (8, 576)])
def test_matmulnbits_with_int8_activations_is_width_consistent(bits, k):
    """accuracy_level 4 quantizes each activation row on its own: 5 rows in one call equal the
    same rows one call each, bit for bit (with the Q4_1 offset term too)."""
    rng = np.random.default_rng(bits + k)
    qw = quantize_rtn(rng.standard_normal((96, k)).astype(np.float32), bits=bits, block_size=32)
    zp = qw.zero_point + rng.random(qw.zero_point.shape).astype(np.float32)  # [N, nb]
    qw = replace(qw, zero_point=zp)  # non-integer zero points: the Q4_1 offset term too
    x = rng.standard_normal((5, k)).astype(np.float32)  # [5, K]
    together = run_matmulnbits(qw, x, accuracy_level=4)  # [5, N]
    alone = np.concatenate([run_matmulnbits(qw, x[i : i + 1], accuracy_level=4) for i in range(5)])
    assert np.array_equal(together, alone)


def _logits_by_width(bundle) -> tuple[np.ndarray, np.ndarray]:
    """Logits of 5 tokens after a 35-token prompt: one 5-token call, and five 1-token calls."""
    from edgespec.export.verify import SharedKVDecoder

    entry = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
    ids = np.random.default_rng(0).integers(3, 500, 40).tolist()
    out = []
    for widths in ([5], [1] * 5):
        dec = SharedKVDecoder(bundle / entry["path"], entry)
        dec.forward(ids[:35], 0)
        pos, rows = 35, []
        for w in widths:
            rows.append(dec.forward(ids[pos : pos + w], pos))  # [w, V]
            pos += w
        out.append(np.concatenate(rows))  # [5, V]
    return out[0], out[1]


@pytest.fixture(scope="module")
def export(tmp_path_factory, tiny_hf_dir):
    """export(precision, attention) -> the tiny target's bundle (built once per pair)."""
    from conftest import _export

    built = {}

    def get(precision: str, attention: str):
        if (precision, attention) not in built:
            path = tmp_path_factory.mktemp(f"width_{precision}_{attention}") / "b"
            built[precision, attention] = _export(
                tiny_hf_dir, path, precision=precision, attention=attention
            )
        return built[precision, attention]

    return get


# int4 leaves out the tolerance tests: it quantizes activations to int8 per row, so a 1e-7
# attention difference can move a rounding step and the tiny model's logits by ~0.07.
@pytest.mark.parametrize("attention", ["gqa", "edgespec"])
def test_fp32_logits_agree_across_call_widths(export, attention):
    together, alone = _logits_by_width(export("fp32", attention))
    assert np.abs(together - alone).max() < 1e-4


def test_both_attentions_compute_the_same_function(export):
    _, gqa = _logits_by_width(export("fp32", "gqa"))
    _, ours = _logits_by_width(export("fp32", "edgespec"))
    assert np.abs(gqa - ours).max() < 1e-4


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_edgespec_attention_is_bitwise_width_invariant(export, precision):
    """What the ai.edgespec op is for: a verify call equals one-token steps bit for bit, so
    greedy speculative output equals plain decoding at every precision (int4 included)."""
    together, alone = _logits_by_width(export(precision, "edgespec"))
    assert np.array_equal(together, alone)


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"),
    reason="MLAS's one-row sgemm kernel (the width dependence pinned here) is x86-64 only",
)
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="ORT's GroupQueryAttention computes probs x V with MLAS sgemm at alpha 1, which runs "
    "a separate kernel for one row: a 1-token call and a 5-token call differ by ~1e-7. If this "
    "passes, ORT became width-invariant: README's attention paragraph is stale.",
)
@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_gqa_logits_are_bitwise_width_invariant(export, precision):
    together, alone = _logits_by_width(export(precision, "gqa"))
    assert np.array_equal(together, alone)


def test_bench_attention_tool(export, capsys):
    """tools/bench_attention.py on the two tiny fp32 exports: timings for each width and the
    width check, which tells the two ops apart."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / "bench_attention.py"
    spec = importlib.util.spec_from_file_location("bench_attention", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    a, b = export("fp32", "gqa"), export("fp32", "edgespec")
    argv = [str(a), str(b), "--context", "40", "--widths", "1,3", "--rounds", "2", "--reps", "1"]
    assert tool.main([*argv, "--threads", "1", "--chunk", "16"]) == 0
    out = capsys.readouterr().out
    assert "width 1: A " in out and "width 3: A " in out and "prefill 40 in 16-chunks" in out
    assert "B: 5 tokens in one call vs one at a time: bit-identical" in out
    if platform.machine() in ("x86_64", "AMD64"):  # where ORT's one-row kernel differs
        assert "A: 5 tokens in one call vs one at a time: differ" in out
