"""Peer model preparation: `python prepare.py hf|ortgenai CONFIG_JSON`, run under the peers'
interpreter (torch / transformers / onnxruntime-genai live there, never in the harness).

hf:       GGUF -> Hugging Face directory (transformers' GGUF loader, dequantized to fp32). The
          tokenizer files come from the edgespec bundle (transformers' own GGUF tokenizer
          conversion gets SmolLM2's special tokens wrong: its eos becomes <|im_start|>).
ortgenai: Hugging Face directory -> onnxruntime-genai model (its model builder, fp32, CPU).
Each writes into a temporary directory and renames it when complete; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _hf_from_gguf(cfg: dict, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    gguf = Path(cfg["gguf"])
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    tok = cfg["tokenizer"]  # the bundle's tokenizer facts
    eos = list(tok["eos_token_ids"])
    model.config.eos_token_id = eos[0]
    model.config.bos_token_id = tok.get("bos_token_id")
    model.config.pad_token_id = tok.get("pad_token_id")
    model.generation_config.eos_token_id = eos
    model.generation_config.bos_token_id = tok.get("bos_token_id")
    model.generation_config.pad_token_id = tok.get("pad_token_id")
    _drop_gguf_quantizer(model)
    model.save_pretrained(str(out))
    _write_tokenizer(tok, out)


def _drop_gguf_quantizer(model: object) -> None:
    """The weights are already dequantized to fp32; transformers still tags the model as
    "quantized with gguf" and refuses to save it. Drop the tag: it saves as a plain fp32 model."""
    for obj, attr in ((model, "hf_quantizer"), (model, "quantization_method")):
        if getattr(obj, attr, None) is not None:
            setattr(obj, attr, None)
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    config = model.config  # type: ignore[attr-defined]
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")


def _write_tokenizer(tok: dict, out: Path) -> None:
    shutil.copyfile(tok["path"], out / "tokenizer.json")
    special = dict(tok.get("special_tokens") or {})
    tcfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": bool(tok.get("add_bos_token")),
        "model_max_length": int(tok.get("capacity") or 2048),
        **{k: v for k, v in special.items() if k.endswith("_token")},
    }
    if tok.get("chat_template"):
        tcfg["chat_template"] = tok["chat_template"]
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=1), encoding="utf-8")


def _genai_from_hf(cfg: dict, out: Path) -> None:
    cache = out.parent / (out.name + ".cache")
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        cfg["hf_dir"],
        "-o",
        str(out),
        "-p",
        cfg.get("precision", "fp32"),
        "-e",
        "cpu",
        "-c",
        str(cache),
    ]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    shutil.rmtree(cache, ignore_errors=True)
    gpath = out / "genai_config.json"
    gcfg = json.loads(gpath.read_text(encoding="utf-8"))
    eos = list(cfg["tokenizer"]["eos_token_ids"])  # stop exactly where the bundle stops
    gcfg["model"]["eos_token_id"] = eos if len(eos) > 1 else eos[0]
    gpath.write_text(json.dumps(gcfg, indent=4), encoding="utf-8")


STEPS = {"hf": _hf_from_gguf, "ortgenai": _genai_from_hf}


def main(argv: list[str]) -> int:
    step, cfg = argv[0], json.loads(argv[1])
    out = Path(cfg["out"])
    tmp = out.parent / (out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        STEPS[step](cfg, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps({"ok": False, "reason": f"{type(e).__name__}: {e}".splitlines()[0]}))
        return 1
    print(json.dumps({"ok": True, "out": str(out), "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
