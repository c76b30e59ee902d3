"""Loading ONNX Runtime into the native core (edgespec/_ort.py), each case in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgespec import _ort


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_find_library_prefers_the_onnxruntime_wheel():
    """The library inside the importable onnxruntime package (site-packages, or wherever
    PYTHONPATH puts it), found without importing the package."""
    import importlib.util

    path = _ort.find_library()
    assert Path(path).is_file() and "libonnxruntime.so" in Path(path).name
    package = Path(importlib.util.find_spec("onnxruntime").submodule_search_locations[0])
    assert Path(path).parent == package / "capi"


def test_explicit_library_path_and_no_second_onnxruntime_import():
    lib = _ort.find_library()
    code = (
        "import sys, edgespec\n"
        "from edgespec import _native\n"
        "assert 'onnxruntime' not in sys.modules, 'edgespec imported the onnxruntime module'\n"
        "print(_native.runtime_version())\n"
    )
    out = run_python(code, EDGESPEC_ORT_LIBRARY=lib)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_missing_library_is_an_import_error():
    out = run_python("import edgespec", EDGESPEC_ORT_LIBRARY="/nonexistent/libonnxruntime.so")
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "EDGESPEC_ORT_LIBRARY" in out.stderr


def test_a_library_that_is_not_ort_is_an_import_error():
    libm = next(
        (
            p
            for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6")
            if Path(p).exists()
        ),
        None,
    )
    if libm is None:
        pytest.skip("no libm.so.6 at a known path")
    out = run_python("import edgespec", EDGESPEC_ORT_LIBRARY=libm)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "OrtGetApiBase" in out.stderr


def test_coexists_with_the_onnxruntime_module(tiny_bundle):
    """`import onnxruntime` (its own statically linked ORT) and the dlopen'ed library together."""
    e2e = Path(__file__).parent
    code = f"""
import sys
sys.path.insert(0, {str(e2e)!r})
import onnxruntime as ort
import edgespec
from edgespec import _native
from test_engine import model_spec
bundle = {str(tiny_bundle)!r}
from edgespec._ort import ops_library
so = ort.SessionOptions()
so.register_custom_ops_library(ops_library())
py_session = ort.InferenceSession(bundle + "/target/model.onnx", so)
engine = _native.Engine(model_spec(bundle), None, _native.ProviderSpec(threads=1))
r = engine.generate([1, 2, 3], _native.GenConfig(max_new_tokens=8))
assert len(r.tokens) == 8 and py_session.get_inputs()
print(ort.__version__, _native.runtime_version())
"""
    out = run_python(code)
    assert out.returncode == 0, out.stderr
