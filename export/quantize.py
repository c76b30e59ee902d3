"""Blockwise RTN quantization and MatMulNBits packing.

`quantize_rtn` turns a float weight W[out, in] into a `QuantizedWeight` (asymmetric, integer
zero points, blocks along `in`). `pack_matmulnbits` lays a `QuantizedWeight` out exactly as the
com.microsoft MatMulNBits contrib op wants it (no re-quantization):

- B: uint8 [N, n_blocks, blob_size], blob_size = block_size * bits / 8; for 4 bits element
  2j sits in the low nibble of byte j, element 2j+1 in the high nibble.
- scales: [N * n_blocks] (activation dtype).
- zero_points: uint8 [N * ceil(n_blocks * bits / 8)] (4 bits: two blocks per byte, low nibble
  first, each row padded to a whole byte). ORT's CPU kernel accepts only uint8 zero points, so a
  weight with non-integer zero points (GGUF Q4_1: W = d*q + m) is split into an integer part
  (zero point 0) and a per-block offset term, see `split_fractional_zero_point`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model_ir import QuantizedWeight

DEFAULT_BLOCK_SIZE = 32


@dataclass(frozen=True)
class PackedNBits:
    """MatMulNBits initializers for one linear layer (y = x @ W^T)."""

    b: np.ndarray  # uint8 [N, n_blocks, blob_size]
    scales: np.ndarray  # float32 [N * n_blocks]
    zero_points: np.ndarray  # uint8 [N * ceil(n_blocks * bits / 8)]
    n: int  # output features
    k: int  # input features
    bits: int
    block_size: int
    # Offset term for non-integer zero points: y += blocksum(x) @ offset, None when not needed.
    offset: np.ndarray | None = None  # float32 [n_blocks, N]


def quantize_rtn(
    w: np.ndarray, bits: int = 4, block_size: int = DEFAULT_BLOCK_SIZE
) -> QuantizedWeight:
    """Round-to-nearest asymmetric quantization of W float [out, in] along `in`."""
    if bits not in (4, 8):
        raise ValueError(f"unsupported quantization bits: {bits} (expected 4 or 8)")
    out, n_in = w.shape
    if n_in % block_size:
        raise ValueError(f"input dim {n_in} is not a multiple of block_size {block_size}")
    qmax = (1 << bits) - 1
    blocks = w.astype(np.float32).reshape(out, n_in // block_size, block_size)  # [out, nb, bs]
    lo = np.minimum(blocks.min(axis=2), 0.0)  # [out, nb]: range always contains 0
    hi = np.maximum(blocks.max(axis=2), 0.0)  # [out, nb]
    scale = (hi - lo) / qmax  # [out, nb]
    scale = np.where(scale == 0.0, 1.0, scale).astype(np.float32)
    zp = np.clip(np.round(-lo / scale), 0, qmax)  # [out, nb] integer levels
    q = np.clip(np.round(blocks / scale[:, :, None] + zp[:, :, None]), 0, qmax)  # [out, nb, bs]
    return QuantizedWeight(
        q=q.astype(np.uint8).reshape(out, n_in),
        scale=scale,
        zero_point=zp.astype(np.float32),
        block_size=block_size,
        bits=bits,
        source=f"rtn:int{bits}",
    )


def quantize_q4_1(w: np.ndarray, block_size: int = 32) -> QuantizedWeight:
    """GGUF Q4_1's rounding of W float [out, in]: per block m = min (as float16, as GGUF stores
    it), d = (max - m) / 15, q = round((w - m) / d) in 0..15; zero point -m / d (not an integer),
    so W = d q + m with m exact in float16, the form ai.edgespec QMatMul takes."""
    out, n_in = w.shape
    if n_in % block_size:
        raise ValueError(f"input dim {n_in} is not a multiple of block_size {block_size}")
    blocks = w.astype(np.float32).reshape(out, n_in // block_size, block_size)  # [out, nb, bs]
    m = blocks.min(axis=2).astype(np.float16).astype(np.float32)  # [out, nb]
    d = (blocks.max(axis=2) - m) / np.float32(15)  # [out, nb]
    d = np.where(d > 0, d, np.float32(1)).astype(np.float32)
    q = np.clip(np.round((blocks - m[:, :, None]) / d[:, :, None]), 0, 15)  # [out, nb, bs]
    return QuantizedWeight(
        q=q.astype(np.uint8).reshape(out, n_in),
        scale=d,
        zero_point=(-m / d).astype(np.float32),
        block_size=block_size,
        bits=4,
        source="q4_1",
    )


def _pack_levels(q: np.ndarray, bits: int, block_size: int) -> np.ndarray:
    """q uint8 [N, K] -> uint8 [N, n_blocks, block_size * bits / 8]."""
    n, k = q.shape
    blocks = q.reshape(n, k // block_size, block_size)  # [N, nb, bs]
    if bits == 8:
        return np.ascontiguousarray(blocks, dtype=np.uint8)
    lo = blocks[:, :, 0::2] & 0x0F  # [N, nb, bs/2]
    hi = blocks[:, :, 1::2] & 0x0F  # [N, nb, bs/2]
    return np.ascontiguousarray(lo | (hi << 4), dtype=np.uint8)


def _pack_zero_points(zp: np.ndarray, bits: int) -> np.ndarray:
    """zp integer levels [N, nb] -> uint8 [N * ceil(nb * bits / 8)]."""
    zp = zp.astype(np.uint8)  # [N, nb]
    if bits == 8:
        return zp.reshape(-1)
    n, nb = zp.shape
    if nb % 2:
        zp = np.concatenate([zp, np.zeros((n, 1), np.uint8)], axis=1)  # [N, nb+1]
    packed = (zp[:, 0::2] & 0x0F) | ((zp[:, 1::2] & 0x0F) << 4)  # [N, ceil(nb/2)]
    return packed.reshape(-1)


def split_fractional_zero_point(qw: QuantizedWeight) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer zero points uint8 [N, nb] and, when zp is not integral, the offset float [nb, N].

    W = s * (q - zp) = s*q + m with m = -s*zp. With zp = 0 in MatMulNBits the missing term is
    sum_b blocksum_b(x) * m[:, b], i.e. blocksum(x) [.., nb] @ m^T [nb, N].
    """
    zp = qw.zero_point  # [N, nb]
    rounded = np.round(zp)
    qmax = (1 << qw.bits) - 1
    if np.array_equal(rounded, zp) and rounded.min() >= 0 and rounded.max() <= qmax:
        return rounded.astype(np.uint8), None
    offset = (-qw.scale.astype(np.float32) * zp.astype(np.float32)).T  # [nb, N]
    return np.zeros(zp.shape, np.uint8), np.ascontiguousarray(offset, dtype=np.float32)


