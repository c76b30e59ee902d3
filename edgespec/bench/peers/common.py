"""Helpers shared by the peer workers and the harness: stdlib only.

The peer workers run under another interpreter (the peers venv) as plain scripts, so this module
must not import edgespec or anything outside the standard library.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import IO, Any

_STATUS = "/proc/self/status"


def _status_kb(field: str) -> int | None:
    try:
        with open(_STATUS, encoding="ascii") as f:
            m = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def rss_kb() -> int | None:
    """Current resident set size of this process (kB), None where /proc is unavailable."""
    return _status_kb("VmRSS")


def peak_rss_kb() -> int | None:
    """Resident high-water mark of this process (kB) since start or the last `reset_peak_rss`."""
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except (ImportError, OSError):
        return None


def reset_peak_rss() -> bool:
    """Reset the resident high-water mark to the current RSS (Linux >= 4.0: clear_refs "5").

    Returns False when the kernel refuses: `peak_rss_kb` then covers the whole process lifetime.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Channel:
    """JSON-lines protocol over a pair of text streams (one object per line)."""

    def __init__(self, reader: IO[str], writer: IO[str]) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, obj: dict[str, Any]) -> None:
        self.writer.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.writer.flush()

    def recv(self) -> dict[str, Any] | None:
        line = self.reader.readline()
        if not line:
            return None
        return json.loads(line)


def private_stdout() -> Channel:
    """A Channel on the real stdout, with fd 1 redirected to stderr.

    Native libraries that print to stdout (llama.cpp, builders) then cannot corrupt the protocol.
    """
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    writer = os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1)
    return Channel(sys.stdin, writer)
