"""Rotary embedding tables (cos/sin caches) for GroupQueryAttention's fused rotary."""

from __future__ import annotations

import math

import numpy as np

from .model_ir import ArchConfig

SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


def rope_type(scaling: dict | None) -> str:
    """Normalised rope type of an HF rope_scaling / rope_parameters dict ('default' if none)."""
    if not scaling:
        return "default"
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in SUPPORTED_ROPE_TYPES:
        raise ValueError(
            f"unsupported rope_scaling type: {kind!r} (supported: {SUPPORTED_ROPE_TYPES})"
        )
    return kind


def _llama3_inv_freq(inv_freq: np.ndarray, scaling: dict, max_pos: int) -> np.ndarray:
    """Llama 3.1 frequency smoothing, as transformers' _compute_llama3_parameters."""
    factor = float(scaling["factor"])
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", max_pos))
    low_wavelen = old_ctx / low
    high_wavelen = old_ctx / high
    wavelen = 2 * math.pi / inv_freq  # [head_dim/2]
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)  # [head_dim/2]
    smooth = (old_ctx / wavelen - low) / (high - low)  # [head_dim/2]
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled)


def inverse_frequencies(cfg: ArchConfig) -> np.ndarray:
    """float64 [head_dim/2] inverse frequencies after rope scaling."""
    dim = cfg.head_dim
    exps = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim  # [head_dim/2]
    inv_freq = (1.0 / (np.float32(cfg.rope_theta) ** exps)).astype(np.float32)  # as HF (fp32)
    kind = rope_type(cfg.rope_scaling)
    if kind == "linear":
        inv_freq = inv_freq / np.float32(cfg.rope_scaling["factor"])
    elif kind == "llama3":
        inv_freq = _llama3_inv_freq(
            inv_freq.astype(np.float64), cfg.rope_scaling, cfg.max_position_embeddings
        )
    return inv_freq.astype(np.float64)


def rope_caches(cfg: ArchConfig, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin float32 [capacity, head_dim/2] for positions 0..capacity-1."""
    inv_freq = inverse_frequencies(cfg)  # [head_dim/2]
    pos = np.arange(capacity, dtype=np.float64)  # [capacity]
    freqs = np.outer(pos, inv_freq)  # [capacity, head_dim/2]
    return np.cos(freqs).astype(np.float32), np.sin(freqs).astype(np.float32)
