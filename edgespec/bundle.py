"""The bundle manifest (`edgespec.json`): schema, validation and loading.

The manifest is the only contract between export and runtime (docs/bundle-format.md). Loading
checks the format marker and version first, then every field the runtime relies on, and that
every referenced file exists, so that a bad bundle fails here with one clear line instead of
deep inside ONNX Runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "edgespec-bundle"  # magic value of the manifest's "format" field
# Newest manifest version this runtime reads (2: models may use ai.edgespec ops; 3: a graph may
# take tree_parents, a tree of drafts verified in one call; 4: a graph may use ai.edgespec
# QMatMul, 4- or 8-bit weights in its own tiled layout).
FORMAT_VERSION = 5
MANIFEST_NAME = "edgespec.json"

_KV_DTYPES = ("float32", "float16")
ATTENTIONS = ("gqa", "edgespec")  # com.microsoft / ai.edgespec GroupQueryAttention
_INPUT_KEYS = ("input_ids", "seqlens_k", "total_sequence_length", "past_key", "past_value")
_OUTPUT_KEYS = ("logits", "present_key", "present_value")
_INT_KEYS = ("num_layers", "num_kv_heads", "head_dim", "vocab_size", "capacity")
LOOKUP_MAX_ORDER = 4  # longest n-gram table context the runtime reads (native NgramIndex)
_LOOKUP_ARRAYS = {"keys": np.uint64, "next": np.int32, "hits": np.uint32, "total": np.uint32}


class BundleError(ValueError):
    """A bundle directory or manifest that the runtime cannot use."""


@dataclass(frozen=True)
class ModelInfo:
    """One decoder graph of the bundle, as the manifest describes it."""

    role: str  # "target" | "draft"
    path: Path  # absolute path of the .onnx file
    architecture: str  # llama | mistral | qwen2 | qwen3
    precision: str  # fp32 | fp16 | int8 | int4
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    capacity: int  # KV slots per layer (prompt + generated tokens)
    kv_dtype: str  # float32 | float16
    logits_dtype: str  # float32 | float16
    inputs: dict[str, str]  # contract key -> graph input name ("{layer}" templated for KV)
    outputs: dict[str, str]  # contract key -> graph output name
    file_bytes: int  # size of graph + external weights on disk
    raw: dict[str, Any] = field(repr=False, default_factory=dict)  # the manifest entry as read
    hidden_size: int = 0  # feature width (0 when the manifest does not say)
    token_map: tuple[int, ...] = ()  # eagle head only: draft id -> target id
    attention: str = "gqa"  # gqa (any provider) | edgespec (CPU op; absent before format v2)

    def native_spec_kwargs(self, hidden_states: bool = False) -> dict[str, Any]:
        """Keyword arguments for `edgespec._native.ModelSpec`. `hidden_states`: bind the
        feature output (a target that feeds a draft head); the head always binds its own."""
        extra: dict[str, Any] = {}
        if hidden_states or self.role == "eagle":
            extra = {
                "hidden_size": self.hidden_size,
                "hidden_states": self.outputs["hidden_states"],
            }
        if self.role == "eagle":
            extra.update(features=self.inputs["features"], token_map=list(self.token_map))
        if "logits_to_keep" in self.inputs:  # optional: prefill computes one logits row
            extra["logits_to_keep"] = self.inputs["logits_to_keep"]
        if "tree_parents" in self.inputs:  # optional: a verify call may check a draft tree
            extra["tree_parents"] = self.inputs["tree_parents"]
        return {
            **extra,
            "path": str(self.path),
            "num_layers": self.num_layers,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "capacity": self.capacity,
            "kv_dtype": self.kv_dtype,
            "logits_dtype": self.logits_dtype,
            # edgespec's attention computes every row the same whatever the call's width, so a
            # kept prefix's KV equals a fresh prefill's; ORT's does not (README, "Attention")
            "reuse_prefix": self.attention == "edgespec",
            **{k: self.inputs[k] for k in _INPUT_KEYS},
            **{k: self.outputs[k] for k in _OUTPUT_KEYS},
        }


@dataclass(frozen=True)
class TokenizerInfo:
    path: Path  # tokenizer.json
    chat_template: str | None  # template text, None when the model has none
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    add_bos_token: bool  # prepend BOS to raw prompts
    special_tokens: dict[str, str]  # e.g. {"eos_token": "<|im_end|>"}


@dataclass(frozen=True)
class LookupInfo:
    """The manifest's `lookup` entry: an n-gram table of the target's own answers that prompt
    lookup drafts from (docs/bundle-format.md; arrays read by `load_lookup_table`)."""

    path: Path  # .npz with keys uint64 [E], next int32 [E], hits uint32 [E], total uint32 [E]
    n_min: int  # shortest context a key covers
    n_max: int  # longest (<= LOOKUP_MAX_ORDER)
    entries: int  # E


@dataclass(frozen=True)
class Bundle:
    """A validated bundle directory."""

    root: Path
    target: ModelInfo
    draft: ModelInfo | None
    eagle: ModelInfo | None  # the feature-level draft head (drafter "eagle"), if distilled
    tokenizer: TokenizerInfo
    generation: dict[str, Any]  # generation defaults (max_new_tokens, temperature, ...)
    lookup: LookupInfo | None = None  # n-gram table for prompt lookup, if distill wrote one
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def capacity(self) -> int:
        """Tokens (prompt + generated) that fit in every model's KV cache."""
        caps = [m.capacity for m in (self.target, self.draft, self.eagle) if m is not None]
        return min(caps)


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate `path/edgespec.json`; raise BundleError (a ValueError) or
    FileNotFoundError with one clear line when anything is missing or wrong."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"bundle directory not found: {root}")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"not an edgespec bundle (no {MANIFEST_NAME}): {root}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{manifest_path}: manifest is not valid JSON ({e})") from None
    _check_format(manifest, manifest_path)
    models = _require(manifest, "models", dict, "manifest")
    target = _model_info(root, "target", _require(models, "target", dict, "models"))
    draft = None
    if models.get("draft") is not None:
        draft = _model_info(root, "draft", _require(models, "draft", dict, "models"))
        _check_compatible(target, draft)
    eagle = None
    if models.get("eagle") is not None:
        eagle = _eagle_info(root, target, _require(models, "eagle", dict, "models"))
    tokenizer = _tokenizer_info(root, _require(manifest, "tokenizer", dict, "manifest"))
    generation = manifest.get("generation") or {}
    lookup = None
    if manifest.get("lookup") is not None:
        lookup = _lookup_info(root, _require(manifest, "lookup", dict, "manifest"))
    return Bundle(root, target, draft, eagle, tokenizer, dict(generation), lookup, manifest)


