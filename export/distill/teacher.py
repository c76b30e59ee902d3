"""The teacher: a torch model of the bundle's target (a local HF directory or a GGUF file),
checked against the bundle's ONNX target before any time is spent on it, and the bundle's own
tokenizer + chat template (authoritative for token ids)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..model_ir import ArchConfig

MIN_AGREEMENT = 0.8  # int4 targets agree ~95% with their fp32 source; unrelated models ~0%
PROBE_TOKENS = 32
PROBE_CHAT = [{"role": "user", "content": "Name three things that make a good breakfast."}]
PROBE_ANSWER = (
    "A good breakfast usually has some protein, such as eggs or yogurt, some whole grains like "
    "oats or bread, and a piece of fruit for vitamins and fibre."
)


class BundleText:
    """Encode chats exactly as the runtime does: the bundle's chat template and tokenizer.json."""

    def __init__(self, bundle: Path, manifest: dict):
        from tokenizers import Tokenizer

        tok = manifest["tokenizer"]
        self.tokenizer = Tokenizer.from_file(str(bundle / tok.get("path", "tokenizer.json")))
        tpl = tok.get("chat_template")
        self.template = (bundle / tpl).read_text(encoding="utf-8") if tpl else None
        self.special = dict(tok.get("special_tokens") or {})
        self.eos_ids = [int(i) for i in tok.get("eos_token_ids") or []]
        if not self.eos_ids:
            raise ValueError("the bundle's tokenizer has no eos_token_ids: cannot end answers")
        pad = tok.get("pad_token_id")
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        self.bos_id = tok.get("bos_token_id")
        self.add_bos = bool(tok.get("add_bos_token"))

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of `messages` rendered with the generation prompt (as Session.encode)."""
        if self.template is None:  # no template: the turns as plain text, as a raw prompt
            text = "\n\n".join(m["content"] for m in messages)
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            return [self.bos_id, *ids] if self.add_bos and self.bos_id is not None else ids
        from edgespec.text import render_chat

        text = render_chat(self.template, messages, self.special, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def teacher_path(arg: str | None, target: dict) -> Path:
    """--teacher, else the manifest's models.target.source_path; clear error when neither."""
    raw = arg or target.get("source_path")
    if not raw:
        raise ValueError(
            "this bundle does not record its source checkpoint: pass --teacher PATH "
            "(the GGUF file or HF model directory it was exported from)"
        )
    path = Path(raw).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    return path.absolute()


def load_teacher(path: Path, progress: bool = False) -> Any:
    """float32 transformers causal LM from a GGUF file or a local HF directory (eval mode)."""
    import torch
    import transformers

    if not progress:
        transformers.utils.logging.disable_progress_bar()
    auto = transformers.AutoModelForCausalLM
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in teacher directory: {path}")
        model = auto.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    elif path.suffix.lower() == ".gguf":
        model = auto.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32, local_files_only=True
        )
    else:
        raise ValueError(f"teacher must be a .gguf file or an HF model directory: {path}")
    return model.eval()


def arch_config(model: Any) -> ArchConfig:
    """The teacher's ArchConfig (the fields export's loaders produce)."""
    from ..hf_loader import arch_from_hf_config

    return arch_from_hf_config(model.config)


def check_shapes(cfg: ArchConfig, target: dict, where: str) -> None:
    """ValueError when the teacher's shapes differ from the bundle's target entry."""
    fields = {
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "num_kv_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
    }
    for key, value in fields.items():
        if int(target[key]) != value:
            raise ValueError(
                f"teacher {where} does not match the bundle's target: "
                f"{key} {value} vs {target[key]}"
            )


def probe_ids(text: BundleText) -> list[int]:
    """A short teacher-forced probe: a chat prompt plus a fixed answer, PROBE_TOKENS long."""
    ids = text.encode_chat(PROBE_CHAT) + text.encode_text(PROBE_ANSWER)
    return ids[-PROBE_TOKENS:] if len(ids) > PROBE_TOKENS else ids


def top1_agreement(model: Any, bundle: Path, target: dict, ids: list[int]) -> float:
    """Fraction of positions where the teacher's and the ONNX target's argmax agree."""
    import torch

    from ..verify import SharedKVDecoder

    onnx_logits = SharedKVDecoder(bundle / target["path"], target).forward(ids, 0)  # [T, V]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]  # [T, V]
    ours = logits.argmax(-1).numpy()  # [T]
    return float(np.mean(ours == onnx_logits.argmax(-1)))


def check_teacher(model: Any, bundle: Path, target: dict, text: BundleText, where: str) -> float:
    """Top-1 agreement on the probe; ValueError below MIN_AGREEMENT."""
    agree = top1_agreement(model, bundle, target, probe_ids(text))
    if agree < MIN_AGREEMENT:
        raise ValueError(
            f"teacher {where} does not match the bundle's target: top-1 agreement "
            f"{agree:.0%} on a probe (need {MIN_AGREEMENT:.0%})"
        )
    return agree


def frozen_tensors(model: Any) -> dict[str, Any]:
    """Copies of what the head takes from the target: embedding, LM head, final norm and the
    last decoder layer's weights (torch float32 tensors)."""
    inner = model.model
    embed = inner.embed_tokens.weight.detach().float().clone()  # [V, H]
    head = model.get_output_embeddings()
    lm_head = embed if head is None else head.weight.detach().float().clone()  # [V, H]
    last = {k: v.detach().float().clone() for k, v in inner.layers[-1].state_dict().items()}
    return {
        "embed": embed,
        "lm_head": lm_head,
        "norm": inner.norm.weight.detach().float().clone(),  # [H]
        "last_layer": last,
    }


def fast_dtype(choice: str = "auto") -> str:
    """ "bfloat16" or "float32" for generation and training: `auto` times a matmul in both and
    takes bfloat16 where this CPU runs it at least 1.5x faster (AVX512-BF16 / AMX). Greedy
    answers of a bfloat16 teacher agree ~98% with the float32 model's and its features are
    within ~2% (RMS): smaller than the training noise added to them."""
    import torch

    if choice != "auto":
        return choice
    a, w = torch.randn(512, 576), torch.randn(2048, 576)  # [512, 576], [2048, 576]
    times = {}
    for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        x, y = a.to(dt), w.to(dt)
        x @ y.T  # warm-up
        t = time.perf_counter()
        for _ in range(5):
            x @ y.T  # [512, 2048]
        times[name] = time.perf_counter() - t
    return "bfloat16" if times["bfloat16"] * 1.5 <= times["float32"] else "float32"
