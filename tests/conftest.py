"""Shared fixtures: tiny random-weight HF models and the bundles exported from them.

`tiny_bundle`: fp32 bundle of a tiny random Llama (vocab 512, hidden 64, 2 layers) with a small
byte-level BPE tokenizer, a ChatML chat template and two EOS ids. `tiny_bundle_with_draft`: the
same target plus a 1-layer draft that shares the target's embedding, first layer, final norm and
head (so it agrees with the target often, but not always). Both use the export's default
attention (edgespec's CPU op); `tiny_gqa_bundle_with_draft` uses ORT's GroupQueryAttention;
`tiny_fp16_bundle_with_draft` is fp16 (GroupQueryAttention), the bundle GPU providers run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="edgespec-xdg-"))

TINY_VOCAB = 512
TINY_CAPACITY = 256
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_WORDS = (
    "the quick brown fox jumps over lazy dog hello world one two three four five six seven "
    "eight nine ten a b c d e f g zebra apple banana cherry river mountain speculative decoding "
    "draft verify token model runtime cache layer attention query key value rotary sampling "
    "greedy accept reject python numpy tensor graph export bundle manifest tokenizer chat user "
    "assistant system says yes no maybe always never sometimes because while when where why how"
).split()


def tiny_corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English lines for training the tiny tokenizer."""
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        punct = rng.choice([".", "!", "?", ",", ":", ""])
        lines.append(" ".join(words).capitalize() + punct + f" {rng.randint(0, 999)}")
    return lines


def build_tiny_tokenizer_json(vocab_size: int = TINY_VOCAB) -> str:
    """Serialized byte-level BPE `tokenizers` JSON with exactly `vocab_size` tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    if tok.get_vocab_size() != vocab_size:
        raise ValueError(f"tiny tokenizer has {tok.get_vocab_size()} tokens, wanted {vocab_size}")
    return tok.to_str()


def write_tiny_tokenizer(model_dir: Path, tokenizer_json: str) -> None:
    """tokenizer.json + tokenizer_config.json (ChatML template) + generation_config eos ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    (model_dir / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    tcfg = {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_bos_token": False,
        "chat_template": CHATML,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tcfg), encoding="utf-8")
    gen_path = model_dir / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    gen["eos_token_id"] = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    gen_path.write_text(json.dumps(gen), encoding="utf-8")


# The shape every tiny test model shares; callers add vocab, widths and token ids.
TINY_DIMS = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def tiny_config(config_cls, **kw):
    """A transformers config of `config_cls` with TINY_DIMS, overridden by `kw`."""
    return config_cls(**{**TINY_DIMS, **kw})


def tiny_llama_config(**overrides):
    import transformers

    kw = dict(
        vocab_size=TINY_VOCAB,
        intermediate_size=192,
        max_position_embeddings=TINY_CAPACITY,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return tiny_config(transformers.LlamaConfig, **{**kw, **overrides})


def save_random_model(model_dir: Path, config, seed: int = 0, tokenizer_json: str | None = None):
    """Random-weight HF causal LM saved to `model_dir` (norms jittered); returns the model."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.1)
    model.save_pretrained(str(model_dir))
    if tokenizer_json is not None:
        write_tiny_tokenizer(model_dir, tokenizer_json)
    return model


def _export(
    model_dir: Path,
    out: Path,
    draft_dir: Path | None = None,
    precision: str = "fp32",
    attention: str = "auto",
):
    import argparse

    from edgespec.export.main import add_export_arguments, run_export

    argv = [
        "--model",
        str(model_dir),
        "--precision",
        precision,
        "--capacity",
        str(TINY_CAPACITY),
        "--attention",
        attention,
        "-o",
        str(out),
        "--quiet",
    ]
    if draft_dir is not None:
        argv += ["--draft", str(draft_dir)]
    args = add_export_arguments(argparse.ArgumentParser()).parse_args(argv)
    return run_export(args)


@pytest.fixture(scope="session")
def tiny_tokenizer_json() -> str:
    pytest.importorskip("tokenizers")
    return build_tiny_tokenizer_json()


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory, tiny_tokenizer_json) -> Path:
    """Directory of the tiny random Llama target in HF format (with tokenizer files)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("tiny_hf_target")
    save_random_model(d, tiny_llama_config(), seed=0, tokenizer_json=tiny_tokenizer_json)
    return d


@pytest.fixture(scope="session")
def tiny_hf_draft_dir(tmp_path_factory, tiny_hf_dir, tiny_tokenizer_json) -> Path:
    """A 1-layer draft: the target's embedding, layer 0, final norm and head."""
    import torch
    import transformers

    target = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_hf_dir))
    draft = transformers.AutoModelForCausalLM.from_config(tiny_llama_config(num_hidden_layers=1))
    with torch.no_grad():
        own = draft.state_dict()
        for name, t in target.state_dict().items():
            if name in own:
                own[name].copy_(t)
    d = tmp_path_factory.mktemp("tiny_hf_draft")
    draft.save_pretrained(str(d))
    write_tiny_tokenizer(d, tiny_tokenizer_json)
    return d


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_hf_dir) -> Path:
    """Path of an fp32 bundle (capacity 256) of the tiny random Llama."""
    pytest.importorskip("onnx")
    return _export(tiny_hf_dir, tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="session")
