"""The feature-level draft head (`models.eagle`, docs/bundle-format.md): its ONNX graph and the
step that adds it to an existing bundle.

The head is one Llama decoder layer over fc([embed(t_{p+1}) ; f_p]), a final RMSNorm and a
reduced-vocabulary LM head. The graph reuses the decoder builder's blocks (GroupQueryAttention
over a shared past/present KV buffer, fused QKV and gate-up MatMuls, SkipSimplifiedLayerNorm).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graph import IO_NAMES, IR_VERSION, LOGITS_TO_KEEP, GraphOptions, _Builder
from .model_ir import ArchConfig, LoadedModel
from .quantize import unpack_ftiles
from .writer import normalize_modes, save_graph

EAGLE_DIR = "eagle"
TOKEN_MAP = "token_map.bin"  # int32 little-endian [draft vocab]: draft id -> target id
MANIFEST = "edgespec.json"
LAYER = "model.layers.0"
HEAD_WEIGHTS = (  # name -> expected shape, as a function of (H, I, D, nq, nkv, V_target, V_draft)
    "model.embed_tokens.weight",
    "fc.weight",
    f"{LAYER}.input_layernorm.weight",
    f"{LAYER}.self_attn.q_proj.weight",
    f"{LAYER}.self_attn.k_proj.weight",
    f"{LAYER}.self_attn.v_proj.weight",
    f"{LAYER}.self_attn.o_proj.weight",
    f"{LAYER}.post_attention_layernorm.weight",
    f"{LAYER}.mlp.gate_proj.weight",
    f"{LAYER}.mlp.up_proj.weight",
    f"{LAYER}.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
)


def head_config(target: ArchConfig, draft_vocab: int) -> ArchConfig:
    """The head's ArchConfig: the target's shapes, one plain Llama layer, the draft vocabulary."""
    return replace(
        target,
        architecture="llama",
        num_layers=1,
        vocab_size=draft_vocab,
        tie_word_embeddings=False,
        attention_bias=False,
        qk_norm=False,
    )


def expected_shapes(cfg: ArchConfig, target_vocab: int) -> dict[str, tuple[int, ...]]:
    h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    nq, nkv = cfg.num_heads, cfg.num_kv_heads
    return {
        "model.embed_tokens.weight": (target_vocab, h),
        "fc.weight": (h, 2 * h),
        f"{LAYER}.input_layernorm.weight": (h,),
        f"{LAYER}.self_attn.q_proj.weight": (nq * d, h),
        f"{LAYER}.self_attn.k_proj.weight": (nkv * d, h),
        f"{LAYER}.self_attn.v_proj.weight": (nkv * d, h),
        f"{LAYER}.self_attn.o_proj.weight": (h, nq * d),
        f"{LAYER}.post_attention_layernorm.weight": (h,),
        f"{LAYER}.mlp.gate_proj.weight": (i, h),
        f"{LAYER}.mlp.up_proj.weight": (i, h),
        f"{LAYER}.mlp.down_proj.weight": (h, i),
        "model.norm.weight": (h,),
        "lm_head.weight": (cfg.vocab_size, h),
    }


def check_head_weights(cfg: ArchConfig, weights: dict[str, np.ndarray], target_vocab: int) -> None:
    """ValueError naming the first missing or mis-shaped weight."""
    for name, shape in expected_shapes(cfg, target_vocab).items():
        if name not in weights:
            raise ValueError(f"eagle head: missing weight {name}")
        got = tuple(np.shape(weights[name]))
        if got != shape:
            raise ValueError(f"eagle head: {name} has shape {got}, expected {shape}")


def build_eagle_graph(cfg: ArchConfig, weights: dict[str, np.ndarray], capacity: int):
    """The head graph (weights inline) for `cfg` (see head_config) and float32 `weights`."""
    model = LoadedModel(cfg, dict(weights), tokenizer=None, source="eagle head")  # type: ignore[arg-type]
    # logits_to_keep: the head's catch-up over a prompt (or over the tokens a verify committed)
    # needs the last row's logits only; its LM head is over half the cost of a catch-up row.
    # gqa: the head's numerics do not touch identity (the target verifies every token), and a
    # head trained here then runs on any provider.
    opts = GraphOptions(precision="fp32", capacity=capacity, logits_to_keep=True, attention="gqa")
    b = _Builder(model, opts)
    from .graph_rope import rope_caches

    cos_np, sin_np = rope_caches(cfg, capacity)  # [capacity, D/2] each
    cos, sin = b.act_init("rotary.cos_cache", cos_np), b.act_init("rotary.sin_cache", sin_np)
    table = b.init("model.embed_tokens.weight", weights["model.embed_tokens.weight"], np.float16)
    (e16,) = b.node("Gather", [table, "input_ids"], "model.embed_tokens", axis=0)  # [1,n,H] f16
    (emb,) = b.node("Cast", [e16], "model.embed_tokens/cast", to=TensorProto.FLOAT)  # [1,n,H]
    (cat,) = b.node("Concat", [emb, "features"], "fc/concat", axis=-1)  # [1,n,2H]
    x = b.linear(cat, ["fc.weight"], "fc")  # [1,n,H]
    h, res = b.norm(x, None, f"{LAYER}.input_layernorm.weight", f"{LAYER}.input_ln")
    attn = b.attention(0, h, cos, sin)  # [1,n,H]
    h, res = b.norm(attn, res, f"{LAYER}.post_attention_layernorm.weight", f"{LAYER}.post_attn_ln")
    mlp = b.mlp(0, h)  # [1,n,H]
    f_hat, _ = b.norm(mlp, res, "model.norm.weight", "model.norm")  # [1,n,H]
    logits = b.linear(b.keep_last_rows(f_hat), ["lm_head.weight"], "lm_head")  # [1,k,V_draft]
    b.to_float32(logits, "logits")
    b.to_float32(f_hat, "hidden_states")
    inputs, outputs = b.io()
    vi = helper.make_tensor_value_info
    inputs.insert(1, vi("features", TensorProto.FLOAT, [1, "n", cfg.hidden_size]))
    graph = helper.make_graph(b.nodes, "edgespec_eagle_head", inputs, outputs, initializer=b.inits)
    return helper.make_model(
        graph, opset_imports=opts.opsets, ir_version=IR_VERSION, producer_name="edgespec"
    )


def eagle_entry(cfg: ArchConfig, target: dict, capacity: int, file_bytes: int, training: dict):
    """The manifest's models.eagle object."""
    outputs = {
        "logits": "logits",
        "hidden_states": "hidden_states",
        "present_key": IO_NAMES["outputs"]["present_key"],
        "present_value": IO_NAMES["outputs"]["present_value"],
    }
    return {
        "path": f"{EAGLE_DIR}/model.onnx",
        "kind": "eagle-head",
        "architecture": "llama",
        "precision": "fp32",
        "num_layers": 1,
        "num_heads": cfg.num_heads,
        "num_kv_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "target_vocab_size": int(target["vocab_size"]),
        "token_map": f"{EAGLE_DIR}/{TOKEN_MAP}",
        "capacity": capacity,
        "kv_dtype": "float32",
        "kv_layout": "BNSH",
        "attention": "gqa",
        "logits_dtype": "float32",
        "inputs": {**IO_NAMES["inputs"], "features": "features", "logits_to_keep": LOGITS_TO_KEEP},
        "outputs": outputs,
        "file_bytes": file_bytes,
        "training": training,
    }


