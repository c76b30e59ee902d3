"""Real-model tests: need the SmolLM2 bundle (`make test-slow` exports it first).

Run: make test-slow   (or: EDGESPEC_BUNDLE=models/smollm2-135m .venv/bin/python -m pytest -m slow)
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2_bundle() -> Path:
    path = Path(os.environ.get("EDGESPEC_BUNDLE", REPO / "models" / "smollm2-135m"))
    if not (path / "edgespec.json").is_file():
        pytest.skip(f"no SmolLM2 bundle at {path}: run `make bundle` (or make test-slow)")
    return path


@pytest.fixture(scope="session")
def smollm2_session(smollm2_bundle):
    import edgespec

    with edgespec.Session(smollm2_bundle) as s:
        yield s


@pytest.fixture(scope="session")
def spec_bench_prompts() -> list[dict]:
    import json

    path = Path(os.environ.get("EDGESPEC_SPEC_BENCH", REPO.parent / "shared" / "data" /
                               "spec_bench_dev.jsonl"))
    if not path.is_file():
        pytest.skip(f"Spec-Bench prompts not found at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
