"""The in-memory model that loaders produce and graph builders consume.

Loaders (HF directory, GGUF file) turn a checkpoint into a `LoadedModel`: a normalised
architecture config, weights keyed by Hugging Face parameter names as numpy arrays (or
`QuantizedWeight` when a quantized source is carried over exactly), and tokenizer data.
Graph builders never look at the source format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Architectures the graph builder supports (HF `model_type` values).
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class ArchConfig:
    """Decoder hyper-parameters, normalised across the Llama family."""

    architecture: str  # one of SUPPORTED_ARCHITECTURES
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_scaling: dict | None = None  # HF rope_scaling dict (llama3 / linear), None = plain RoPE
    attention_bias: bool = False  # q/k/v projections carry a bias (qwen2)
    qk_norm: bool = False  # per-head RMSNorm on q and k before RoPE (qwen3)
    sliding_window: int | None = None  # informational; capacity is what bounds attention


@dataclass(frozen=True)
class QuantizedWeight:
    """A linear weight W[out, in] stored in blocks of `block_size` along `in`.

    Dequantized value: W[o, i] = scale[o, b] * (q[o, i] - zero_point[o, b]), b = i // block_size.
    `q` holds unpacked integer levels (uint8, 0 .. 2**bits - 1).
    """

    q: np.ndarray  # uint8 [out, in]
    scale: np.ndarray  # float32 [out, in // block_size]
    zero_point: np.ndarray  # float32 [out, in // block_size]
    block_size: int
    bits: int  # 4 or 8
    source: str = ""  # e.g. "gguf:Q4_1"

    def dequantize(self) -> np.ndarray:
        """float32 [out, in]."""
        out, n_in = self.q.shape
        q = self.q.reshape(out, n_in // self.block_size, self.block_size).astype(np.float32)
        w = (q - self.zero_point[:, :, None]) * self.scale[:, :, None]
        return w.reshape(out, n_in)


Weight = np.ndarray | QuantizedWeight


@dataclass
class TokenizerData:
    """Everything the bundle needs to tokenize like the model's own tokenizer."""

    tokenizer_json: str  # serialized `tokenizers` JSON
    chat_template: str | None
    bos_token_id: int | None
    eos_token_ids: list[int]
    pad_token_id: int | None
    add_bos_token: bool  # prepend BOS to a raw prompt
    special_tokens: dict[str, str] = field(default_factory=dict)  # e.g. {"eos_token": "<|im_end|>"}


@dataclass
class LoadedModel:
    config: ArchConfig
    # HF names: model.embed_tokens.weight, model.layers.{i}.self_attn.{q,k,v,o}_proj.weight (+bias),
    # model.layers.{i}.self_attn.{q,k}_norm.weight, model.layers.{i}.mlp.{gate,up,down}_proj.weight,
    # model.layers.{i}.{input,post_attention}_layernorm.weight, model.norm.weight, lm_head.weight
    # (absent when tied). Float arrays are float32.
    weights: dict[str, Weight]
    tokenizer: TokenizerData
    source: str  # human-readable origin, recorded in the manifest
