"""Hugging Face transformers peer (torch, CPU, fp32): plain `generate`, prompt lookup
(`prompt_lookup_num_tokens`) and assisted generation (`assistant_model`) when a draft is given.

The weights are the same as the bundle's: an HF directory made from the GGUF (dequantized, fp32).
"""

from __future__ import annotations

import time
from typing import Any

PROMPT_LOOKUP_TOKENS = 10


class Backend:
    name = "transformers"

    def __init__(self, cfg: dict[str, Any]) -> None:
        import torch
        import transformers

        if not cfg.get("hf_dir"):
            raise RuntimeError("no Hugging Face directory of the model")
        self.cfg = cfg
        torch.set_num_threads(int(cfg["threads"]))
        self.torch = torch
        self.version = f"transformers {transformers.__version__}, torch {torch.__version__}"
        load = transformers.AutoModelForCausalLM.from_pretrained
        self.model = load(cfg["hf_dir"], dtype=torch.float32).eval()
        self.assistant = None
        if cfg.get("hf_draft_dir"):
            self.assistant = load(cfg["hf_draft_dir"], dtype=torch.float32).eval()
        self.num_draft_tokens = PROMPT_LOOKUP_TOKENS
        self._forwards = 0
        self.model.register_forward_pre_hook(self._count)

    def _count(self, *_: Any) -> None:
        self._forwards += 1

    def methods(self) -> dict[str, str | None]:
        if self.assistant is not None:
            return {"none": None, "ngram": None, "model": None}
        draft = "pass --peer-draft (the draft's HF directory or GGUF)"
        if not self.cfg.get("bundle_has_draft"):
            draft = "bundle has no draft model"
        return {"none": None, "ngram": None, "model": draft}

    def generate(self, method: str, ids: list[int], max_new: int, eos: list[int]) -> dict:
        torch = self.torch
        kwargs: dict[str, Any] = {}
        if method == "ngram":
            kwargs["prompt_lookup_num_tokens"] = PROMPT_LOOKUP_TOKENS
        elif method == "model":
            kwargs["assistant_model"] = self.assistant
        timer = _FirstTokenTimer()
        self._forwards = 0
        input_ids = torch.tensor([ids], dtype=torch.long)
        with torch.inference_mode():
            timer.start()
            out = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=list(eos),
                pad_token_id=eos[0],
                streamer=timer,
                **kwargs,
            )
            total = time.perf_counter() - timer.t0
        tokens = [int(t) for t in out[0, len(ids) :].tolist()]
        reason = "eos" if tokens and tokens[-1] in eos else "length"
        return {
            "tokens": tokens,
            "ttft_s": timer.ttft,
            "total_s": total,
            "finish_reason": reason,
            "steps": max(self._forwards - 1, 0),
        }


class _FirstTokenTimer:
    """A generate() streamer that only records when the first new token arrives."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.ttft = 0.0
        self._prompt_seen = False

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.ttft = 0.0
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first put() is the prompt
            self._prompt_seen = True
        elif not self.ttft:
            self.ttft = time.perf_counter() - self.t0

    def end(self) -> None:
        pass
