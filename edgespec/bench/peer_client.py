"""Peer runtimes in child processes: each under its own interpreter, spoken to in JSON lines
(see peers/worker.py), so that torch / llama.cpp / onnxruntime-genai never load in the harness."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parent / "peers" / "worker.py"
LOAD_TIMEOUT_S = 900.0


class PeerError(RuntimeError):
    """A peer that could not start or failed while running (the message is the reason)."""


class PeerRequestError(PeerError):
    """One request failed; the worker is still alive and serves the next one."""


class PeerRunner:
    """One peer worker process; the same surface as `runners.EdgespecRunner`."""

    def __init__(self, peer: str, python: str, cfg: dict[str, Any], log_path: Path) -> None:
        self.runtime = peer
        self.log_path = log_path
        self.eos = [int(t) for t in cfg["eos"]]
        self.request_timeout_s = float(cfg.get("request_timeout_s", 1800.0))
        self._buf = b""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in close())
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen(
            [python, str(WORKER), json.dumps({**cfg, "peer": peer})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        ready = self._recv(LOAD_TIMEOUT_S)
        if ready.get("event") != "ready":
            self.close()
            raise PeerError(ready.get("reason") or f"worker did not start: {ready}")
        self.version: str = ready["version"]
        self.methods: dict[str, str | None] = dict(ready["methods"])
        self.load_rss_kb = ready.get("rss_kb")
        self.load_s = ready.get("load_s")
        self.num_draft_tokens = ready.get("num_draft_tokens")
        self.python = ready.get("python", python)
        self._pause()

    # Idle workers are stopped (SIGSTOP) between requests: thread pools that spin while
    # waiting for work (llama.cpp, OpenMP in torch, ORT) would otherwise steal the cores
    # from whichever method is being measured.
    def _pause(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def _resume(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def generate(
        self, method: str, ids: list[int], messages: Any, max_new_tokens: int
    ) -> dict[str, Any]:
        del messages  # peers get token ids: the same ids edgespec prefills
        self._resume()
        try:
            self._send(
                {
                    "op": "generate",
                    "method": method,
                    "ids": list(ids),
                    "max_new_tokens": max_new_tokens,
                    "eos": self.eos,
                }
            )
            res = self._recv(self.request_timeout_s)
        finally:
            self._pause()
        if "error" in res:
            raise PeerRequestError(res["error"])
        return res

    def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise PeerError(self._died()) from None

    def _recv(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], timeout_s)
            if not ready:
                self.close()
                raise PeerError(f"no answer within {timeout_s:.0f} s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise PeerError(self._died())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _died(self) -> str:
        code = self.proc.wait()
        return f"worker exited with code {code}: {self._last_log_line()} (log: {self.log_path})"

    def _last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln]
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def close(self) -> None:
        if self.proc.poll() is None and not self.proc.stdin.closed:  # type: ignore[union-attr]
            self._resume()
            try:
                self._send({"op": "quit"})
                self.proc.wait(timeout=30)
            except (PeerError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class PeerGroup:
    """A peer as the harness sees it: one `PeerRunner` (worker process) per method."""

    def __init__(
        self, peer: str, python: str, cfg: dict[str, Any], methods: list[str], log_dir: Path
    ) -> None:
        self.runtime = peer
        self.workers: dict[str, PeerRunner] = {}
        first = PeerRunner(peer, python, {**cfg, "method": "none"}, log_dir / f"{peer}-none.log")
        self.workers["none"] = first
        self.version, self.python = first.version, first.python
        self.methods = dict(first.methods)
        self.load_rss_kb, self.load_s = first.load_rss_kb, first.load_s
        self.num_draft_tokens = first.num_draft_tokens
        try:
            for m in methods:
                if m != "none" and self.methods.get(m, "not offered") is None:
                    log = log_dir / f"{peer}-{m}.log"
                    self.workers[m] = PeerRunner(peer, python, {**cfg, "method": m}, log)
        except PeerError:
            self.close()
            raise

    def generate(
        self, method: str, ids: list[int], messages: Any, max_new_tokens: int
    ) -> dict[str, Any]:
        return self.workers[method].generate(method, ids, messages, max_new_tokens)

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
