"""onnxruntime-genai peer: its own export (model builder, CPU, at the bundle target's precision)
and its own generator loop, plain and with its n-gram speculative decoding (and draft-model
speculation when a draft export is given)."""

from __future__ import annotations

import json
import time
from typing import Any

NGRAM_SIZE = 3  # matches the last 2 committed tokens (the docs' suggested start: 3 or 4)
NGRAM_DRAFT_TOKENS = 8


class Backend:
    name = "ortgenai"

    def __init__(self, cfg: dict[str, Any]) -> None:
        import numpy as np
        import onnxruntime_genai as og

        if not cfg.get("genai_dir"):
            raise RuntimeError("no onnxruntime-genai export of the model")
        self.og, self.np = og, np
        self.version = f"onnxruntime-genai {og.__version__}"
        self.model = og.Model(self._config(cfg["genai_dir"], int(cfg["threads"])))
        self.spec_model = None  # composite config: target decoder + model.draft decoder
        if cfg.get("genai_spec_dir"):
            self.spec_model = og.Model(self._config(cfg["genai_spec_dir"], int(cfg["threads"])))
        self.num_draft_tokens = NGRAM_DRAFT_TOKENS
        self._draft_reason = (
            None
            if self.spec_model
            else "needs a composite genai_config (target + model.draft); the bench builds none yet"
            if cfg.get("bundle_has_draft")
            else "bundle has no draft model"
        )

    def _config(self, path: str, threads: int) -> Any:
        config = self.og.Config(path)
        opts = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": opts}}}))
        return config

    def methods(self) -> dict[str, str | None]:
        return {"none": None, "ngram": None, "model": self._draft_reason}

    def generate(self, method: str, ids: list[int], max_new: int, eos: list[int]) -> dict:
        og = self.og
        model = self.spec_model if method == "model" else self.model
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + max_new)
        if method == "ngram":
            params.set_speculative_options(
                ngram_size=NGRAM_SIZE, max_draft_tokens=NGRAM_DRAFT_TOKENS
            )
        elif method == "model":
            params.set_speculative_options(max_draft_tokens=4)
        out: list[int] = []
        ttft = 0.0
        t0 = time.perf_counter()
        gen = og.Generator(model, params)
        gen.append_tokens(self.np.array([ids], dtype=self.np.int32))
        reason = "length"
        while not gen.is_done() and len(out) < max_new:
            gen.generate_next_token()
            tok = int(gen.get_next_tokens()[0])
            if not out:
                ttft = time.perf_counter() - t0
            out.append(tok)
            if tok in eos:
                reason = "eos"
                break
        total = time.perf_counter() - t0
        res = {"tokens": out, "ttft_s": ttft, "total_s": total, "finish_reason": reason}
        res.update(self._spec_stats(gen, method, len(out)))
        del gen
        return res

    def _spec_stats(self, gen: Any, method: str, n: int) -> dict[str, Any]:
        if method == "none":
            return {"steps": max(n - 1, 0)}
        st = dict(gen.get_speculative_stats())
        # target forwards after the prefill: verify / re-anchor passes, plus the standard
        # single-token steps taken when the n-gram lookup finds nothing
        fwd = int(st.get("target_forward_passes", 0)) + int(st.get("standard_fallback_steps", 0))
        return {
            "steps": fwd,
            "drafted": int(st.get("draft_tokens_evaluated", 0)),
            "accepted": int(st.get("draft_tokens_accepted", 0)),
            "peer_stats": {k: v for k, v in st.items() if isinstance(v, (int, float, bool))},
        }
