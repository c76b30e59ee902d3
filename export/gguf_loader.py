"""Load a GGUF file (llama.cpp format) into the exporter's in-memory IR.

Weights are read with `gguf.GGUFReader` directly and renamed to Hugging Face parameter names.
Q4_0, Q4_1 and Q8_0 tensors are carried over exactly as `QuantizedWeight` (the integer levels,
scales and offsets of the file, no requantization); F32/F16 become float32 arrays; any other
ggml type (BF16, K-quants, ...) is dequantized to float32 with `gguf.quants.dequantize`.

llama.cpp's converter permutes the rows of q_proj / k_proj of llama-arch models (rotary halves
interleaved); `_unpermute_rows` undoes it the way transformers' GGUF loader does. The permutation
acts on output rows while quant blocks run along the input dimension, so it is applied to the raw
block rows before decoding.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from .model_ir import ArchConfig, LoadedModel, QuantizedWeight, Weight
from .tokenizer import tokenizer_from_gguf_metadata

# gguf `general.architecture` -> HF model_type. Mistral GGUFs are written with arch "llama".
_GGUF_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
# Architectures whose q/k rows llama.cpp's converter permutes.
_PERMUTED_ARCHS = ("llama", "mistral")

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")

_QK = 32  # block size of Q4_0 / Q4_1 / Q8_0


def load_gguf(path: str) -> LoadedModel:
    """Read a GGUF file: config, weights (HF names) and tokenizer. See the module docstring."""
    reader = _open_reader(path)
    meta = _read_metadata(reader)
    arch = meta.get("general.architecture")
    if arch not in _GGUF_ARCHS:
        supported = ", ".join(sorted(_GGUF_ARCHS))
        raise ValueError(f"unsupported GGUF architecture {arch!r} (supported: {supported})")
    tensors = {t.name: t for t in reader.tensors}
    try:
        config = _read_config(meta, arch, tensors)
        weights = _read_weights(tensors, config, permute=arch in _PERMUTED_ARCHS)
    except (ValueError, IndexError, TypeError) as e:
        raise ValueError(f"cannot read GGUF {path}: {e}") from e
    tokenizer = tokenizer_from_gguf_metadata(meta)
    return LoadedModel(
        config=config, weights=weights, tokenizer=tokenizer, source=_source_name(meta, path)
    )


def _open_reader(path: str) -> Any:
    from gguf import GGUFReader

    if not os.path.exists(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"expected a .gguf file, got a directory: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"not a GGUF file (magic {magic!r}): {path}")
    try:
        return GGUFReader(path)
    except Exception as e:  # the reader raises ValueError/IndexError/... on damaged files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"corrupt or truncated GGUF file {path}: {msg}") from e


def _read_metadata(reader: Any) -> dict[str, Any]:
    """All key/value fields as plain Python values (str, int, float, bool, list)."""
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        try:
            meta[key] = field.contents()
        except Exception as e:
            raise ValueError(f"corrupt GGUF metadata field {key!r}: {e}") from e
    if meta.get("split.count", 1) > 1:
        raise ValueError(f"split GGUF files are not supported (split.count={meta['split.count']})")
    return meta


def _read_config(meta: dict[str, Any], arch: str, tensors: dict[str, Any]) -> ArchConfig:
    def key(name: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{name}", default)
        if value is None:
            raise ValueError(f"GGUF metadata lacks {arch}.{name}")
        return value

    if "token_embd.weight" not in tensors:
        raise ValueError("GGUF has no token_embd.weight tensor")
    hidden = int(key("embedding_length"))
    num_heads = int(key("attention.head_count"))
    num_kv_heads = int(key("attention.head_count_kv", num_heads))
    head_dim = int(key("attention.key_length", hidden // num_heads))
    rope_dim = meta.get(f"{arch}.rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise ValueError(f"partial rotary (rope.dimension_count={rope_dim}, head_dim={head_dim})")
    q = tensors.get("blk.0.attn_q.weight")
    if q is not None and int(q.shape[1]) != num_heads * head_dim:  # ggml shape [in, out]
        raise ValueError(f"attn_q has {int(q.shape[1])} rows, not {num_heads} heads x {head_dim}")
    vocab = int(tensors["token_embd.weight"].shape[1])  # ggml shape [hidden, vocab]
    if meta.get(f"{arch}.vocab_size", vocab) != vocab:
        raise ValueError(
            f"{arch}.vocab_size={meta[f'{arch}.vocab_size']} != embedding rows {vocab}"
        )
    q_bias = "blk.0.attn_q.bias" in tensors
    return ArchConfig(
        architecture=_GGUF_ARCHS[arch],
        num_layers=int(key("block_count")),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=int(key("feed_forward_length")),
        vocab_size=vocab,
        rms_norm_eps=float(key("attention.layer_norm_rms_epsilon")),
        rope_theta=float(key("rope.freq_base", 10000.0)),
        max_position_embeddings=int(key("context_length")),
        tie_word_embeddings="output.weight" not in tensors,
        rope_scaling=_rope_scaling(meta, arch, tensors, head_dim),
        attention_bias=q_bias,
        qk_norm="blk.0.attn_q_norm.weight" in tensors,
        sliding_window=meta.get(f"{arch}.attention.sliding_window"),
    )


def _rope_scaling(
    meta: dict[str, Any], arch: str, tensors: dict[str, Any], head_dim: int
) -> dict | None:
    """HF rope_scaling from `{arch}.rope.scaling.*` keys or a llama3 `rope_freqs` tensor."""
    kind = meta.get(f"{arch}.rope.scaling.type", "none")
    if "rope_freqs.weight" in tensors:
        factors = _float_array(tensors["rope_freqs.weight"])  # [head_dim // 2]
        theta = float(meta.get(f"{arch}.rope.freq_base", 10000.0))
        return _match_llama3_rope(factors, theta, head_dim)
    if kind == "none":
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(meta[f"{arch}.rope.scaling.factor"])}
    raise ValueError(f"unsupported GGUF rope scaling type {kind!r} (supported: none, linear)")


def _match_llama3_rope(factors: np.ndarray, theta: float, head_dim: int) -> dict:
    """Recover the HF llama3 rope_scaling dict whose per-frequency factors equal `factors`."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # [hd/2]
    wavelen = 2 * np.pi / inv_freq
    factor = float(factors.max())
    for low, high, orig in ((1.0, 4.0, 8192), (1.0, 4.0, 4096), (1.0, 2.0, 8192)):
        smooth = (orig / wavelen - low) / (high - low)
        want = np.where(
            wavelen < orig / high,
            1.0,
            np.where(wavelen > orig / low, factor, 1.0 / ((1 - smooth) / factor + smooth)),
        )
        if want.shape == factors.shape and np.allclose(want, factors, rtol=1e-5, atol=0):
            return {
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low,
                "high_freq_factor": high,
                "original_max_position_embeddings": orig,
            }
    raise ValueError("rope_freqs tensor does not match any known llama3 rope scaling")