def check_token_map(token_map: np.ndarray, draft_vocab: int, target_vocab: int) -> np.ndarray:
    """int32 [draft_vocab] with distinct ids in [0, target_vocab); ValueError otherwise."""
    tm = np.asarray(token_map)
    if tm.shape != (draft_vocab,):
        raise ValueError(f"token_map has shape {tm.shape}, expected ({draft_vocab},)")
    if tm.size and (tm.min() < 0 or tm.max() >= target_vocab):
        bad = int(tm[(tm < 0) | (tm >= target_vocab)][0])
        raise ValueError(f"token_map id {bad} is outside the target vocabulary [0, {target_vocab})")
    if len(np.unique(tm)) != tm.size:
        raise ValueError("token_map has duplicate target ids")
    return tm.astype("<i4")


def _load_manifest(bundle: Path) -> dict:
    path = bundle / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"not an edgespec bundle (no {MANIFEST}): {bundle}")
    return json.loads(path.read_text(encoding="utf-8"))


def _check_target(target: dict, cfg: ArchConfig) -> None:
    if "hidden_states" not in target.get("outputs", {}):
        raise ValueError(
            "the bundle's target has no hidden_states output (exported with --no-hidden-states): "
            "re-export it to add a draft head"
        )
    if int(target["hidden_size"]) != cfg.hidden_size:
        raise ValueError(
            f"head hidden_size {cfg.hidden_size} differs from the target's {target['hidden_size']}"
        )


def write_eagle(
    bundle_dir: str | Path,
    cfg: ArchConfig,
    weights: dict[str, np.ndarray],
    token_map: np.ndarray,
    training: dict,
    *,
    capacity: int | None = None,
    force: bool = False,
) -> Path:
    """Add (or with force, replace) the bundle's draft head; returns the head's directory.

    The head directory is written under a temporary name and renamed into place, then the
    manifest is replaced atomically: a failure leaves the bundle as it was."""
    bundle = Path(bundle_dir).absolute()
    manifest = _load_manifest(bundle)
    target = manifest["models"]["target"]
    if manifest["models"].get("eagle") is not None and not force:
        raise FileExistsError(f"bundle already has a draft head (use --force to replace): {bundle}")
    _check_target(target, cfg)
    check_head_weights(cfg, weights, int(target["vocab_size"]))
    tm = check_token_map(token_map, cfg.vocab_size, int(target["vocab_size"]))
    cap = int(capacity or target["capacity"])
    proto = build_eagle_graph(cfg, weights, cap)
    tmp = Path(tempfile.mkdtemp(prefix=".eagle.tmp-", dir=bundle))
    try:
        save_graph(proto, tmp)
        (tmp / TOKEN_MAP).write_bytes(tm.tobytes())
        tmp.chmod(0o755)  # mkdtemp makes it 0700; it becomes the ordinary eagle/ directory
        normalize_modes(tmp)
        size = sum(f.stat().st_size for f in tmp.iterdir() if f.is_file())
        manifest["models"]["eagle"] = eagle_entry(cfg, target, cap, size, training)
        _swap_in(tmp, bundle / EAGLE_DIR)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_manifest(bundle, manifest)
    return bundle / EAGLE_DIR


