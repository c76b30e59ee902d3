"""Build a `tokenizers` tokenizer (and the bundle's TokenizerData) from GGUF tokenizer metadata.

transformers' GGUF tokenizer conversion is lossy for byte-level BPE vocabularies (wrong eos,
digits not split, llama-style decoder). Here the tokenizer is rebuilt from the GGUF keys so that it
encodes and decodes like the model's own Hugging Face tokenizer:

- model: byte-level BPE over `tokenizer.ggml.tokens` / `tokenizer.ggml.merges` (no unk, no dropout);
- pre-tokenizer: the split regexes llama.cpp uses for `tokenizer.ggml.pre`, then ByteLevel;
- decoder: ByteLevel; no post-processor (the runtime prepends BOS itself when add_bos_token);
- CONTROL tokens (type 3) are added special tokens (matched in text, skipped with
  skip_special_tokens); USER_DEFINED tokens (type 4) are added non-special tokens (matched in
  text, kept when decoding), as llama.cpp treats them.

Stop tokens (`eos_token_ids`) come from the metadata only: eos, then eot and eom when present.
"""

from __future__ import annotations

from typing import Any

from .model_ir import TokenizerData

# llama.cpp token types (gguf.TokenType)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN = (  # the tokenizer.json original of llama.cpp's rewritten tekken regex
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class _Pre:
    """How one llama.cpp pre-tokenizer family maps onto `tokenizers`."""

    def __init__(
        self,
        kind: str,
        regexes: tuple[str, ...] = (),
        *,
        ignore_merges: bool = False,
        add_bos: bool = False,
        nfc: bool = False,
    ) -> None:
        self.kind = kind  # "gpt2": ByteLevel regex; "smollm": Digits + ByteLevel; "split": regexes
        self.regexes = regexes
        self.ignore_merges = ignore_merges
        self.add_bos = add_bos  # llama.cpp default when the GGUF has no add_bos_token key
        self.nfc = nfc  # the HF tokenizer.json of this family NFC-normalizes (Qwen2/3)


_GPT2_PRE = _Pre("gpt2")
_SMOLLM_PRE = _Pre("smollm")
_LLAMA3_PRE = _Pre("split", (_LLAMA3,), ignore_merges=True, add_bos=True)
_QWEN2_PRE = _Pre("split", (_QWEN2,), nfc=True)

# tokenizer.ggml.pre -> pre-tokenizer, following llama.cpp's llama-vocab.cpp.
PRE_TOKENIZERS: dict[str, _Pre] = {
    **dict.fromkeys(("default", "gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4"), _GPT2_PRE),
    **dict.fromkeys(
        ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"),
        _SMOLLM_PRE,
    ),
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"), _LLAMA3_PRE
    ),
    **dict.fromkeys(
        ("qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen", "megrez", "stablelm2"), _QWEN2_PRE
    ),
    "tekken": _Pre("split", (_TEKKEN,), ignore_merges=True, add_bos=True),
}