def _read_weights(tensors: dict[str, Any], config: ArchConfig, permute: bool) -> dict[str, Weight]:
    weights: dict[str, Weight] = {}
    for name, tensor in tensors.items():
        if name == "rope_freqs.weight":
            continue  # folded into config.rope_scaling
        hf_name = _hf_name(name, config.num_layers)
        heads = None
        if permute and ".attn_q." in name:
            heads = config.num_heads
        elif permute and ".attn_k." in name:
            heads = config.num_kv_heads
        weights[hf_name] = _convert_tensor(tensor, heads)
    missing = [n for n in _expected_names(config) if n not in weights]
    if missing:
        raise ValueError(f"GGUF lacks {len(missing)} tensors, e.g. {missing[0]}")
    return weights


def _hf_name(name: str, num_layers: int) -> str:
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    m = _BLOCK_RE.match(name)
    if m is None or m.group(2) not in _BLOCK_NAMES or int(m.group(1)) >= num_layers:
        raise ValueError(f"unexpected GGUF tensor {name!r}")
    return f"model.layers.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}.{m.group(3)}"


def _expected_names(config: ArchConfig) -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        names += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
        if config.attention_bias:
            names += [p + f"self_attn.{x}_proj.bias" for x in "qkv"]
        if config.qk_norm:
            names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
    return names


