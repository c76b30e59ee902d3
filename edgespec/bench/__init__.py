"""edgespec.bench: Spec-Bench metrics (speedup, mean accepted tokens, tokens/s, time to first
token, peak memory, output identity) for edgespec's drafters and for peer runtimes
(onnxruntime-genai, transformers, llama.cpp) on the same model.

`edgespec bench BUNDLE ...` (see `bench.cli`); `harness.run(BenchConfig(...))` returns the
results dict without printing anything.
"""

from __future__ import annotations

from typing import Any


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)


def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from .harness import run as harness_run

    return harness_run(*args, **kwargs)
