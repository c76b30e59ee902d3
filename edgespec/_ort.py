"""Locate libonnxruntime and load it into the native core.

The native module is built against ORT's headers only and dlopens the library at run time, so the
CPU `onnxruntime` wheel, `onnxruntime-gpu` and a system install (Jetson) all work. The library is
found WITHOUT importing the `onnxruntime` Python module (that would load a second ORT):

1. env ``EDGESPEC_ORT_LIBRARY``: an explicit path;
2. the installed ``onnxruntime`` package: ``<package>/capi/libonnxruntime.so*``;
3. ``libonnxruntime.so`` through the system loader.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ENV_VAR = "EDGESPEC_ORT_LIBRARY"

_loaded_path: str | None = None


def _library_name_key(path: Path) -> tuple:
    """Prefer the fully versioned file name (libonnxruntime.so.1.31.1 over .so.1 / .so)."""
    suffix = path.name.split(".so", 1)[1]
    return (len(suffix.split(".")), path.name)


def find_library() -> str:
    """Path of the ORT shared library to load ("" means: ask the system loader)."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        if not Path(explicit).is_file():
            raise ImportError(f"{ENV_VAR}={explicit!r} is not a file")
        return explicit
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if locations:
        capi = Path(locations[0]) / "capi"
        libs = [
            p
            for p in capi.glob("libonnxruntime.so*")
            if p.is_file() and not p.name.startswith("libonnxruntime_providers")
        ]
        if libs:
            return str(max(libs, key=_library_name_key))
    return ""  # system loader: libonnxruntime.so (e.g. Jetson's JetPack install)


def ops_library() -> str:
    """Path of libedgespec_ops.so, edgespec's custom ops (ai.edgespec) for sessions of the
    onnxruntime Python package: ``SessionOptions.register_custom_ops_library(ops_library())``.
    edgespec's own engine has them built in."""
    from . import _native

    path = Path(_native.__file__).with_name("libedgespec_ops.so")
    if not path.is_file():
        raise ImportError(f"edgespec's custom-op library is missing: {path} (reinstall edgespec)")
    return str(path)


def ensure_runtime() -> str:
    """Load ORT into edgespec._native once; return the library path used.

    Raises ImportError with the reason when the library cannot be found or loaded, or when its
    API is older than the headers edgespec was built with.
    """
    global _loaded_path
    if _loaded_path is not None:
        return _loaded_path
    from . import _native

    path = find_library()
    try:
        _native.load_runtime(path)
    except RuntimeError as err:
        where = path or "libonnxruntime.so (system loader)"
        raise ImportError(
            f"edgespec could not load ONNX Runtime from {where}: {err}. Install the "
            f"'onnxruntime' (or 'onnxruntime-gpu') package or set {ENV_VAR} to the library path."
        ) from err
    _loaded_path = path or "libonnxruntime.so"
    return _loaded_path


__all__ = ["ENV_VAR", "ensure_runtime", "find_library", "ops_library"]