def _unpermute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k permute, over axis 0 (output rows); other axes untouched.

    llama.cpp stores row (h, j, r) at (h, r, j) for j < head_dim/2, r in {0, 1}: rows [out, ...].
    """
    if rows.shape[0] % (2 * n_head):
        raise ValueError(f"cannot un-permute {rows.shape[0]} rows over {n_head} heads")
    half = rows.shape[0] // n_head // 2
    w = rows.reshape(n_head, half, 2, *rows.shape[1:])
    return np.ascontiguousarray(w.swapaxes(1, 2)).reshape(rows.shape)


def _convert_tensor(tensor: Any, permute_heads: int | None) -> Weight:
    """One GGUF tensor -> float32 array or QuantizedWeight, HF orientation ([out, in])."""
    from gguf import GGMLQuantizationType as T

    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))  # numpy order: [out, in]
    raw = np.asarray(tensor.data)  # rows along axis 0: [out, bytes or elements per row]
    if permute_heads is not None:
        raw = _unpermute_rows(raw, permute_heads)
    kind = tensor.tensor_type
    if kind in (T.Q4_0, T.Q4_1, T.Q8_0) and len(shape) == 2 and shape[1] % _QK == 0:
        decode = {T.Q4_0: _decode_q4_0, T.Q4_1: _decode_q4_1, T.Q8_0: _decode_q8_0}[kind]
        return decode(raw.reshape(shape[0], -1), shape[1])
    return _float_array(tensor, raw).reshape(shape)


def _float_array(tensor: Any, raw: np.ndarray | None = None) -> np.ndarray:
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize

    raw = np.asarray(tensor.data) if raw is None else raw
    if tensor.tensor_type in (T.F32, T.F16):
        return raw.astype(np.float32)
    return dequantize(raw, tensor.tensor_type).astype(np.float32, copy=False)


def _blocks(raw: np.ndarray, n_in: int, block_bytes: int) -> np.ndarray:
    """uint8 [out, n_in // 32 * block_bytes] -> uint8 [out, n_in // 32, block_bytes]."""
    out = raw.shape[0]
    if raw.shape[1] != n_in // _QK * block_bytes:
        raise ValueError(f"tensor row of {raw.shape[1]} bytes does not hold {n_in} values")
    return raw.reshape(out, n_in // _QK, block_bytes)


def _fp16(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 at byte `offset` of each block, as float32 [out, n_blocks]."""
    return blocks[..., offset : offset + 2].copy().view(np.float16)[..., 0].astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """uint8 [out, nb, 16] -> levels uint8 [out, nb, 32]: low nibbles = 0..15, high = 16..31."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=-1)


def _decode_q4_0(raw: np.ndarray, n_in: int) -> QuantizedWeight:
    """Q4_0 block: fp16 d, 16 bytes of nibbles; value = d * (q - 8)."""
    blocks = _blocks(raw, n_in, 18)  # [out, nb, 18]
    q = _nibbles(blocks[..., 2:])  # [out, nb, 32]
    scale = _fp16(blocks, 0)  # [out, nb]
    return QuantizedWeight(
        q=q.reshape(raw.shape[0], n_in),
        scale=scale,
        zero_point=np.full_like(scale, 8.0),
        block_size=_QK,
        bits=4,
        source="gguf:Q4_0",
    )


def _decode_q4_1(raw: np.ndarray, n_in: int) -> QuantizedWeight:
    """Q4_1 block: fp16 d, fp16 m, 16 bytes of nibbles; value = d * q + m.

    Stored as scale = d, zero_point = -m / d. A block with d == 0 holds the constant m: it is
    stored as q = 1, scale = m, zero_point = 0 so that it dequantizes to exactly m.
    """
    blocks = _blocks(raw, n_in, 20)  # [out, nb, 20]
    d, m = _fp16(blocks, 0), _fp16(blocks, 2)  # [out, nb] each
    q = _nibbles(blocks[..., 4:])  # [out, nb, 32]
    flat = d == 0  # [out, nb]
    safe_d = np.where(flat, 1.0, d.astype(np.float64))
    zero_point = np.where(flat, 0.0, -m.astype(np.float64) / safe_d).astype(np.float32)
    scale = np.where(flat, m, d).astype(np.float32)
    q[flat] = 1
    return QuantizedWeight(
        q=q.reshape(raw.shape[0], n_in),
        scale=scale,
        zero_point=zero_point,
        block_size=_QK,
        bits=4,
        source="gguf:Q4_1",
    )


def _decode_q8_0(raw: np.ndarray, n_in: int) -> QuantizedWeight:
    """Q8_0 block: fp16 d, 32 int8 q; value = d * q, stored as uint8 q + 128, zero_point 128."""
    blocks = _blocks(raw, n_in, 34)  # [out, nb, 34]
    q = (blocks[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)  # [out, nb, 32]
    scale = _fp16(blocks, 0)  # [out, nb]
    return QuantizedWeight(
        q=q.reshape(raw.shape[0], n_in),
        scale=scale,
        zero_point=np.full_like(scale, 128.0),
        block_size=_QK,
        bits=8,
        source="gguf:Q8_0",
    )


def _source_name(meta: dict[str, Any], path: str) -> str:
    from gguf import LlamaFileType

    name = meta.get("general.name") or os.path.basename(path)
    org = meta.get("general.organization")
    try:
        ftype = LlamaFileType(meta["general.file_type"]).name.removeprefix("MOSTLY_")
    except (KeyError, ValueError):
        ftype = "unknown type"
    return f"{org + '/' if org else ''}{name} (gguf {ftype})"