def tokenizer_from_gguf_metadata(meta: dict[str, Any]) -> TokenizerData:
    """TokenizerData from GGUF key/values (`tokenizer.ggml.*`, `tokenizer.chat_template`)."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            f"unsupported GGUF tokenizer model {model!r} (supported: 'gpt2', "
            "byte-level BPE; SentencePiece 'llama' vocabularies are not)"
        )
    pre_name = meta.get("tokenizer.ggml.pre") or "default"
    if pre_name not in PRE_TOKENIZERS:
        known = ", ".join(sorted(PRE_TOKENIZERS))
        raise ValueError(f"unsupported GGUF pre-tokenizer {pre_name!r} (supported: {known})")
    pre = PRE_TOKENIZERS[pre_name]
    tokens = _token_strings(meta)
    types = list(meta.get("tokenizer.ggml.token_type") or [_NORMAL] * len(tokens))
    if len(types) != len(tokens):
        raise ValueError(f"{len(types)} token types for {len(tokens)} tokens")
    merges = list(meta.get("tokenizer.ggml.merges") or [])
    tokenizer_json = build_bpe_tokenizer_json(tokens, types, merges, pre)
    ids = {
        k: _token_id(meta, k, len(tokens))
        for k in ("bos", "eos", "eot", "eom", "padding", "unknown")
    }
    if ids["eos"] is None and ids["eot"] is None:
        raise ValueError("GGUF tokenizer has neither eos_token_id nor eot_token_id")
    eos_ids = list(dict.fromkeys(i for i in (ids["eos"], ids["eot"], ids["eom"]) if i is not None))
    named = {
        "bos_token": ids["bos"],
        "eos_token": eos_ids[0],
        "pad_token": ids["padding"],
        "unk_token": ids["unknown"],
    }
    return TokenizerData(
        tokenizer_json=tokenizer_json,
        chat_template=meta.get("tokenizer.chat_template"),
        bos_token_id=ids["bos"],
        eos_token_ids=eos_ids,
        pad_token_id=ids["padding"],
        add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", pre.add_bos))
        and ids["bos"] is not None,
        special_tokens={k: tokens[i] for k, i in named.items() if i is not None},
    )


def _token_strings(meta: dict[str, Any]) -> list[str]:
    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise ValueError("GGUF has no tokenizer.ggml.tokens")
    # llama.cpp renames empty tokens the same way.
    return [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]


def _token_id(meta: dict[str, Any], kind: str, n_tokens: int) -> int | None:
    value = meta.get(f"tokenizer.ggml.{kind}_token_id")
    if value is None or int(value) < 0 or int(value) == 0xFFFFFFFF:
        return None
    if int(value) >= n_tokens:
        raise ValueError(f"tokenizer.ggml.{kind}_token_id={value} outside vocab of {n_tokens}")
    return int(value)


def build_bpe_tokenizer_json(
    tokens: list[str], types: list[int], merges: list[str], pre: _Pre
) -> str:
    """Serialized `tokenizers` JSON of a byte-level BPE tokenizer (see the module docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    vocab = {tok: i for i, tok in enumerate(tokens)}  # a duplicate keeps its last id (llama.cpp)
    pairs = [_merge_pair(m) for m in merges]
    try:
        bpe = models.BPE(
            vocab=vocab,
            merges=pairs,
            dropout=None,
            unk_token=None,
            fuse_unk=False,
            byte_fallback=False,
            ignore_merges=pre.ignore_merges,
        )
    except Exception as e:
        raise ValueError(f"GGUF BPE vocabulary/merges rejected by tokenizers: {e}") from e
    tok = Tokenizer(bpe)
    if pre.nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    special = [
        AddedToken(t, special=True, normalized=False)
        for t, k in zip(tokens, types, strict=True)
        if k == _CONTROL
    ]
    user = [
        AddedToken(t, special=False, normalized=False)
        for t, k in zip(tokens, types, strict=True)
        if k == _USER_DEFINED
    ]
    tok.add_special_tokens(special)
    tok.add_tokens(user)
    return tok.to_str()


def _merge_pair(merge: str) -> tuple[str, str]:
    pos = merge.find(" ", 1)  # as llama.cpp: the separator is the first space after index 0
    if pos < 0:
        raise ValueError(f"malformed GGUF merge {merge!r}")
    return merge[:pos], merge[pos + 1 :]


def _pre_tokenizer(pre: _Pre) -> Any:
    from tokenizers import Regex, pre_tokenizers

    if pre.kind == "gpt2":
        # llama.cpp's gpt2 regex is ByteLevel's built-in one minus a final `|\s+`; llama.cpp keeps
        # unmatched text as its own piece, which is what that final alternative matches.
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre.kind == "smollm":  # identical to SmolLM2's own tokenizer.json
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    splits = [
        pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in pre.regexes
    ]
    return pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
