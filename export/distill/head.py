"""The draft head in torch, exactly as docs/bundle-format.md ("Feature-level draft head") and
export/eagle_graph.py build it in ONNX:

    x   = fc([embed(t_{p+1}) ; f_p])      fc: Linear(2H -> H), no bias
    h   = LlamaDecoderLayer(x)            rotary position p, causal attention
    f^  = RMSNorm_out(h)                  predicted feature f^_{p+1}
    z   = f^ @ lm_head^T                  logits over the draft vocabulary

The embedding table and the LM-head rows are the target's, frozen. The table is rounded to
float16 here because the ONNX graph stores it as float16 (Gather, then Cast): the two agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..model_ir import ArchConfig

LAYER = "model.layers.0"
INITS = ("last-layer", "random")


def llama_config(cfg: ArchConfig) -> Any:
    """transformers LlamaConfig of the head's single layer (sdpa attention)."""
    import transformers

    rope = {"rope_type": "default", **(cfg.rope_scaling or {}), "rope_theta": cfg.rope_theta}
    lc = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=1,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=cfg.rms_norm_eps,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters=rope,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        attention_dropout=0.0,
        tie_word_embeddings=False,
    )
    lc._attn_implementation = "sdpa"
    return lc


class KeepKV:
    """Stands in for a transformers Cache during an unrolled training step: the first call's
    keys/values are kept and prepended to the second call's, so step-2 queries can attend to
    the step-1 keys of earlier positions (as at drafting time)."""

    def __init__(self) -> None:
        self.kv: tuple[torch.Tensor, torch.Tensor] | None = None  # [B, nkv, n, D] each

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *args, **kwargs):
        if self.kv is None:
            self.kv = (k, v)
            return k, v
        return torch.cat([self.kv[0], k], 2), torch.cat([self.kv[1], v], 2)  # [B, nkv, 2n, D]


class EagleHead(nn.Module):
    """Trainable: fc, the decoder layer, the output norm. Frozen: embedding, LM-head rows."""

    def __init__(self, cfg: ArchConfig, frozen: dict, token_map: np.ndarray, init: str, seed: int):
        from transformers.models.llama.modeling_llama import (
            LlamaDecoderLayer,
            LlamaRMSNorm,
            LlamaRotaryEmbedding,
        )

        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown head init {init!r} (choose from {', '.join(INITS)})")
        self.cfg = cfg
        h = cfg.hidden_size
        lc = llama_config(cfg)
        embed = frozen["embed"].to(torch.float16).to(torch.float32)  # [V_target, H]
        rows = frozen["lm_head"][torch.as_tensor(token_map, dtype=torch.long)]  # [V_draft, H]
        self.register_buffer("embed", embed, persistent=False)
        self.register_buffer("lm_head", rows.clone(), persistent=False)
        torch.manual_seed(seed)
        self.fc = nn.Linear(2 * h, h, bias=False)
        self.layer = LlamaDecoderLayer(lc, layer_idx=0)
        self.rotary = LlamaRotaryEmbedding(lc)
        self.norm = LlamaRMSNorm(h, eps=cfg.rms_norm_eps)
        with torch.no_grad():
            self.norm.weight.copy_(frozen["norm"])
            if init == "last-layer":
                own = self.layer.state_dict()
                last = {k: v for k, v in frozen["last_layer"].items() if k in own}
                self.layer.load_state_dict(last, strict=False)
            else:
                for name, p in self.layer.named_parameters():
                    if "norm" not in name:
                        p.normal_(0.0, 0.02)

    def features(
        self,
        ids: torch.Tensor,
        feats: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv: KeepKV | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ids int64 [B, n] (t_{p+1}), feats float32 [B, n, H] (f_p) at positions (int64 [n],
        default 0..n-1); mask: None = causal, else bool [1, 1, n, n_keys] (True = attend).
        Returns f^ [B, n, H]."""
        n = ids.shape[1]
        pos = (torch.arange(n) if positions is None else positions).unsqueeze(0)  # [1, n]
        e = nn.functional.embedding(ids, self.embed)  # [B, n, H]
        x = self.fc(torch.cat([e, feats], -1))  # [B, n, H]
        cos_sin = self.rotary(x, pos)  # ([1, n, D], [1, n, D])
        h = self.layer(
            x,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=kv,
            use_cache=kv is not None,
            position_embeddings=cos_sin,
        )  # [B, n, H]
        return self.norm(h)  # [B, n, H]

    def logits(self, f_hat: torch.Tensor) -> torch.Tensor:
        """f_hat float32 [..., H] -> logits [..., V_draft]."""
        return f_hat @ self.lm_head.T

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("rotary.")}

    def export_weights(self) -> dict[str, np.ndarray]:
        """float32 numpy arrays under the names write_eagle expects."""

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().to(torch.float32).contiguous().numpy().copy()

        weights = {
            "model.embed_tokens.weight": arr(self.embed),  # [V_target, H]
            "fc.weight": arr(self.fc.weight),  # [H, 2H]
            "model.norm.weight": arr(self.norm.weight),  # [H]
            "lm_head.weight": arr(self.lm_head),  # [V_draft, H]
        }
        for name, t in self.layer.state_dict().items():
            weights[f"{LAYER}.{name}"] = arr(t)
        return weights


def unroll_mask(positions: torch.Tensor, n: int) -> torch.Tensor:
    """bool [1, 1, m, n + m] for step-2 queries at `positions` (int64 [m]) after a step 1 over
    n positions: query r attends to step-1 keys j < positions[r] and to its own step-2 key."""
    m = positions.shape[0]
    first = torch.arange(n).unsqueeze(0) < positions.unsqueeze(1)  # [m, n]
    second = torch.eye(m, dtype=torch.bool)  # [m, m]
    return torch.cat([first, second], 1).view(1, 1, m, n + m)