def pack_matmulnbits(qw: QuantizedWeight) -> PackedNBits:
    """Lay out a QuantizedWeight W[N, K] for MatMulNBits exactly (no re-quantization)."""
    if qw.bits not in (4, 8):
        raise ValueError(f"unsupported quantization bits: {qw.bits} (expected 4 or 8)")
    bs = qw.block_size
    if bs < 16 or bs & (bs - 1):
        raise ValueError(f"MatMulNBits block_size must be a power of two >= 16, got {bs}")
    n, k = qw.q.shape
    if k % bs:
        raise ValueError(f"input dim {k} is not a multiple of block_size {bs}")
    if qw.q.max(initial=0) >= (1 << qw.bits):
        raise ValueError(f"quantized levels exceed {qw.bits} bits (max {int(qw.q.max())})")
    zp_int, offset = split_fractional_zero_point(qw)
    return PackedNBits(
        b=_pack_levels(qw.q, qw.bits, bs),
        scales=np.ascontiguousarray(qw.scale, dtype=np.float32).reshape(-1),
        zero_points=_pack_zero_points(zp_int, qw.bits),
        n=n,
        k=k,
        bits=qw.bits,
        block_size=bs,
        offset=offset,
    )


def concat_quantized(parts: list[QuantizedWeight]) -> QuantizedWeight:
    """Stack quantized weights along `out` (fused QKV / gate-up); same bits and block size."""
    first = parts[0]
    for p in parts[1:]:
        if (p.bits, p.block_size, p.q.shape[1]) != (first.bits, first.block_size, first.q.shape[1]):
            raise ValueError(
                f"cannot fuse quantized weights: bits/block/in {p.bits}/{p.block_size}/"
                f"{p.q.shape[1]} vs {first.bits}/{first.block_size}/{first.q.shape[1]}"
            )
    return QuantizedWeight(
        q=np.concatenate([p.q for p in parts], axis=0),
        scale=np.concatenate([p.scale for p in parts], axis=0),
        zero_point=np.concatenate([p.zero_point for p in parts], axis=0),
        block_size=first.block_size,
        bits=first.bits,
        source=first.source,
    )


