"""The machine a benchmark ran on: CPU, cores, memory, GPUs, load, versions."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpus() -> list[str]:
    """NVIDIA GPUs as `nvidia-smi` names them (name, driver, memory); [] without the tool."""
    try:
        p = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return (
        [line.strip() for line in p.stdout.splitlines() if line.strip()] if not p.returncode else []
    )


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    try:
        p = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    return p.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe(threads: int) -> dict[str, Any]:
    import edgespec

    try:
        import onnxruntime

        ort_py = onnxruntime.__version__
    except ImportError:
        ort_py = None
    return {
        "cpu": cpu_model(),
        "cores_usable": usable_cores(),
        "threads": threads,
        "memory_gb": _mem_total_gb(),
        "gpus": gpus(),
        "load_average_end": load_average(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "edgespec": edgespec.__version__,
        "onnxruntime": edgespec.runtime_version(),
        "onnxruntime_python": ort_py,
        "git_commit": _git_commit(),
    }
