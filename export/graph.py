"""Decoder ONNX graph for the Llama family, built directly with onnx.helper.

Follows docs/bundle-format.md. Op choices mirror onnxruntime-genai's model builder: Gather
embedding, SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization (residual adds fused),
one fused QKV MatMul and one fused gate-up MatMul per layer, com.microsoft GroupQueryAttention
with fused rotary (cos/sin caches) over a shared past/present KV buffer, SiLU as Sigmoid*Mul.
Quantized precisions use com.microsoft MatMulNBits for every linear layer including the LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graph_ftiles import gather_tiled_rows
from .graph_rope import rope_caches
from .model_ir import SUPPORTED_ARCHITECTURES, LoadedModel, QuantizedWeight, Weight
from .quantize import (
    Q_BLOCK,
    concat_quantized,
    pack_ftiles,
    pack_matmulnbits,
    pack_qtiles,
    quantize_q4_1,
    quantize_rtn,
)

PRECISIONS = ("fp32", "fp16", "int8", "int4")
IR_VERSION = 10  # ORT 1.31 rejects newer IR versions
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
MS = "com.microsoft"
EDGESPEC_DOMAIN = "ai.edgespec"  # edgespec's CPU custom ops (native/src/ops/attention_op.h)
ATTENTIONS = ("auto", "gqa", "edgespec")
QUANT_OPS = ("auto", "matmulnbits")
FLOAT_OPS = ("auto", "matmul")

# Graph I/O names (recorded verbatim in the manifest).
IO_NAMES = {
    "inputs": {
        "input_ids": "input_ids",
        "seqlens_k": "seqlens_k",
        "total_sequence_length": "total_sequence_length",
        "past_key": "past_key_values.{layer}.key",
        "past_value": "past_key_values.{layer}.value",
    },
    "outputs": {
        "logits": "logits",
        "present_key": "present.{layer}.key",
        "present_value": "present.{layer}.value",
        "hidden_states": "hidden_states",
    },
}


LOGITS_TO_KEEP = "logits_to_keep"  # optional input (manifest inputs.logits_to_keep)
# int32 [n] input of graphs with edgespec attention (manifest inputs.tree_parents): row i's
# parent row (-1: the past), so one verify call can check a tree of drafts (attention_op.h)
TREE_PARENTS = "tree_parents"


@dataclass(frozen=True)
class GraphOptions:
    precision: str = "fp32"  # fp32 | fp16 | int8 | int4
    capacity: int = 2048  # KV slots per layer
    block_size: int = 32  # MatMulNBits block size for weights quantized here
    accuracy_level: int = 4  # MatMulNBits accuracy_level (4 = int8 activations on CPU)
    hidden_states: bool = True  # expose the final-norm output as an extra graph output
    logits_to_keep: bool = True  # int64 [1] input: logits for the last k rows only (prefill: 1)
    # Attention op. gqa: ORT's com.microsoft GroupQueryAttention (every provider); edgespec:
    # ai.edgespec GroupQueryAttention (CPU), each query row computed alone, so a verify call
    # equals one-token decode steps bit for bit; auto: edgespec, gqa for fp16 (a GPU precision).
    attention: str = "auto"
    # 4- and 8-bit linear layers of a CPU graph (edgespec attention) in blocks of 32 with one
    # integer zero point or float16 offsets (w = d (q - z) + m: GGUF Q4_0, Q4_1, Q8_0). auto:
    # ai.edgespec QMatMul (one node; reads the weights once for all rows of a verify, where
    # MatMulNBits' cost grows by ~a quarter of a decode step per row); matmulnbits:
    # com.microsoft MatMulNBits, GGUF Q4_1's offsets added by one ai.edgespec BlockOffset node.
    quant_op: str = "auto"
    # float32 linear layers of a CPU graph (edgespec attention). auto: ai.edgespec FMatMul (weights
    # packed in tiles, streamed once for all rows of a call, each output one fma chain in input
    # order: one-token steps ~15% faster than MatMul here, verify rows as cheap); matmul: ONNX
    # MatMul (MLAS).
    float_op: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unsupported precision: {self.precision!r} (expected {PRECISIONS})")
        if self.capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {self.capacity}")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of two >= 16, got {self.block_size}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"accuracy_level must be 0..4, got {self.accuracy_level}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r} (expected {ATTENTIONS})")
        if self.quant_op not in QUANT_OPS:
            raise ValueError(f"unknown quant_op {self.quant_op!r} (expected {QUANT_OPS})")
        if self.float_op not in FLOAT_OPS:
            raise ValueError(f"unknown float_op {self.float_op!r} (expected {FLOAT_OPS})")
        if self.attention == "edgespec" and self.precision == "fp16":
            raise ValueError("attention 'edgespec' is float32 only: use 'gqa' with fp16")

    @property
    def attention_op(self) -> str:
        """The attention actually used: gqa | edgespec ("auto" resolved)."""
        if self.attention != "auto":
            return self.attention
        return "gqa" if self.precision == "fp16" else "edgespec"

    @property
    def tree_parents(self) -> bool:
        """Whether the graph takes tree_parents (every graph with edgespec attention)."""
        return self.attention_op == "edgespec"

    @property
    def opsets(self) -> list:
        """Opset imports of a graph built with these options."""
        extra = [helper.make_opsetid(EDGESPEC_DOMAIN, 1)] if self.attention_op == "edgespec" else []
        return OPSETS + extra

    @property
    def quant_bits(self) -> int | None:
        return {"int4": 4, "int8": 8}.get(self.precision)

    @property
    def kv_dtype(self) -> str:
        return "float16" if self.precision == "fp16" else "float32"


def _float(w: Weight) -> np.ndarray:
    """float32 view of a weight (dequantized when carried quantized)."""
    if isinstance(w, QuantizedWeight):
        return w.dequantize()
    return np.asarray(w, dtype=np.float32)


def _float16_exact(offset: np.ndarray) -> np.ndarray | None:
    """`offset` as float16 when that loses nothing but float32 rounding, else None. GGUF Q4_1
    stores its per-block minimum m as float16; the loader's offset -d * (-m / d) is m to within
    a float32 ulp or two, and float16 gets m back exactly."""
    with np.errstate(over="ignore"):
        m16 = offset.astype(np.float16)
    err = np.abs(m16.astype(np.float32) - offset)
    return m16 if bool(np.all(err <= 2.0**-20 * np.abs(offset))) else None


class _Builder:
    """Accumulates nodes and initializers; one method per building block."""

    def __init__(self, model: LoadedModel, opts: GraphOptions):
        self.model = model
        self.cfg = model.config
        self.opts = opts
        self.np_act = np.float16 if opts.precision == "fp16" else np.float32
        self.act = TensorProto.FLOAT16 if opts.precision == "fp16" else TensorProto.FLOAT
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._blocksums: dict[tuple[str, int], str] = {}

    # ---- primitives -------------------------------------------------------------------------
    def weight(self, key: str) -> Weight:
        if key not in self.model.weights:
            raise ValueError(f"missing weight in checkpoint: {key}")
        return self.model.weights[key]

    def init(self, name: str, arr: np.ndarray, dtype=None) -> str:
        """Add an initializer (cast to `dtype`, default: unchanged) and return its name."""
        if name in self._names:
            raise ValueError(f"duplicate initializer name: {name}")
        self._names.add(name)
        arr = np.ascontiguousarray(arr if dtype is None else arr.astype(dtype))
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def act_init(self, name: str, arr: np.ndarray) -> str:
        """Initializer in the activation dtype (float32, or float16 for fp16)."""
        return self.init(name, np.asarray(arr, dtype=np.float32), self.np_act)

    def const_i64(self, name: str, values: list[int]) -> str:
        if name not in self._names:
            self.init(name, np.array(values, dtype=np.int64))
        return name

    def node(
        self, op: str, inputs: list[str], name: str, n_out: int = 1, domain: str = "", **attrs
    ) -> list[str]:
        outs = [f"{name}/out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return outs

    # ---- norms ------------------------------------------------------------------------------
    def norm(self, x: str, residual: str | None, key: str, name: str) -> tuple[str, str]:
        """RMSNorm(x + residual) -> (normed [1,n,H], new residual [1,n,H])."""
        gamma = self.act_init(key, _float(self.weight(key)))  # [H]
        eps = float(self.cfg.rms_norm_eps)
        if residual is None:
            (y,) = self.node(
                "SimplifiedLayerNormalization", [x, gamma], name, axis=-1, epsilon=eps, stash_type=1
            )
            return y, x
        outs = [f"{name}/out0", "", "", f"{name}/sum"]
        self.nodes.append(
            helper.make_node(
                "SkipSimplifiedLayerNormalization",
                [x, residual, gamma],
                outs,
                name=name,
                domain=MS,
                epsilon=eps,
            )
        )
        return outs[0], outs[3]

    def head_norm(self, x: str, key: str, n_heads: int, name: str) -> str:
        """Per-head RMSNorm (qwen3 q_norm/k_norm): x [1,n,heads*D] -> [1,n,heads*D]."""
        d = self.cfg.head_dim
        shape = self.const_i64(f"const/shape_heads_{n_heads}", [0, 0, n_heads, d])
        flat = self.const_i64("const/shape_flat3", [0, 0, -1])
        (x4,) = self.node("Reshape", [x, shape], f"{name}/reshape")  # [1,n,heads,D]
        gamma = self.act_init(key, _float(self.weight(key)))  # [D]
        (y4,) = self.node(
            "SimplifiedLayerNormalization",
            [x4, gamma],
            name,
            axis=-1,
            epsilon=float(self.cfg.rms_norm_eps),
            stash_type=1,
        )
        (y,) = self.node("Reshape", [y4, flat], f"{name}/flatten")  # [1,n,heads*D]
        return y

    def biases(self, keys: list[str], required: bool = False) -> list[str] | None:
        """`keys` when the checkpoint has these biases (all of them), else None."""
        present = [k in self.model.weights for k in keys]
        if required or all(present):
            return keys
        if any(present):
            raise ValueError(f"checkpoint has only some of the biases {keys}")
        return None

    # ---- linear layers ----------------------------------------------------------------------
    def linear(self, x: str, keys: list[str], name: str, bias_keys: list[str] | None = None) -> str:
        """y = x @ concat(W_k)^T (+ bias): x [1,n,in] -> [1,n,sum(out_k)]."""
        ws = [self.weight(k) for k in keys]
        if self.opts.quant_bits is None:
            w = np.concatenate([_float(w) for w in ws], axis=0)  # [out, in]
            y = self.fmatmul(x, w, name) or self.matmul(x, w, name)
        else:
            y = self.quantized_linear(x, ws, name)
        if bias_keys:
            b = np.concatenate([_float(self.weight(k)) for k in bias_keys])  # [out]
            (y,) = self.node("Add", [y, self.act_init(f"{name}.bias", b)], f"{name}/bias")
        return y

    def matmul(self, x: str, w: np.ndarray, name: str) -> str:
        """x [1,n,in] -> [1,n,out] by ONNX MatMul over w [out, in] (activation dtype)."""
        wt = self.act_init(f"{name}.weight_t", w.T)  # [in, out]
        (y,) = self.node("MatMul", [x, wt], name)
        return y

    @property
    def fmatmul_allowed(self) -> bool:
        """FMatMul runs this graph's float linear layers (fp32, edgespec attention, float_op
        auto)."""
        o = self.opts
        return o.precision == "fp32" and o.attention_op == "edgespec" and o.float_op == "auto"

    def fmatmul(self, x: str, w: np.ndarray, name: str) -> str | None:
        """x [1,n,in] -> [1,n,out] by one ai.edgespec FMatMul node over w [out, in] where it
        applies (a float32 CPU graph with edgespec attention, float_op auto), else None."""
        if not self.fmatmul_allowed:
            return None
        tiles = self.init(f"{name}.ftiles", pack_ftiles(w))  # float32 [ceil(out/16), in, 16]
        (y,) = self.node("FMatMul", [x, tiles], name, domain=EDGESPEC_DOMAIN, N=w.shape[0])
        return y

    def quantized_linear(self, x: str, ws: list[Weight], name: str) -> str:
        """QMatMul or MatMulNBits over the fused weights; falls back to per-part nodes + Concat."""
        qws = [w if isinstance(w, QuantizedWeight) else self.quantize_here(w) for w in ws]
        try:
            fused = [concat_quantized(qws)]
        except ValueError:  # mixed bit widths / block sizes carried from the source
            fused = qws
        outs = []
        for i, q in enumerate(fused):
            part = f"{name}/part{i}" if len(fused) > 1 else name
            outs.append(self.qmatmul(x, q, part) or self.matmul_nbits(x, q, part))
        if len(outs) == 1:
            return outs[0]
        (y,) = self.node("Concat", outs, f"{name}/concat", axis=-1)
        return y

    def matmul_nbits(self, x: str, qw: QuantizedWeight, name: str) -> str:
        """x [1,n,K] -> [1,n,N] with W packed exactly; non-integer zero points add an offset."""
        p = pack_matmulnbits(qw)
        ins = [
            x,
            self.init(f"{name}.qweight", p.b),  # uint8 [N, nb, blob]
            self.init(f"{name}.scales", p.scales),  # float32 [N*nb]
            self.init(f"{name}.qzeros", p.zero_points),
        ]  # uint8 [N*ceil(nb*bits/8)]
        (y,) = self.node(
            "MatMulNBits",
            ins,
            name,
            domain=MS,
            K=p.k,
            N=p.n,
            bits=p.bits,
            block_size=p.block_size,
            accuracy_level=self.opts.accuracy_level,
        )
        if p.offset is None:
            return y
        m16 = _float16_exact(p.offset)
        if m16 is not None and self.opts.attention_op == "edgespec":  # a CPU-only graph
            m = self.init(f"{name}.block_offset", m16)  # float16 [nb, N]
            (y,) = self.node(
                "BlockOffset",
                [y, x, m],
                f"{name}/offset",
                domain=EDGESPEC_DOMAIN,
                block_size=p.block_size,
            )  # [1,n,N]: y + blocksum(x) @ m, one node (native/src/ops/block_offset.h)
            return y
        sums = self.blocksum(x, p.block_size)  # [1,n,nb]
        off = self.init(f"{name}.block_offset", p.offset)  # float32 [nb, N]
        (corr,) = self.node("MatMul", [sums, off], f"{name}/offset")  # [1,n,N]
        (y,) = self.node("Add", [y, corr], f"{name}/add_offset")
        return y

    def quantize_here(self, w: Weight) -> QuantizedWeight:
        """A float weight quantized at export: in Q4_1's form where QMatMul will run it (its
        offsets must be float16), else round-to-nearest with integer zero points."""
        bits, bs = self.opts.quant_bits, self.opts.block_size
        if bits == 4 and bs == Q_BLOCK and self.qmatmul_allowed:
            return quantize_q4_1(_float(w), bs)
        return quantize_rtn(w, bits, bs)

    @property
    def qmatmul_allowed(self) -> bool:
        """QMatMul may run this graph's 4- and 8-bit layers (a CPU graph, quant_op auto)."""
        return self.opts.attention_op == "edgespec" and self.opts.quant_op == "auto"

    def qmatmul(self, x: str, qw: QuantizedWeight, name: str) -> str | None:
        """x [1,n,K] -> [1,n,N] by one ai.edgespec QMatMul node where it applies (a CPU graph,
        quant_op auto, 4 or 8 bits in blocks of 32, and one integer zero point for the whole
        layer, GGUF Q4_0 / Q8_0, or offsets m = -scale * zero_point that float16 holds, GGUF
        Q4_1), else None."""
        if not self.qmatmul_allowed or qw.bits not in (4, 8) or qw.block_size != Q_BLOCK:
            return None
        zp = qw.zero_point  # [N, nb]
        z = int(zp.flat[0]) if zp.size else 0
        if np.all(zp == z) and 0 <= z < 1 << qw.bits:  # one integer zero point (Q4_0, Q8_0)
            m16 = np.zeros(zp.shape, np.float16)  # subtracted exactly in int32 instead
        else:  # per-block offsets (Q4_1): zero point 0, m = -scale * zero_point
            z, m16 = 0, _float16_exact(-qw.scale.astype(np.float32) * zp.astype(np.float32))
            if m16 is None:
                return None
        p = pack_qtiles(qw, m16, z)
        ins = [
            x,
            self.init(f"{name}.qtiles", p.q),  # uint8 [tiles, nb, 64 * bits]
            self.init(f"{name}.qtiles_scale", p.scale),  # float32 [tiles, nb, 16]
            self.init(f"{name}.qtiles_m", p.m),  # float16 [tiles, nb, 16]
        ]
        attrs = {"N": p.n, "bits": p.bits, "zero_point": p.zero_point}
        (y,) = self.node("QMatMul", ins, name, domain=EDGESPEC_DOMAIN, **attrs)  # [1,n,N]
        return y

    def blocksum(self, x: str, block_size: int) -> str:
        """Per-block sums of x: [1,n,K] -> [1,n,K/block_size] (cached per input)."""
        key = (x, block_size)
        if key not in self._blocksums:
            shape = self.const_i64(f"const/shape_blocks_{block_size}", [0, 0, -1, block_size])
            axes = self.const_i64("const/axes_last", [-1])
            (xb,) = self.node("Reshape", [x, shape], f"{x}/blocks{block_size}")  # [1,n,nb,bs]
            (s,) = self.node("ReduceSum", [xb, axes], f"{x}/blocksum{block_size}", keepdims=0)
            self._blocksums[key] = s
        return self._blocksums[key]

    # ---- blocks -----------------------------------------------------------------------------
    def attention(self, i: int, x: str, cos: str, sin: str) -> str:
        """Self-attention of layer i: x [1,n,H] -> [1,n,H]; writes present.{i}.key/value."""
        cfg, p = self.cfg, f"model.layers.{i}.self_attn"
        nq, nkv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        keys = [f"{p}.{t}_proj.weight" for t in "qkv"]
        bias = self.biases([f"{p}.{t}_proj.bias" for t in "qkv"], cfg.attention_bias)
        qkv = self.linear(x, keys, f"{p}.qkv_proj", bias)  # [1,n,(nq+2*nkv)*D]
        if cfg.qk_norm:
            split = self.init(f"{p}.qkv_split", np.array([nq * d, nkv * d, nkv * d], np.int64))
            q, k, v = self.node("Split", [qkv, split], f"{p}.qkv_split", n_out=3, axis=-1)
            q = self.head_norm(q, f"{p}.q_norm.weight", nq, f"{p}.q_norm")  # [1,n,nq*D]
            k = self.head_norm(k, f"{p}.k_norm.weight", nkv, f"{p}.k_norm")  # [1,n,nkv*D]
            qkv_in = [q, k, v]
        else:
            qkv_in = [qkv, "", ""]  # packed QKV
        io = IO_NAMES
        past = [
            io["inputs"]["past_key"].format(layer=i),
            io["inputs"]["past_value"].format(layer=i),
        ]
        present = [
            io["outputs"]["present_key"].format(layer=i),
            io["outputs"]["present_value"].format(layer=i),
        ]
        ins = qkv_in + past + ["seqlens_k", "total_sequence_length", cos, sin]
        if self.opts.tree_parents:
            ins.append(TREE_PARENTS)
        out = f"{p}.gqa/out0"
        self.nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                ins,
                [out] + present,
                name=f"{p}.gqa",
                domain=MS if self.opts.attention_op == "gqa" else EDGESPEC_DOMAIN,
                num_heads=nq,
                kv_num_heads=nkv,
                do_rotary=1,
                rotary_interleaved=0,
                scale=float(1.0 / np.sqrt(d)),
                local_window_size=-1,
            )
        )  # out: [1,n,nq*D]
        o_bias = self.biases([f"{p}.o_proj.bias"])
        return self.linear(out, [f"{p}.o_proj.weight"], f"{p}.o_proj", o_bias)  # [1,n,H]

    def mlp(self, i: int, x: str) -> str:
        """SwiGLU MLP: x [1,n,H] -> [1,n,H] with one fused gate-up MatMul."""
        p, inter = f"model.layers.{i}.mlp", self.cfg.intermediate_size
        gu_bias = self.biases([f"{p}.gate_proj.bias", f"{p}.up_proj.bias"])
        gu = self.linear(
            x, [f"{p}.gate_proj.weight", f"{p}.up_proj.weight"], f"{p}.gate_up_proj", gu_bias
        )
        split = self.const_i64(f"const/split_{inter}x2", [inter, inter])
        gate, up = self.node("Split", [gu, split], f"{p}.gate_up_split", n_out=2, axis=-1)
        (sig,) = self.node("Sigmoid", [gate], f"{p}.act/sigmoid")  # [1,n,I]
        (silu,) = self.node("Mul", [gate, sig], f"{p}.act/silu")  # [1,n,I]
        (h,) = self.node("Mul", [silu, up], f"{p}.act/gated")  # [1,n,I]
        down_bias = self.biases([f"{p}.down_proj.bias"])
        return self.linear(h, [f"{p}.down_proj.weight"], f"{p}.down_proj", down_bias)  # [1,n,H]

    def embed(self) -> str:
        """input_ids int64 [1,n] -> [1,n,H]."""
        table = _float(self.weight("model.embed_tokens.weight"))  # [V, H]
        if self.cfg.tie_word_embeddings and self.fmatmul_allowed:  # the LM head's tiles
            tiles = self.init("model.embed_tokens.ftiles", pack_ftiles(table))  # [ceil(V/16),H,16]
            return gather_tiled_rows(self, tiles, "input_ids", table.shape[1], "model.embed_tokens")
        (x,) = self.node(
            "Gather",
            [self.act_init("model.embed_tokens.weight", table), "input_ids"],
            "model.embed_tokens",
            axis=0,
        )
        return x

    def lm_head(self, h: str) -> str:
        """Final hidden [1,n,H] -> logits in the activation dtype [1,n,V]."""
        key = "model.embed_tokens.weight" if self.cfg.tie_word_embeddings else "lm_head.weight"
        if self.opts.quant_bits is not None or not self.cfg.tie_word_embeddings:
            return self.linear(h, [key], "lm_head")
        if self.fmatmul_allowed:  # the tiles embed() wrote: one table for both
            tiles, n = "model.embed_tokens.ftiles", self.cfg.vocab_size
            (y,) = self.node("FMatMul", [h, tiles], "lm_head", domain=EDGESPEC_DOMAIN, N=n)
            return y  # [1,n,V]
        # Tied float head: Gemm(transB=1) reuses the embedding table, no transposed copy.
        h2 = self.const_i64("const/shape_rows", [-1, self.cfg.hidden_size])
        back = self.const_i64("const/shape_logits", [1, -1, self.cfg.vocab_size])
        (rows,) = self.node("Reshape", [h, h2], "lm_head/rows")  # [n,H]
        (y,) = self.node("Gemm", [rows, "model.embed_tokens.weight"], "lm_head", transB=1)  # [n,V]
        (y3,) = self.node("Reshape", [y, back], "lm_head/logits")  # [1,n,V]
        return y3

    def keep_last_rows(self, h: str) -> str:
        """h [1,n,H] -> its last `logits_to_keep` rows [1,k,H]: a prefill chunk needs the logits
        of its last token only, and the LM head is ~20% of a small model's compute."""
        (start,) = self.node("Neg", [LOGITS_TO_KEEP], "logits_to_keep/neg")  # int64 [1] = -k
        end = self.const_i64("const/int64_max", [2**63 - 1])
        axes = self.const_i64("const/axes_1", [1])
        (rows,) = self.node("Slice", [h, start, end, axes], "logits_to_keep/slice")  # [1,k,H]
        return rows

    def to_float32(self, x: str, out: str) -> None:
        """Route x to the float32 graph output `out` (Cast when activations are fp16)."""
        op = "Cast" if self.act != TensorProto.FLOAT else "Identity"
        attrs = {"to": TensorProto.FLOAT} if op == "Cast" else {}
        self.nodes.append(helper.make_node(op, [x], [out], name=f"{out}/{op.lower()}", **attrs))

    # ---- graph ------------------------------------------------------------------------------
    def io(self) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
        cfg, cap = self.cfg, self.opts.capacity
        kv = [1, cfg.num_kv_heads, cap, cfg.head_dim]  # BNSH, shared past/present buffer
        vi = helper.make_tensor_value_info
        inputs = [
            vi("input_ids", TensorProto.INT64, [1, "n"]),
            vi("seqlens_k", TensorProto.INT32, [1]),
            vi("total_sequence_length", TensorProto.INT32, []),
        ]
        if self.opts.logits_to_keep:
            inputs.append(vi(LOGITS_TO_KEEP, TensorProto.INT64, [1]))
        if self.opts.tree_parents:
            inputs.append(vi(TREE_PARENTS, TensorProto.INT32, ["n"]))
        rows = "k" if self.opts.logits_to_keep else "n"
        outputs = [vi("logits", TensorProto.FLOAT, [1, rows, cfg.vocab_size])]
        for i in range(cfg.num_layers):
            for kind in ("key", "value"):
                inputs.append(vi(IO_NAMES["inputs"][f"past_{kind}"].format(layer=i), self.act, kv))
                outputs.append(
                    vi(IO_NAMES["outputs"][f"present_{kind}"].format(layer=i), self.act, kv)
                )
        if self.opts.hidden_states:
            outputs.append(vi("hidden_states", TensorProto.FLOAT, [1, "n", cfg.hidden_size]))
        return inputs, outputs


