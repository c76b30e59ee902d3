"""Write an edgespec bundle (docs/bundle-format.md) atomically.

Everything goes to a temporary directory next to the destination, renamed into place at the
end; any failure removes the temporary directory, so a bundle either exists complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from .graph import (
    EDGESPEC_DOMAIN,
    IO_NAMES,
    LOGITS_TO_KEEP,
    TREE_PARENTS,
    GraphOptions,
    build_decoder,
)
from .model_ir import LoadedModel, TokenizerData

FORMAT = "edgespec-bundle"
FORMAT_VERSION = 5  # the newest written: 5 with FMatMul, 4 QMatMul, 3 edgespec attention, else 1
MANIFEST = "edgespec.json"
DEFAULT_GENERATION = {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "top_k": 0}


@dataclass
class ModelSpec:
    """One model of the bundle and how to build its graph."""

    model: LoadedModel
    options: GraphOptions
    source_path: str | None = None  # absolute checkpoint path (lets `edgespec distill` find it)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("edgespec")
    except Exception:  # not installed (source checkout)
        return "0.1.0"


def _vocab(tok: TokenizerData) -> list[str | None]:
    """Token string per id (None for holes), including added tokens."""
    from tokenizers import Tokenizer

    try:
        vocab = Tokenizer.from_str(tok.tokenizer_json).get_vocab(with_added_tokens=True)
    except Exception as e:  # tokenizers raises a bare Exception
        raise ValueError(f"invalid tokenizer JSON: {e}") from None
    table: list[str | None] = [None] * (max(vocab.values(), default=-1) + 1)
    for token, idx in vocab.items():
        table[idx] = token
    return table


def check_vocab_compatible(target: TokenizerData, draft: TokenizerData) -> None:
    """Raise ValueError naming the first difference between the two tokenizers."""
    for key in ("bos_token_id", "eos_token_ids", "pad_token_id"):
        a, b = getattr(target, key), getattr(draft, key)
        if a != b:
            raise ValueError(f"draft/target tokenizer mismatch: {key} target={a!r} draft={b!r}")
    for key in sorted(set(target.special_tokens) | set(draft.special_tokens)):
        a, b = target.special_tokens.get(key), draft.special_tokens.get(key)
        if a != b:
            raise ValueError(f"draft/target tokenizer mismatch: {key} target={a!r} draft={b!r}")
    tv, dv = _vocab(target), _vocab(draft)
    for idx in range(max(len(tv), len(dv))):
        a = tv[idx] if idx < len(tv) else None
        b = dv[idx] if idx < len(dv) else None
        if a != b:
            raise ValueError(
                f"draft/target vocabulary mismatch at id {idx}: target={a!r} draft={b!r}"
            )


def _save_graph(spec: ModelSpec, out_dir: Path, progress: bool) -> tuple[int, set[str]]:
    """Build + save one decoder graph with external weights; returns total bytes on disk and
    the ai.edgespec op types it uses."""
    from tqdm import tqdm

    proto = build_decoder(spec.model, spec.options, progress=progress)
    ops = {n.op_type for n in proto.graph.node if n.domain == EDGESPEC_DOMAIN}
    out_dir.mkdir(parents=True)
    with tqdm(total=1, desc=f"saving {out_dir.name}", disable=not progress) as bar:
        size = save_graph(proto, out_dir)
        bar.update(1)
    return size, ops


def save_graph(proto: onnx.ModelProto, out_dir: Path) -> int:
    """out_dir/model.onnx + model.onnx.data (external weights); returns the directory's bytes."""
    onnx.save_model(
        proto,
        str(out_dir / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
    )
    return sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())


