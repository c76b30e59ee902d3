"""edgespec: on-device speculative decoding on ONNX Runtime.

    import edgespec
    with edgespec.Session("models/smollm2-135m") as s:
        print(s.generate([{"role": "user", "content": "What is the capital of France?"}]).text)

Importing edgespec needs only onnxruntime, numpy, tokenizers and jinja2; the export pipeline
(`edgespec.export`, torch + transformers) is imported only by `edgespec export`.
"""

from ._ort import ensure_runtime as _ensure_runtime

_ensure_runtime()  # dlopen libonnxruntime before the engine is used; ImportError if unusable

from ._native import available_providers, runtime_version  # noqa: E402
from .bundle import Bundle, BundleError, load_bundle  # noqa: E402
from .config import GenerationConfig  # noqa: E402
from .session import GenerationResult, GenerationStats, Session, TextStream  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Bundle",
    "BundleError",
    "GenerationConfig",
    "GenerationResult",
    "GenerationStats",
    "Session",
    "TextStream",
    "available_providers",
    "load_bundle",
    "runtime_version",
    "__version__",
]
