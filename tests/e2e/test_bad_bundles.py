"""Broken bundles through the public API: every one is a clear one-line error, never a crash.

Each case copies the tiny bundle with a draft, breaks one thing (a missing, truncated or garbage
file, a manifest of another format version, a manifest that disagrees with its graphs, a draft
of another vocabulary, a provider that is not available) and opens a Session on it. The error
must be of the documented type (BundleError / FileNotFoundError for what the manifest check
sees, RuntimeError for what ONNX Runtime or the native engine sees), fit on one line and name
the offending file or field. Afterwards the process is alive and a good Session still
reproduces its reference output.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import edgespec
from edgespec import BundleError, Session

PROMPT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def good(tiny_bundle_with_draft):
    """(Session on the intact bundle, its greedy reference tokens per drafter)."""
    with Session(tiny_bundle_with_draft, threads=1) as s:
        ref = {
            d: s.generate(PROMPT, max_new_tokens=16, drafter=d).tokens for d in ("none", "model")
        }
        assert ref["none"] == ref["model"]
        yield s, ref


def still_works(good) -> None:
    s, ref = good
    for drafter, tokens in ref.items():
        assert s.generate(PROMPT, max_new_tokens=16, drafter=drafter).tokens == tokens


def truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(bundle: Path) -> None:
        path = bundle / "edgespec.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))

    return apply


def set_models(key: str, value) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        for entry in manifest["models"].values():
            entry[key] = value

    return change


def replace_dir_with_file(path: Path) -> None:
    path.unlink()
    path.mkdir()


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * (path.stat().st_size // 256 + 1))


# name -> (how to break a copy of the bundle, exception type, regex the one-line message matches)
CASES: dict[str, tuple[Callable[[Path], None], type[Exception], str]] = {
    "missing tokenizer.json": (
        lambda b: (b / "tokenizer.json").unlink(),
        BundleError,
        r"missing its tokenizer.*tokenizer\.json",
    ),
    "truncated tokenizer.json": (
        lambda b: truncate(b / "tokenizer.json", 0.5),
        BundleError,
        r"tokenizer\.json",
    ),
    "missing chat template": (
        lambda b: (b / "chat_template.jinja").unlink(),
        BundleError,
        r"chat_template\.jinja",
    ),
    "missing target/model.onnx": (
        lambda b: (b / "target" / "model.onnx").unlink(),
        BundleError,
        r"missing the target graph.*target/model\.onnx",
    ),
    "missing target/model.onnx.data": (
        lambda b: (b / "target" / "model.onnx.data").unlink(),
        BundleError,
        r"external weights.*target/model\.onnx\.data",
    ),
    "missing draft/model.onnx.data": (
        lambda b: (b / "draft" / "model.onnx.data").unlink(),
        BundleError,
        r"draft/model\.onnx\.data",
    ),
    "truncated target/model.onnx": (
        lambda b: truncate(b / "target" / "model.onnx", 0.5),
        RuntimeError,
        r"cannot open model '.*target/model\.onnx'.*Protobuf",
    ),
    "garbage target/model.onnx": (
        lambda b: garbage(b / "target" / "model.onnx"),
        RuntimeError,
        r"cannot open model '.*target/model\.onnx'",
    ),
    "truncated target/model.onnx.data": (
        lambda b: truncate(b / "target" / "model.onnx.data", 0.5),
        RuntimeError,
        r"target/model\.onnx'.*out of bounds",
    ),
    "target/model.onnx.data cut by one byte": (
        lambda b: truncate(
            b / "target" / "model.onnx.data",
            1 - 1 / os.path.getsize(b / "target" / "model.onnx.data"),
        ),
        RuntimeError,
        r"target/model\.onnx'.*out of bounds",
    ),
    "empty draft/model.onnx.data": (
        lambda b: truncate(b / "draft" / "model.onnx.data", 0.0),
        RuntimeError,
        r"draft/model\.onnx'.*out of bounds",
    ),
    "target/model.onnx.data is a directory": (
        lambda b: replace_dir_with_file(b / "target" / "model.onnx.data"),
        RuntimeError,
        r"target/model\.onnx",
    ),
    "newer format version": (
        edit_manifest(lambda m: m.update(format_version=99)),
        BundleError,
        r"format version 99 is newer",
    ),
    "unknown format version 0": (
        edit_manifest(lambda m: m.update(format_version=0)),
        BundleError,
        r"unknown bundle format version 0",
    ),
    "format version as a string": (
        edit_manifest(lambda m: m.update(format_version="1")),
        BundleError,
        r"format_version must be an integer",
    ),
    "another format": (
        edit_manifest(lambda m: m.update(format="onnx-genai")),
        BundleError,
        r"not an edgespec manifest",
    ),
    "manifest capacity larger than the graphs'": (
        edit_manifest(set_models("capacity", 400)),
        RuntimeError,
        r"model\.onnx' input 'past_key_values\.0\.key' has shape \[1, 2, 256, 16\], "
        r"the manifest implies \[1, 2, 400, 16\]",
    ),
    "manifest vocab_size larger than the graphs'": (
        edit_manifest(set_models("vocab_size", 600)),
        RuntimeError,
        r"output 'logits' has shape \[1, \?, 512\], the manifest implies \[1, \?, 600\]",
    ),
    "manifest num_kv_heads wrong": (
        edit_manifest(lambda m: m["models"]["target"].update(num_kv_heads=1)),
        RuntimeError,
        r"target/model\.onnx' input 'past_key_values\.0\.key' has shape",
    ),
    "manifest num_layers too small": (
        edit_manifest(lambda m: m["models"]["target"].update(num_layers=1)),
        RuntimeError,
        r"target/model\.onnx' has inputs the manifest does not describe: past_key_values\.1",
    ),
    "unknown attention op": (
        edit_manifest(lambda m: m["models"]["draft"].update(attention="flash")),
        BundleError,
        r"'models\.draft\.attention' must be one of \('gqa', 'edgespec'\), got 'flash'",
    ),
    "manifest num_layers too large": (
        edit_manifest(lambda m: m["models"]["target"].update(num_layers=3)),
        RuntimeError,
        r"target/model\.onnx' has no input 'past_key_values\.2\.key'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_bundle_is_a_one_line_error(tiny_bundle_with_draft, tmp_path, good, case):
    breaker, exc_type, pattern = CASES[case]
    bundle = Path(shutil.copytree(tiny_bundle_with_draft, tmp_path / "bundle"))
    breaker(bundle)
    with pytest.raises(exc_type, match=pattern) as info:
        Session(bundle, threads=1)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    still_works(good)


@pytest.fixture(scope="module")
def other_vocab_graph(tmp_path_factory) -> dict:
    """Manifest entry (graph files copied into its `dir`) of a 1-layer model with 384 tokens."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from conftest import _export, build_tiny_tokenizer_json, save_random_model, tiny_llama_config

    root = tmp_path_factory.mktemp("other_vocab")
    config = tiny_llama_config(vocab_size=384, num_hidden_layers=1)
    save_random_model(root / "hf", config, seed=7, tokenizer_json=build_tiny_tokenizer_json(384))
    bundle = _export(root / "hf", root / "bundle")
    entry = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
    return {**entry, "dir": bundle / "target"}


