"""edgespec.export: Hugging Face / GGUF checkpoints -> edgespec bundles (needs the export extra).

Names are imported lazily so that light entry points (`python -m edgespec.export.recipes`) do not
pull in onnx / torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "PRECISIONS": "graph",
    "GraphOptions": "graph",
    "build_decoder": "graph",
    "add_export_arguments": "main",
    "run_export": "main",
    "SUPPORTED_ARCHITECTURES": "model_ir",
    "ArchConfig": "model_ir",
    "LoadedModel": "model_ir",
    "QuantizedWeight": "model_ir",
    "TokenizerData": "model_ir",
    "ModelSpec": "writer",
    "check_vocab_compatible": "writer",
    "write_bundle": "writer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