def tiny_bundle_with_draft(tmp_path_factory, tiny_hf_dir, tiny_hf_draft_dir) -> Path:
    """Same target as `tiny_bundle` plus the 1-layer draft (fp32 both)."""
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("bundles") / "tiny_with_draft"
    return _export(tiny_hf_dir, out, draft_dir=tiny_hf_draft_dir)


@pytest.fixture(scope="session")
def tiny_gqa_bundle_with_draft(tmp_path_factory, tiny_hf_dir, tiny_hf_draft_dir) -> Path:
    """`tiny_bundle_with_draft` exported with ORT's GroupQueryAttention (runs on any provider)."""
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("bundles") / "tiny_gqa_with_draft"
    return _export(tiny_hf_dir, out, draft_dir=tiny_hf_draft_dir, attention="gqa")


@pytest.fixture(scope="session")
def tiny_fp16_bundle_with_draft(tmp_path_factory, tiny_hf_dir, tiny_hf_draft_dir) -> Path:
    """Target and draft at fp16 (attention auto = ORT's GroupQueryAttention): what a GPU
    provider runs."""
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("bundles") / "tiny_fp16_with_draft"
    return _export(tiny_hf_dir, out, draft_dir=tiny_hf_draft_dir, precision="fp16")


# -- the real SmolLM2 bundle (tests/slow; `make test-slow` exports it first) -------------------
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smollm2_bundle() -> Path:
    path = Path(os.environ.get("EDGESPEC_BUNDLE", REPO / "models" / "smollm2-135m"))
    if not (path / "edgespec.json").is_file():
        pytest.skip(f"no SmolLM2 bundle at {path}: run `make bundle` (or make test-slow)")
    return path


@pytest.fixture(scope="session")
def smollm2_session(smollm2_bundle):
    import edgespec

    with edgespec.Session(smollm2_bundle) as s:
        yield s


@pytest.fixture(scope="session")
def smollm2_selfdraft_session():
    """SmolLM2 fp32 with its int4 self as the draft model (`make selfdraft-bundle`)."""
    import edgespec

    path = Path(
        os.environ.get("EDGESPEC_SELFDRAFT_BUNDLE", REPO / "models" / "smollm2-135m-selfdraft")
    )
    if not (path / "edgespec.json").is_file():
        pytest.skip(f"no self-draft bundle at {path}: run `make selfdraft-bundle`")
    with edgespec.Session(path) as s:
        yield s


@pytest.fixture(scope="session")
def spec_bench_prompts() -> list[dict]:
    from edgespec.bench.dataset import default_prompts_path

    path = default_prompts_path()  # $EDGESPEC_SPEC_BENCH or ../shared/data/spec_bench_dev.jsonl
    if not path.is_file():
        pytest.skip(f"Spec-Bench prompts not found at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
