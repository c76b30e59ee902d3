"""llama.cpp (llama-cpp-python) peer: plain decoding and prompt-lookup decoding on the GGUF."""

from __future__ import annotations

import time
from typing import Any

NGRAM_TOKENS = 10  # LlamaPromptLookupDecoding num_pred_tokens (its own default)


class Backend:
    name = "llamacpp"

    def __init__(self, cfg: dict[str, Any]) -> None:
        import llama_cpp
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        if not cfg.get("gguf"):
            raise RuntimeError("no GGUF file for llama.cpp (pass --peer-model FILE.gguf)")
        self.version = f"llama-cpp-python {llama_cpp.__version__}"
        threads = int(cfg["threads"])
        # Prompt lookup needs logits for every position (llama-cpp-python turns logits_all on
        # when a draft_model is given), so each method gets its own Llama (its own worker).
        self.method = cfg.get("method", "none")
        self._lookup = LlamaPromptLookupDecoding(num_pred_tokens=NGRAM_TOKENS)
        self.llm = llama_cpp.Llama(
            model_path=cfg["gguf"],
            n_ctx=int(cfg["capacity"]),
            n_batch=512,
            n_threads=threads,
            n_threads_batch=threads,
            seed=0,
            # logits_all must be explicit with a draft model: llama-cpp-python sizes its
            # logits buffer from this argument (n_batch rows otherwise), and verification of
            # drafts past position n_batch would then fail
            logits_all=self.method == "ngram",
            draft_model=self._lookup if self.method == "ngram" else None,
            verbose=False,
        )
        self.num_draft_tokens = NGRAM_TOKENS
        self._evals = 0
        inner_eval = self.llm.eval

        def counting_eval(tokens: Any) -> None:  # one call = one target forward (or the prefill)
            self._evals += 1
            inner_eval(tokens)

        self.llm.eval = counting_eval  # type: ignore[method-assign]

    def methods(self) -> dict[str, str | None]:
        return {
            "none": None,
            "ngram": None,
            "model": "llama-cpp-python has no draft-model speculation (prompt lookup only)",
        }

    def generate(self, method: str, ids: list[int], max_new: int, eos: list[int]) -> dict:
        self.llm.reset()  # no prefix reuse across requests: every method prefills from scratch
        self._evals = 0
        out: list[int] = []
        ttft = 0.0
        t0 = time.perf_counter()
        gen = self.llm.generate(
            ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True
        )
        reason = "length"
        for tok in gen:
            if not out:
                ttft = time.perf_counter() - t0
            out.append(int(tok))
            if tok in eos:
                reason = "eos"
                break
            if len(out) >= max_new:
                break
        total = time.perf_counter() - t0
        gen.close()
        return {
            "tokens": out,
            "ttft_s": ttft,
            "total_s": total,
            "finish_reason": reason,
            "steps": max(self._evals - 1, 0),
        }
