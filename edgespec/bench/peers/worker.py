"""Peer worker: `python worker.py CONFIG_JSON`, run by the harness under the peer's interpreter.

One worker serves one method (CONFIG_JSON["method"]) of one peer, so that each method's
memory is its own and no state (caches, logits settings) leaks from one method to another.

Protocol (JSON lines; stdout is reserved for it, everything else goes to stderr):
  worker -> {"event": "ready", "peer", "version", "methods": {method: null | reason},
             "num_draft_tokens", "load_s", "rss_kb"}
         |  {"event": "error", "reason"}                       (then exits)
  harness -> {"op": "generate", "method", "ids", "max_new_tokens", "eos"}
  worker -> {"tokens", "ttft_s", "total_s", "finish_reason", "steps", ["drafted", "accepted"],
             "peak_rss_kb", "rss_kb", "peak_rss_reset"}        | {"error": reason}
  harness -> {"op": "quit"}
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Channel, peak_rss_kb, private_stdout, reset_peak_rss, rss_kb  # noqa: E402

BACKENDS = {"llamacpp": "llamacpp", "ortgenai": "ortgenai", "transformers": "hf_transformers"}


def _load(cfg: dict) -> object:
    module = importlib.import_module(BACKENDS[cfg["peer"]])
    return module.Backend(cfg)


def _serve(chan: Channel, backend: object, method: str) -> None:
    while True:
        req = chan.recv()
        if req is None or req.get("op") == "quit":
            return
        if req["method"] != method:
            chan.send({"error": f"this worker runs method {method!r}, not {req['method']!r}"})
            continue
        try:
            reset = reset_peak_rss()
            res = backend.generate(  # type: ignore[attr-defined]
                req["method"], req["ids"], int(req["max_new_tokens"]), list(req["eos"])
            )
            res.update(peak_rss_kb=peak_rss_kb(), rss_kb=rss_kb(), peak_rss_reset=reset)
        except Exception as e:  # reported per request; the harness decides
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {e}"}
        chan.send(res)


def _die_with_parent() -> None:
    """SIGKILL this worker when the harness dies (it may be stopped, and never see EOF)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    _die_with_parent()
    chan = private_stdout()
    cfg = json.loads(argv[0])
    t0 = time.perf_counter()
    try:
        backend = _load(cfg)
    except ImportError as e:
        chan.send({"event": "error", "reason": f"not installed ({e.name or e}): make bench-setup"})
        return 1
    except Exception as e:
        traceback.print_exc()
        chan.send({"event": "error", "reason": f"{type(e).__name__}: {e}".splitlines()[0]})
        return 1
    chan.send(
        {
            "event": "ready",
            "peer": cfg["peer"],
            "version": backend.version,  # type: ignore[attr-defined]
            "methods": backend.methods(),  # type: ignore[attr-defined]
            "num_draft_tokens": getattr(backend, "num_draft_tokens", None),
            "load_s": time.perf_counter() - t0,
            "rss_kb": rss_kb(),
            "python": sys.executable,
        }
    )
    _serve(chan, backend, cfg.get("method", "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
