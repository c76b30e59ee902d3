"""Load a local Hugging Face model directory into a LoadedModel (no hub access, ever)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .model_ir import SUPPORTED_ARCHITECTURES, ArchConfig, LoadedModel, TokenizerData

_SKIP_SUFFIXES = ("rotary_emb.inv_freq",)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON in {path}: {e}") from None


def _rope(cfg) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling or None) from a transformers config (v4 or v5 style)."""
    params = dict(getattr(cfg, "rope_parameters", None) or {})
    legacy = getattr(cfg, "rope_scaling", None)
    if legacy and not params.get("rope_type"):
        params.update(legacy)
    theta = float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    scaling = None if kind == "default" else {k: v for k, v in params.items() if k != "rope_theta"}
    return theta, scaling


def load_arch_config(model_dir: Path, weights: dict | None = None) -> ArchConfig:
    """Normalised ArchConfig from config.json (transformers fills the class defaults)."""
    raw = _read_json(model_dir / "config.json")
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"unsupported model_type: {model_type!r} "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    return arch_from_hf_config(cfg, weights)


def arch_from_hf_config(cfg, weights: dict | None = None) -> ArchConfig:
    """ArchConfig from a transformers config object (weights, when given, settle the qkv bias and
    a head tied by omission)."""
    model_type = cfg.model_type
    heads = cfg.num_attention_heads
    theta, scaling = _rope(cfg)
    has_qkv_bias = weights is not None and "model.layers.0.self_attn.q_proj.bias" in weights
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    if weights is not None and "lm_head.weight" not in weights:
        tied = True
    return ArchConfig(
        architecture=model_type,
        num_layers=cfg.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        vocab_size=cfg.vocab_size,
        rms_norm_eps=float(cfg.rms_norm_eps),
        rope_theta=theta,
        max_position_embeddings=int(cfg.max_position_embeddings),
        tie_word_embeddings=tied,
        rope_scaling=scaling,
        attention_bias=model_type == "qwen2" or has_qkv_bias,
        qk_norm=model_type == "qwen3",
        sliding_window=getattr(cfg, "sliding_window", None),
    )


def _weight_files(model_dir: Path) -> list[Path]:
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        files = sorted(model_dir.glob(pattern))
        if files:
            return files
    raise FileNotFoundError(f"no *.safetensors or pytorch_model*.bin weights in {model_dir}")


def _load_file(path: Path) -> dict:
    """{name: torch tensor} from one checkpoint file; clear one-line error when corrupt."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors / pickle raise many types for a damaged file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot read checkpoint {path}: {msg}") from None


def load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """All parameters as float32 numpy arrays keyed by HF names."""
    weights: dict[str, np.ndarray] = {}
    for f in _weight_files(model_dir):
        for name, t in _load_file(f).items():
            if name.endswith(_SKIP_SUFFIXES):
                continue
            weights[name] = t.float().numpy()  # any float dtype (bf16 too) -> float32
    return weights


def load_hf(model_dir: str | Path) -> LoadedModel:
    """LoadedModel from a local HF directory (config.json, weights, tokenizer files)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in model directory: {model_dir}")
    load_arch_config(path)  # fail fast on unsupported architectures before reading weights
    weights = load_weights(path)
    cfg = load_arch_config(path, weights)
    if cfg.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    return LoadedModel(
        config=cfg,
        weights=weights,
        tokenizer=load_tokenizer(path),
        source=f"{path.resolve().name} (hf)",
    )


def _token_content(tok) -> str | None:
    """A special token from tokenizer_config.json: str, AddedToken dict, or null."""
    if isinstance(tok, dict):
        return tok.get("content")
    return tok if isinstance(tok, str) else None


def _chat_template(model_dir: Path, tcfg: dict) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    ct_json = model_dir / "chat_template.json"
    if ct_json.is_file():
        return _read_json(ct_json).get("chat_template")
    ct = tcfg.get("chat_template")
    if isinstance(ct, list):  # named templates: take "default"
        named = {t.get("name"): t.get("template") for t in ct}
        ct = named.get("default") or next(iter(named.values()), None)
    return ct


def _eos_ids(model_dir: Path, eos_id: int | None) -> list[int]:
    ids = [] if eos_id is None else [eos_id]
    gen = model_dir / "generation_config.json"
    if gen.is_file():
        extra = _read_json(gen).get("eos_token_id")
        for i in extra if isinstance(extra, list) else [extra]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def load_tokenizer(model_dir: Path) -> TokenizerData:
    """TokenizerData from tokenizer.json + tokenizer_config.json (+ generation_config.json)."""
    from tokenizers import Tokenizer

    tj = model_dir / "tokenizer.json"
    if not tj.is_file():
        raise FileNotFoundError(f"no tokenizer.json in model directory: {model_dir}")
    text = tj.read_text(encoding="utf-8")
    tok = Tokenizer.from_str(text)
    tcfg_path = model_dir / "tokenizer_config.json"
    tcfg = _read_json(tcfg_path) if tcfg_path.is_file() else {}
    special = {
        k: _token_content(tcfg.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
    }
    special = {k: v for k, v in special.items() if v is not None}
    ids = {k: tok.token_to_id(v) for k, v in special.items()}
    add_bos = tcfg.get("add_bos_token")
    if add_bos is None:  # infer from the post-processor
        enc = tok.encode("a", add_special_tokens=True).ids
        add_bos = ids.get("bos_token") is not None and bool(enc) and enc[0] == ids["bos_token"]
    return TokenizerData(
        tokenizer_json=text,
        chat_template=_chat_template(model_dir, tcfg),
        bos_token_id=ids.get("bos_token"),
        eos_token_ids=_eos_ids(model_dir, ids.get("eos_token")),
        pad_token_id=ids.get("pad_token"),
        add_bos_token=bool(add_bos),
        special_tokens=special,
    )
