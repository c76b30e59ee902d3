"""The in-process runner: edgespec's own drafters on one Session.

Every runner (this one and `peer_client.PeerRunner`) has the same surface: `runtime`,
`version`, `methods` ({method: None when available, else the reason it is not}),
`generate(method, ids, messages, max_new_tokens) -> dict` and `close()`. Methods are named
like edgespec's drafters: "none" (plain decoding), "ngram" (prompt lookup), "model" (draft),
"eagle" (distilled draft head).
"""

from __future__ import annotations

import time
from typing import Any

from .peers.common import peak_rss_kb, reset_peak_rss, rss_kb

METHODS = ("none", "ngram", "model", "eagle")


class EdgespecRunner:
    runtime = "edgespec"

    def __init__(self, session: Any, drafters: list[str], num_draft_tokens: int | None) -> None:
        import edgespec

        self.session = session
        self.version = f"edgespec {edgespec.__version__} (ORT {edgespec.runtime_version()})"
        self.num_draft_tokens = num_draft_tokens
        self.methods: dict[str, str | None] = {}
        for d in drafters:
            if d == "model" and not session.has_draft:
                self.methods[d] = "bundle has no draft model"
            elif d == "eagle" and not session.has_eagle:
                self.methods[d] = "bundle has no draft head (edgespec distill)"
            else:
                self.methods[d] = None
        self.load_rss_kb = rss_kb()

    def generate(
        self, method: str, ids: list[int], messages: list[dict[str, str]], max_new_tokens: int
    ) -> dict[str, Any]:
        first: list[float] = []

        def on_text(_delta: str) -> None:
            if not first:
                first.append(time.perf_counter())

        # Every request prefills its whole prompt, as Spec-Bench times it and as the peers do
        # (llama.cpp resets per request): the methods of a question share its prompt, and a
        # second turn would otherwise find the first turn's KV kept (Session.forget).
        self.session.forget()
        reset = reset_peak_rss()
        t0 = time.perf_counter()
        r = self.session.generate(
            messages,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            drafter=method,
            num_draft_tokens=self.num_draft_tokens,
            callback=on_text,
        )
        wall = time.perf_counter() - t0
        if list(r.prompt_tokens) != list(ids):
            raise RuntimeError("edgespec encoded the conversation differently from the harness")
        st = r.stats
        return {
            "tokens": list(r.tokens),
            "finish_reason": r.finish_reason,
            "total_s": wall,
            "ttft_s": (first[0] - t0) if first else st.time_to_first_token_s,
            "steps": st.steps,
            "drafted": st.drafted,
            "accepted": st.accepted,
            "peak_rss_kb": peak_rss_kb(),
            "rss_kb": rss_kb(),
            "peak_rss_reset": reset,
            "engine": st.as_dict(),
        }

    def close(self) -> None:
        self.session.close()