def with_other_draft(src: Path, dst: Path, graph: dict, vocab_size: int) -> Path:
    """Copy of `src` whose draft is the 384-token graph, its manifest saying `vocab_size`."""
    bundle = Path(shutil.copytree(src, dst))
    shutil.rmtree(bundle / "draft")
    shutil.copytree(graph["dir"], bundle / "draft")
    entry = {k: v for k, v in graph.items() if k != "dir"}
    edit_manifest(
        lambda m: m["models"].update(
            draft={**entry, "path": "draft/model.onnx", "vocab_size": vocab_size}
        )
    )(bundle)
    return bundle


def test_draft_of_another_vocabulary(tiny_bundle_with_draft, tmp_path, good, other_vocab_graph):
    honest = with_other_draft(tiny_bundle_with_draft, tmp_path / "a", other_vocab_graph, 384)
    with pytest.raises(BundleError, match=r"draft vocabulary \(384\) differs.*\(512\)"):
        Session(honest, threads=1)
    forged = with_other_draft(tiny_bundle_with_draft, tmp_path / "b", other_vocab_graph, 512)
    with pytest.raises(RuntimeError, match=r"draft/model\.onnx' output 'logits' has shape") as e:
        Session(forged, threads=1)
    assert "[1, ?, 384], the manifest implies [1, ?, 512]" in str(e.value)
    still_works(good)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(provider="tensorrt"), r"execution provider 'tensorrt' failed.*target/model\.onnx"),
        (dict(draft_provider="cuda"), r"execution provider 'cuda' failed.*draft/model\.onnx"),
        (dict(draft_provider="rocm"), r"unknown provider 'rocm'"),
    ],
)
def test_unavailable_provider(tiny_fp16_bundle_with_draft, good, kwargs, pattern):
    if "CUDAExecutionProvider" in edgespec.available_providers():
        pytest.skip("this ONNX Runtime has CUDA: the providers may load")
    exc_type = ValueError if "rocm" in kwargs.values() else RuntimeError
    with pytest.raises(exc_type, match=pattern) as info:
        Session(tiny_fp16_bundle_with_draft, threads=1, **kwargs)
    assert "\n" not in str(info.value)
    still_works(good)