@dataclass(frozen=True)
class PackedQTiles:
    """ai.edgespec QMatMul initializers and attributes (native/src/ops/qmatmul.h):
    W = scale * (q - zero_point) + m."""

    q: np.ndarray  # uint8 [tiles, nb, 64 * bits]: 16 columns x 32 inputs of one block
    scale: np.ndarray  # float32 [tiles, nb, 16]
    m: np.ndarray  # float16 [tiles, nb, 16]
    n: int  # output features (tiles * 16 - padding)
    bits: int  # 4 or 8
    zero_point: int  # z: W = scale * (q - z) + m


Q_TILE = 16  # output columns per tile (qmatmul.h kQTile)
Q_BLOCK = 32  # inputs per block (kQBlock)


def pack_qtiles(qw: QuantizedWeight, m16: np.ndarray, zero_point: int = 0) -> PackedQTiles:
    """Lay out 4- or 8-bit levels qw.q [N, K] (blocks of 32), scales [N, nb] and the float16
    offsets m16 [N, nb] (W = scale * (q - zero_point) + m) in QMatMul's tiles; N is padded to a
    multiple of 16 with zero columns. 4 bits: byte 4j + t of group i (of 4) of a tile's block
    holds column j's input 4i + t in its low nibble and input 4(i + 4) + t in its high nibble;
    8 bits: byte 4j + t of group i (of 8) holds column j's input 4i + t."""
    if qw.bits not in (4, 8) or qw.block_size != Q_BLOCK:
        raise ValueError(
            f"QMatMul needs 4 or 8 bits in blocks of 32, got {qw.bits} / {qw.block_size}"
        )
    n, k = qw.q.shape
    nb, tiles = k // Q_BLOCK, -(-n // Q_TILE)
    pad = tiles * Q_TILE - n

    def tiled(a: np.ndarray) -> np.ndarray:  # [N, ...] -> [tiles, 16, ...], zero padded
        a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
        return a.reshape(tiles, Q_TILE, *a.shape[1:])

    q = tiled(qw.q.astype(np.uint8)).reshape(tiles, Q_TILE, nb, 8, 4)  # [t, j, b, g, u]
    if qw.bits == 4:
        q = (q[:, :, :, :4] & 0x0F) | ((q[:, :, :, 4:] & 0x0F) << 4)  # [t, j, b, i, u]
    packed = q.transpose(0, 2, 3, 1, 4).reshape(tiles, nb, 64 * qw.bits)  # [t, b, i*64 + j*4 + u]
    return PackedQTiles(
        q=np.ascontiguousarray(packed, dtype=np.uint8),
        scale=np.ascontiguousarray(tiled(qw.scale.astype(np.float32)).transpose(0, 2, 1)),
        m=np.ascontiguousarray(tiled(m16.astype(np.float16)).transpose(0, 2, 1)),
        n=n,
        bits=qw.bits,
        zero_point=zero_point,
    )


F_TILE = 16  # output columns per tile of FMatMul's float32 weights (fmatmul.h kFTile)


def pack_ftiles(w: np.ndarray) -> np.ndarray:
    """A float weight w [N, K] (out, in) in FMatMul's tiles: float32 [ceil(N/16), K, 16], element
    [t, k, j] = w[16 t + j, k], N padded to a multiple of 16 with zero columns."""
    n, k = w.shape
    tiles = -(-n // F_TILE)
    padded = np.zeros((tiles * F_TILE, k), np.float32)  # [N', K]
    padded[:n] = w
    return np.ascontiguousarray(padded.reshape(tiles, F_TILE, k).transpose(0, 2, 1))


def unpack_ftiles(tiles: np.ndarray, n: int) -> np.ndarray:
    """pack_ftiles' inverse: float32 [ceil(N/16), K, 16] -> w [N, K]."""
    t, k, _ = tiles.shape
    return np.ascontiguousarray(tiles.transpose(0, 2, 1).reshape(t * F_TILE, k)[:n])