def _check_model(model: LoadedModel, opts: GraphOptions) -> None:
    cfg = model.config
    if cfg.architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"unsupported architecture: {cfg.architecture!r} "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    if cfg.num_heads % cfg.num_kv_heads:
        raise ValueError(f"num_heads {cfg.num_heads} not a multiple of kv heads {cfg.num_kv_heads}")
    if cfg.head_dim % 2:
        raise ValueError(f"head_dim must be even for rotary, got {cfg.head_dim}")
    if cfg.sliding_window is not None and opts.capacity > cfg.sliding_window:
        raise ValueError(
            f"capacity {opts.capacity} exceeds the model's sliding_window "
            f"{cfg.sliding_window} (not implemented): use a capacity <= the window"
        )
    if opts.quant_bits is not None and cfg.hidden_size % opts.block_size:
        raise ValueError(
            f"hidden_size {cfg.hidden_size} not a multiple of block_size {opts.block_size}"
        )


def build_decoder(
    model: LoadedModel, opts: GraphOptions, progress: bool = False
) -> onnx.ModelProto:
    """The decoder graph of docs/bundle-format.md for `model` (weights inline in the proto)."""
    from tqdm import tqdm

    _check_model(model, opts)
    b, cfg = _Builder(model, opts), model.config
    cos_np, sin_np = rope_caches(cfg, opts.capacity)  # [capacity, D/2] each
    cos, sin = b.act_init("rotary.cos_cache", cos_np), b.act_init("rotary.sin_cache", sin_np)
    x = b.embed()  # [1,n,H]
    h, res = b.norm(x, None, "model.layers.0.input_layernorm.weight", "model.layers.0.input_ln")
    layers = tqdm(range(cfg.num_layers), desc="building graph", unit="layer", disable=not progress)
    for i in layers:
        attn = b.attention(i, h, cos, sin)  # [1,n,H]
        p = f"model.layers.{i}"
        h, res = b.norm(attn, res, f"{p}.post_attention_layernorm.weight", f"{p}.post_attn_ln")
        mlp = b.mlp(i, h)  # [1,n,H]
        last = i == cfg.num_layers - 1
        nkey = "model.norm.weight" if last else f"model.layers.{i + 1}.input_layernorm.weight"
        h, res = b.norm(mlp, res, nkey, "model.norm" if last else f"model.layers.{i + 1}.input_ln")
    logits = b.lm_head(b.keep_last_rows(h) if opts.logits_to_keep else h)  # [1,k,V]
    b.to_float32(logits, "logits")
    if opts.hidden_states:
        b.to_float32(h, "hidden_states")
    inputs, outputs = b.io()
    graph = helper.make_graph(b.nodes, "edgespec_decoder", inputs, outputs, initializer=b.inits)
    proto = helper.make_model(
        graph, opset_imports=opts.opsets, ir_version=IR_VERSION, producer_name="edgespec"
    )
    return proto
