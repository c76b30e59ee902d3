"""The exported SmolLM2-135M fp32 graph against transformers' own GGUF loading (the torch
reference): prefill, +1, +5, then a rollback of 3 — max |logits delta| <= 1e-3."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))


@pytest.fixture(scope="module")
def torch_model(smollm2_bundle):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from edgespec.export.recipes import smollm2_gguf

    gguf = smollm2_gguf()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype="float32"
    )
    return model.eval()


def test_logits_match_torch_through_decode_and_rollback(
    smollm2_bundle, torch_model, smollm2_session
):
    from decoder_harness import SharedKVDecoder, decode_plan

    manifest = json.loads((smollm2_bundle / "edgespec.json").read_text())
    entry = manifest["models"]["target"]
    if entry["precision"] != "fp32":
        pytest.skip(f"bundle precision is {entry['precision']}, this check is for fp32")
    dec = SharedKVDecoder(smollm2_bundle / entry["path"], entry)
    ids = smollm2_session.encode([{"role": "user", "content": "Name three rivers in Europe."}])
    results = decode_plan(dec, torch_model, ids[:13], np.random.default_rng(0))
    for label, max_delta, top1 in results:
        assert max_delta <= 1e-3, (label, max_delta)
        assert top1 == 1.0, (label, top1)