def model_entry(spec: ModelSpec, rel_path: str, file_bytes: int) -> dict:
    """The manifest's models.<role> object."""
    cfg, opts = spec.model.config, spec.options
    outputs = dict(IO_NAMES["outputs"])
    if not opts.hidden_states:
        del outputs["hidden_states"]
    inputs = dict(IO_NAMES["inputs"])
    if opts.logits_to_keep:
        inputs["logits_to_keep"] = LOGITS_TO_KEEP
    if opts.tree_parents:
        inputs["tree_parents"] = TREE_PARENTS
    return {
        "path": rel_path,
        "architecture": cfg.architecture,
        "precision": opts.precision,
        "source": spec.model.source,
        **({"source_path": spec.source_path} if spec.source_path else {}),
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "num_kv_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "capacity": opts.capacity,
        "kv_dtype": opts.kv_dtype,
        "kv_layout": "BNSH",
        "attention": opts.attention_op,
        "logits_dtype": "float32",
        "inputs": inputs,
        "outputs": outputs,
        "file_bytes": file_bytes,
    }


def tokenizer_entry(tok: TokenizerData) -> dict:
    return {
        "path": "tokenizer.json",
        "chat_template": "chat_template.jinja" if tok.chat_template else None,
        "bos_token_id": tok.bos_token_id,
        "eos_token_ids": list(tok.eos_token_ids),
        "pad_token_id": tok.pad_token_id,
        "add_bos_token": bool(tok.add_bos_token),
        "special_tokens": dict(tok.special_tokens),
    }


def _format_version(models: dict, ops: set[str]) -> int:
    """The oldest format whose readers can run these graphs (ops: the ai.edgespec op types they
    use): 5 with FMatMul, 4 with QMatMul, 3 for edgespec attention (its ops and its tree_parents
    input; format 2 had the ops only), else 1."""
    if "FMatMul" in ops:
        return FORMAT_VERSION
    if "QMatMul" in ops:
        return 4
    edgespec = any(m.get("attention") == "edgespec" for m in models.values())
    return 3 if edgespec else 1


def _write_contents(
    tmp: Path, target: ModelSpec, draft: ModelSpec | None, generation: dict, progress: bool
) -> None:
    models = {}
    roles = [("target", target)] + ([("draft", draft)] if draft is not None else [])
    ops: set[str] = set()  # ai.edgespec op types of every graph
    for role, spec in roles:
        size, used = _save_graph(spec, tmp / role, progress)
        ops |= used
        models[role] = model_entry(spec, f"{role}/model.onnx", size)
    tok = target.model.tokenizer
    (tmp / "tokenizer.json").write_text(tok.tokenizer_json, encoding="utf-8")
    if tok.chat_template:
        (tmp / "chat_template.jinja").write_text(tok.chat_template, encoding="utf-8")
    manifest = {
        "format": FORMAT,
        "format_version": _format_version(models, ops),
        "created_by": f"edgespec {_version()}",
        "models": models,
        "tokenizer": tokenizer_entry(tok),
        "generation": generation,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def write_bundle(
    dest: str | Path,
    target: ModelSpec,
    draft: ModelSpec | None = None,
    *,
    force: bool = False,
    progress: bool = False,
    generation: dict | None = None,
) -> Path:
    """Build and write the bundle at `dest`; returns its path. Nothing is left on failure."""
    dest = Path(dest).absolute()
    if dest.exists() and not force:
        raise FileExistsError(f"bundle destination exists (use --force): {dest}")
    if draft is not None:
        tv, dv = target.model.config.vocab_size, draft.model.config.vocab_size
        if tv != dv:
            raise ValueError(f"draft vocab_size {dv} differs from the target's {tv}")
        check_vocab_compatible(target.model.tokenizer, draft.model.tokenizer)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the bundle is an ordinary directory
        _write_contents(tmp, target, draft, dict(generation or DEFAULT_GENERATION), progress)
        normalize_modes(tmp)
        _replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def normalize_modes(root: Path) -> None:
    """Files as an ordinary write would leave them (0644 less the umask): the ONNX external-data
    writer creates its file 0600, which would hide the weights from other users."""
    umask = os.umask(0)
    os.umask(umask)
    for path in root.rglob("*"):
        path.chmod((0o755 if path.is_dir() else 0o644) & ~umask)


def _replace(tmp: Path, dest: Path) -> None:
    """Move tmp to dest; an existing dest (force) is swapped out first and then removed."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.replace(dest, old / "bundle")
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old / "bundle", dest)  # put the previous bundle back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