def _swap_in(tmp: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def _write_manifest(bundle: Path, manifest: dict) -> None:
    tmp = bundle / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, bundle / MANIFEST)


def _target_tensors(bundle: Path, target: dict) -> dict[str, np.ndarray]:
    """The target's float embedding table, final norm and LM head (float32 [V, H])."""
    proto = onnx.load(str(bundle / target["path"]))
    inits = {t.name: t for t in proto.graph.initializer}
    get = lambda n: numpy_helper.to_array(inits[n]).astype(np.float32)  # noqa: E731
    vocab = int(target["vocab_size"])
    if "model.embed_tokens.weight" in inits:
        table = get("model.embed_tokens.weight")  # [V, H]
    else:  # a tied table held once as FMatMul's tiles [ceil(V/16), H, 16]
        table = unpack_ftiles(get("model.embed_tokens.ftiles"), vocab)
    head = table  # tied: the head is the embedding table
    if "lm_head.weight_t" in inits:  # an untied head on MatMul: W^T [H, V]
        head = get("lm_head.weight_t").T
    elif "lm_head.ftiles" in inits:  # an untied head on FMatMul: tiles [ceil(V/16), H, 16]
        head = unpack_ftiles(get("lm_head.ftiles"), vocab)
    return {"embed": table, "norm": get("model.norm.weight"), "head": head}


def target_arch(target: dict, intermediate_size: int, rope_theta: float, eps: float) -> ArchConfig:
    """An ArchConfig for the manifest's target entry (fields the manifest does not record are
    passed in)."""
    return ArchConfig(
        architecture="llama",
        num_layers=int(target["num_layers"]),
        num_heads=int(target["num_heads"]),
        num_kv_heads=int(target["num_kv_heads"]),
        head_dim=int(target["head_dim"]),
        hidden_size=int(target["hidden_size"]),
        intermediate_size=intermediate_size,
        vocab_size=int(target["vocab_size"]),
        rms_norm_eps=eps,
        rope_theta=rope_theta,
        max_position_embeddings=int(target["capacity"]),
        tie_word_embeddings=False,
    )


def add_random_eagle(bundle_dir: str | Path, draft_vocab: int, seed: int = 0) -> Path:
    """Add an untrained head for tests: fc starts as "take the token's embedding" plus noise, so
    the head leans towards repeating the last token (random tiny targets loop, so some drafts
    are accepted) while its layer is random. The draft vocabulary is the first `draft_vocab`
    target ids minus a few, plus the EOS ids, so that some target tokens are out of reach."""
    bundle = Path(bundle_dir).absolute()
    manifest = _load_manifest(bundle)
    target = manifest["models"]["target"]
    t = _target_tensors(bundle, target)
    vocab, h = t["embed"].shape
    hd, nq, nkv = int(target["head_dim"]), int(target["num_heads"]), int(target["num_kv_heads"])
    cfg = head_config(target_arch(target, 2 * h, 10000.0, 1e-5), draft_vocab)
    rng = np.random.default_rng(seed)
    eos = [int(i) for i in manifest["tokenizer"].get("eos_token_ids", []) if 0 <= i < vocab]
    pool = [i for i in range(vocab) if i % 7 != 3 and i not in eos]  # every 7th id left out
    token_map = np.array(sorted(eos + pool[: draft_vocab - len(eos)]), dtype=np.int32)
    noise = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)  # noqa: E731
    fc = np.concatenate([np.eye(h, dtype=np.float32), np.zeros((h, h), np.float32)], 1)
    weights = {
        "model.embed_tokens.weight": t["embed"],
        "fc.weight": fc + noise(h, 2 * h),
        f"{LAYER}.input_layernorm.weight": np.ones(h, np.float32),
        f"{LAYER}.self_attn.q_proj.weight": noise(nq * hd, h),
        f"{LAYER}.self_attn.k_proj.weight": noise(nkv * hd, h),
        f"{LAYER}.self_attn.v_proj.weight": noise(nkv * hd, h),
        f"{LAYER}.self_attn.o_proj.weight": noise(h, nq * hd),
        f"{LAYER}.post_attention_layernorm.weight": np.ones(h, np.float32),
        f"{LAYER}.mlp.gate_proj.weight": noise(2 * h, h),
        f"{LAYER}.mlp.up_proj.weight": noise(2 * h, h),
        f"{LAYER}.mlp.down_proj.weight": noise(h, 2 * h),
        "model.norm.weight": t["norm"],
        "lm_head.weight": t["head"][token_map],
    }
    record = {"kind": "random", "seed": seed}
    return write_eagle(bundle, cfg, weights, token_map, record, force=True)
