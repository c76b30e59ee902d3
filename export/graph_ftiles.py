"""A tied embedding table kept once, in FMatMul's tiles (export/quantize.py pack_ftiles): the LM
head runs FMatMul over the tiles, and the token embedding gathers its rows back out of them, so
the graph holds no second [V, H] copy."""

from __future__ import annotations

from typing import Protocol


class _Nodes(Protocol):  # the parts of graph._Builder used here
    def const_i64(self, name: str, values: list[int]) -> str: ...
    def node(self, op: str, inputs: list[str], name: str, **attrs) -> list[str]: ...


def gather_tiled_rows(b: _Nodes, tiles: str, ids: str, hidden: int, name: str) -> str:
    """ids int64 [1,n] -> rows [1,n,H] of a table W [V, H] held as tiles [ceil(V/16), H, 16]:
    row v = tiles[v // 16, :, v % 16] (one tile block gathered per token, then its lane)."""
    sixteen = b.const_i64("const/int64_16", [16])
    (tile,) = b.node("Div", [ids, sixteen], f"{name}/tile")  # [1,n]: v // 16 (v >= 0)
    (lane,) = b.node("Mod", [ids, sixteen], f"{name}/lane")  # [1,n]: v % 16
    (blocks,) = b.node("Gather", [tiles, tile], f"{name}/blocks", axis=0)  # [1,n,H,16]
    (lane4,) = b.node("Unsqueeze", [lane, b.const_i64("const/axes_2_3", [2, 3])], f"{name}/lane4")
    shape = b.const_i64(f"{name}/index_shape", [1, 1, hidden, 1])
    (index,) = b.node("Expand", [lane4, shape], f"{name}/index")  # [1,n,H,1]: the lane per row
    (picked,) = b.node("GatherElements", [blocks, index], f"{name}/pick", axis=3)  # [1,n,H,1]
    (rows,) = b.node("Squeeze", [picked, b.const_i64("const/axes_3", [3])], name)  # [1,n,H]
    return rows
