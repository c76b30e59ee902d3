"""Generation parameters: one frozen dataclass, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DRAFTERS = ("auto", "none", "ngram", "model", "eagle")
PROVIDERS = ("cpu", "cuda", "tensorrt")  # ONNX Runtime execution providers a Session can use
MAX_NEW_TOKENS_LIMIT = 1 << 20  # anything above is a mistake, not a request


@dataclass(frozen=True)
class GenerationConfig:
    """What one `Session.generate` call does. Invalid values raise ValueError/TypeError."""

    max_new_tokens: int = 256  # tokens to generate at most (>= 1)
    temperature: float = 0.0  # 0 = greedy; > 0 samples from softmax(logits / temperature)
    top_p: float = 1.0  # nucleus sampling mass, in (0, 1]; 1 = off
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    seed: int | None = None  # RNG seed for sampling; None = fresh entropy each call
    stop: tuple[str, ...] = field(default_factory=tuple)  # stop strings (not emitted)
    drafter: str = (
        "auto"  # auto | none | ngram | model | eagle ("auto": the draft head if the bundle has
        # one, else the draft model if present, else ngram)
    )
    num_draft_tokens: int | None = None  # max drafted tokens per step; None = drafter default
    adaptive: bool = True  # adapt draft length to acceptance and verify cost

    def __post_init__(self) -> None:
        _check_int("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS_LIMIT)
        _check_float("temperature", self.temperature)
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        _check_float("top_p", self.top_p)
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        _check_int("top_k", self.top_k, 0, None)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, (1 << 64) - 1)
        if self.drafter not in DRAFTERS:
            raise ValueError(
                f"unknown drafter {self.drafter!r}; choose one of {', '.join(DRAFTERS)}"
            )
        if self.num_draft_tokens is not None:
            _check_int("num_draft_tokens", self.num_draft_tokens, 0, 32)
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        for s in stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop strings must be non-empty strings, got {s!r}")
        object.__setattr__(self, "stop", stop)


def _check_int(name: str, value: object, lo: int, hi: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_float(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