def _check_format(manifest: Any, where: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{where}: not an edgespec manifest (format != {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {version} is newer than this edgespec reads "
            f"({FORMAT_VERSION}): upgrade edgespec or re-export the bundle"
        )
    if version < 1:
        raise BundleError(f"{where}: unknown bundle format version {version}")


def _require(obj: dict, key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise BundleError(f"manifest: missing '{key}' in {where}")
    value = obj[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise BundleError(f"manifest: '{where}.{key}' has the wrong type: {value!r}")
    return value


def _model_info(root: Path, role: str, entry: dict) -> ModelInfo:
    where = f"models.{role}"
    rel = _require(entry, "path", str, where)
    path = (root / rel).resolve()
    if not path.is_file():
        raise BundleError(f"bundle is missing the {role} graph: {path}")
    ints = {k: _require(entry, k, int, where) for k in _INT_KEYS}
    for k, v in ints.items():
        if v < 1:
            raise BundleError(f"manifest: '{where}.{k}' must be >= 1, got {v}")
    kv_dtype = entry.get("kv_dtype", "float32")
    logits_dtype = entry.get("logits_dtype", "float32")
    for name, dt in (("kv_dtype", kv_dtype), ("logits_dtype", logits_dtype)):
        if dt not in _KV_DTYPES:
            raise BundleError(f"manifest: '{where}.{name}' must be one of {_KV_DTYPES}, got {dt!r}")
    attention = entry.get("attention", "gqa")
    if attention not in ATTENTIONS:
        raise BundleError(
            f"manifest: '{where}.attention' must be one of {ATTENTIONS}, got {attention!r}"
        )
    inputs = _require(entry, "inputs", dict, where)
    outputs = _require(entry, "outputs", dict, where)
    for key in _INPUT_KEYS:
        _require(inputs, key, str, f"{where}.inputs")
    for key in _OUTPUT_KEYS:
        _require(outputs, key, str, f"{where}.outputs")
    if "tree_parents" in inputs and attention != "edgespec":
        raise BundleError(
            f"manifest: '{where}.inputs.tree_parents' needs attention 'edgespec', got {attention!r}"
        )
    _check_external_data(path)
    return ModelInfo(
        role=role,
        path=path,
        architecture=str(entry.get("architecture", "unknown")),
        precision=str(entry.get("precision", "unknown")),
        kv_dtype=kv_dtype,
        logits_dtype=logits_dtype,
        inputs=dict(inputs),
        outputs=dict(outputs),
        file_bytes=int(entry.get("file_bytes", 0)),
        raw=dict(entry),
        hidden_size=_hidden_size(entry, where),
        attention=attention,
        **ints,
    )


def _hidden_size(entry: dict, where: str) -> int:
    value = entry.get("hidden_size", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BundleError(f"manifest: '{where}.hidden_size' must be an integer >= 0, got {value!r}")
    return value


def _eagle_info(root: Path, target: ModelInfo, entry: dict) -> ModelInfo:
    """The draft head entry: a decoder entry plus features / hidden_states / token_map, checked
    against the target (which must expose its features)."""
    where = "models.eagle"
    if entry.get("kind") != "eagle-head":
        raise BundleError(
            f"manifest: '{where}.kind' must be 'eagle-head', got {entry.get('kind')!r}"
        )
    info = _model_info(root, "eagle", entry)
    _require(info.inputs, "features", str, f"{where}.inputs")
    _require(info.outputs, "hidden_states", str, f"{where}.outputs")
    if "hidden_states" not in target.outputs:
        raise BundleError("the bundle has a draft head but its target has no hidden_states output")
    if info.hidden_size != target.hidden_size or info.hidden_size < 1:
        raise BundleError(
            f"draft head hidden_size {info.hidden_size} differs from the target's "
            f"{target.hidden_size}"
        )
    token_map = _token_map(root, _require(entry, "token_map", str, where), info, target)
    return replace(info, token_map=token_map)


def _token_map(root: Path, rel: str, head: ModelInfo, target: ModelInfo) -> tuple[int, ...]:
    path = (root / rel).resolve()
    if not path.is_file():
        raise BundleError(f"bundle is missing the draft head's token map: {path}")
    if path.stat().st_size != 4 * head.vocab_size:
        raise BundleError(
            f"{path}: {path.stat().st_size} bytes, expected 4 x vocab_size {head.vocab_size}"
        )
    ids = np.fromfile(path, dtype="<i4")  # int32 [draft vocab]
    bad = ids[(ids < 0) | (ids >= target.vocab_size)]
    if bad.size:
        raise BundleError(f"{path}: id {int(bad[0])} outside the target vocabulary")
    if np.unique(ids).size != ids.size:
        raise BundleError(f"{path}: duplicate target ids")
    return tuple(int(i) for i in ids)


def _lookup_info(root: Path, entry: dict) -> LookupInfo:
    where = "lookup"
    for key, want in (("kind", "ngram-table"), ("hash", "fnv1a64-words")):
        if entry.get(key) != want:
            raise BundleError(f"manifest: '{where}.{key}' must be {want!r}, got {entry.get(key)!r}")
    path = (root / _require(entry, "path", str, where)).resolve()
    if not path.is_file():
        raise BundleError(f"bundle is missing its n-gram table: {path}")
    n_min, n_max, entries = (_require(entry, k, int, where) for k in ("n_min", "n_max", "entries"))
    if not 1 <= n_min <= n_max <= LOOKUP_MAX_ORDER:
        raise BundleError(
            f"manifest: need 1 <= lookup.n_min <= lookup.n_max <= {LOOKUP_MAX_ORDER}, "
            f"got {n_min}, {n_max}"
        )
    if entries < 0:
        raise BundleError(f"manifest: 'lookup.entries' must be >= 0, got {entries}")
    return LookupInfo(path, n_min, n_max, entries)


def load_lookup_table(info: LookupInfo) -> dict[str, np.ndarray]:
    """The table's arrays (`_LOOKUP_ARRAYS`), each 1-D with `info.entries` elements; BundleError
    for a file that is not such an .npz. Order and token ranges are checked by the engine."""
    try:
        with np.load(info.path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in _LOOKUP_ARRAYS if name in z.files}
    except (OSError, ValueError) as e:
        raise BundleError(f"{info.path}: not a readable n-gram table ({e})") from None
    for name, dtype in _LOOKUP_ARRAYS.items():
        a = arrays.get(name)
        if a is None:
            raise BundleError(f"{info.path}: missing array '{name}'")
        if a.dtype != dtype or a.shape != (info.entries,):
            raise BundleError(
                f"{info.path}: '{name}' is {a.dtype} {list(a.shape)}, expected "
                f"{np.dtype(dtype)} [{info.entries}] (lookup.entries)"
            )
    return arrays


def _check_external_data(graph: Path) -> None:
    """The conventional external-weights file next to the graph must exist when expected."""
    data = graph.with_name(graph.name + ".data")
    if graph.stat().st_size < 1024 * 1024 and not data.exists():
        # Small graph files hold only structure when weights are external: be sure they exist.
        with graph.open("rb") as f:
            head = f.read()
        if graph.name.encode() + b".data" in head:
            raise BundleError(f"bundle is missing the external weights file: {data}")


def _check_compatible(target: ModelInfo, draft: ModelInfo) -> None:
    if draft.vocab_size != target.vocab_size:
        raise BundleError(
            f"draft vocabulary ({draft.vocab_size}) differs from the target's ({target.vocab_size})"
        )


def _tokenizer_info(root: Path, entry: dict) -> TokenizerInfo:
    path = (root / _require(entry, "path", str, "tokenizer")).resolve()
    if not path.is_file():
        raise BundleError(f"bundle is missing its tokenizer: {path}")
    template = None
    tpl_rel = entry.get("chat_template")
    if tpl_rel:
        tpl_path = (root / tpl_rel).resolve()
        if not tpl_path.is_file():
            raise BundleError(f"bundle is missing its chat template: {tpl_path}")
        template = tpl_path.read_text(encoding="utf-8")
    eos = entry.get("eos_token_ids") or []
    if not isinstance(eos, list) or not all(isinstance(t, int) for t in eos):
        raise BundleError(f"manifest: 'tokenizer.eos_token_ids' must be a list of ints: {eos!r}")
    return TokenizerInfo(
        path=path,
        chat_template=template,
        bos_token_id=entry.get("bos_token_id"),
        eos_token_ids=tuple(eos),
        pad_token_id=entry.get("pad_token_id"),
        add_bos_token=bool(entry.get("add_bos_token", False)),
        special_tokens=dict(entry.get("special_tokens") or {}),
    )