def test_fp32_draft_head_must_run_on_the_cpu(tiny_fp16_bundle_with_draft, tmp_path, good):
    """An fp16 target may go to the GPU; a distilled head (fp32) needs draft_provider='cpu'."""
    import shutil

    from edgespec.export.eagle_graph import add_random_eagle

    bundle = tmp_path / "fp16_with_head"
    shutil.copytree(tiny_fp16_bundle_with_draft, bundle)
    add_random_eagle(bundle, draft_vocab=300, seed=3)
    pattern = r"bundle's eagle runs attention in float32 \(fp32\), .* needs draft_provider='cpu'$"
    with pytest.raises(ValueError, match=pattern):
        Session(bundle, threads=1, provider="cuda")
    if "CUDAExecutionProvider" not in edgespec.available_providers():  # past the check: ORT's turn
        with pytest.raises(RuntimeError, match="execution provider 'cuda' failed"):
            Session(bundle, threads=1, provider="cuda", draft_provider="cpu")
    still_works(good)


FP32_GQA = r"runs attention in float32 \(fp32\), .* --precision fp16$"
EDGESPEC_OP = r"uses edgespec attention, a CPU op; provider '\w+' needs a bundle"


@pytest.mark.parametrize(
    ("bundle", "kwargs", "role", "why"),
    [
        # ORT's GroupQueryAttention has no float32 CUDA kernel: it would run on the CPU.
        ("tiny_gqa_bundle_with_draft", dict(provider="tensorrt"), "target", FP32_GQA),
        ("tiny_gqa_bundle_with_draft", dict(draft_provider="cuda"), "draft", FP32_GQA),
        # edgespec's attention is a CPU op: a GPU session would copy every layer's KV cache.
        ("tiny_bundle_with_draft", dict(provider="cuda"), "target", EDGESPEC_OP),
        ("tiny_bundle_with_draft", dict(draft_provider="tensorrt"), "draft", EDGESPEC_OP),
    ],
)
def test_cpu_attention_refuses_gpu_providers(request, good, bundle, kwargs, role, why):
    with pytest.raises(ValueError, match=rf"bundle's {role} {why}") as info:
        Session(request.getfixturevalue(bundle), threads=1, **kwargs)
    assert "\n" not in str(info.value)
    still_works(good)
