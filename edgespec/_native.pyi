"""Type stubs of the native core (native/src/bindings.cpp)."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

def load_runtime(path: str = "") -> None:
    """dlopen libonnxruntime ("" = system loader) once per process; RuntimeError on failure."""

def runtime_version() -> str:
    """Version string of the loaded ORT ("" before load_runtime)."""

def available_providers() -> list[str]:
    """Execution providers of the loaded ORT build (e.g. "CPUExecutionProvider")."""

class ModelSpec:
    path: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    capacity: int
    kv_dtype: str
    logits_dtype: str
    input_ids: str
    seqlens_k: str
    total_sequence_length: str
    past_key: str
    past_value: str
    present_key: str
    present_value: str
    logits: str
    logits_to_keep: str
    tree_parents: str
    hidden_size: int
    features: str  # input float32 [1, n, hidden_size]; "" = the graph has none
    hidden_states: str  # output float32 [1, n, hidden_size]; "" = not bound
    token_map: list[int]  # eagle head only: draft id -> target id
    reuse_prefix: bool  # width-invariant rows: keep the KV of a prompt's shared prefix
    def __init__(self, **kwargs: Any) -> None: ...

class ProviderSpec:
    name: str
    threads: int
    device_id: int
    trt_cache_dir: str
    allow_fallback: bool
    prefill_chunk: int  # prompt tokens per forward (logits_to_keep graphs); 0 = 256
    def __init__(self, **kwargs: Any) -> None: ...

class GenConfig:
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    drafter: str  # "none" | "ngram" | "model" | "eagle"
    num_draft_tokens: int
    adaptive: bool
    ngram_max: int
    ngram_min: int
    ngram_table: bool
    copy_match: int
    draft_confidence: float
    sibling_min: float
    eos_ids: list[int]
    def __init__(self, **kwargs: Any) -> None: ...

class GenStats:
    @property
    def n_prompt(self) -> int: ...
    @property
    def n_prompt_reused(self) -> int: ...
    @property
    def n_generated(self) -> int: ...
    @property
    def n_steps(self) -> int: ...
    @property
    def n_draft(self) -> int: ...
    @property
    def n_accept(self) -> int: ...
    @property
    def accept_hist(self) -> list[int]: ...
    @property
    def n_tree(self) -> int: ...
    @property
    def n_off_chain(self) -> int: ...
    @property
    def t_prefill_s(self) -> float: ...
    @property
    def t_draft_s(self) -> float: ...
    @property
    def t_verify_s(self) -> float: ...
    @property
    def t_total_s(self) -> float: ...
    @property
    def t_first_token_s(self) -> float: ...

class GenResult:
    @property
    def tokens(self) -> list[int]: ...
    @property
    def finish_reason(self) -> str: ...  # "eos" | "length" | "stop" | "cancelled"
    @property
    def stats(self) -> GenStats: ...

class CancelToken:
    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    def reset(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

class NgramTable:
    """The bundle's n-gram table (validated by the Engine)."""

    def __init__(
        self, keys: Any, next: Any, hits: Any, total: Any, n_min: int, n_max: int
    ) -> None: ...
    @property
    def entries(self) -> int: ...
    @property
    def n_min(self) -> int: ...
    @property
    def n_max(self) -> int: ...

class Engine:
    def __init__(
        self,
        target: ModelSpec,
        draft: ModelSpec | None = None,
        target_provider: ProviderSpec = ...,
        draft_provider: ProviderSpec | None = None,
        eagle: ModelSpec | None = None,
        table: NgramTable | None = None,
    ) -> None: ...
    @property
    def has_draft(self) -> bool: ...
    @property
    def has_eagle(self) -> bool: ...
    @property
    def capacity(self) -> int: ...
    def generate(
        self,
        prompt: Sequence[int] | npt.NDArray[np.integer],
        config: GenConfig = ...,
        on_chunk: Callable[[list[int]], bool | None] | None = None,
        cancel: CancelToken | None = None,
    ) -> GenResult: ...
    def forget(self, keep: int = 0) -> None: ...

class _SpecModule:
    """edgespec._native.spec: the pure acceptance math on float32 numpy arrays (for tests)."""

    @staticmethod
    def process_logits(
        logits: npt.ArrayLike, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
    ) -> npt.NDArray[np.float32]:
        """softmax(logits / T) → top-k → top-p, renormalised; rows of a 2-D array
        independently. temperature 0 gives the one-hot argmax."""
    @staticmethod
    def argmax(x: npt.ArrayLike) -> int: ...
    @staticmethod
    def residual(
        p: npt.ArrayLike, q: npt.ArrayLike | None = None, draft: int = -1
    ) -> tuple[bool, npt.NDArray[np.float32]]:
        """(ok, norm(max(0, p - q))); q None = one-hot on `draft`; ok False if the mass is 0."""
    @staticmethod
    def sample(probs: npt.ArrayLike, seed: int) -> int: ...
    @staticmethod
    def accept_greedy(logits: npt.ArrayLike, draft: npt.ArrayLike) -> tuple[int, int]:
        """(n_accept, next_token) for target logits [k+1, vocab] and k drafted tokens."""
    @staticmethod
    def accept_greedy_tree(
        logits: npt.ArrayLike, draft: npt.ArrayLike, parent: npt.ArrayLike
    ) -> tuple[int, int, list[int]]:
        """(n_accept, next_token, accepted draft indices) of a draft tree: draft i hangs
        below verify row parent[i] (0 = the last committed token, j = draft j - 1)."""
    @staticmethod
    def accept_sampling(
        p_rows: npt.ArrayLike, q_rows: npt.ArrayLike | None, draft: npt.ArrayLike, seed: int
    ) -> tuple[int, int]:
        """Speculative sampling: (n_accept, next_token); q_rows None = one-hot drafts."""
    @staticmethod
    def uniform(seed: int, count: int) -> npt.NDArray[np.float64]:
        """`count` draws of the engine's RNG (xoshiro256**) in [0, 1)."""
    @staticmethod
    def choose_draft_length(accept: list[float], cost: list[float], draft_cost: float = 0.0) -> int:
        """argmax_k E(k)/C(k): accept[i] = P(draft i+1 accepted | earlier accepted),
        cost[w-1] = verify cost of width w relative to width 1."""
    @staticmethod
    def lookup(seq: Any, n_min: int, n_max: int, k: int) -> tuple[int, list[int]]:
        """Prompt lookup: (match length, k proposed tokens), (0, []) without a match."""
    @staticmethod
    def ngram_key(tokens: Any) -> int:
        """Key of an n-gram table context (ngram_table.h)."""
    @staticmethod
    def table_draft(table: NgramTable, vocab: int, seq: Any, k: int) -> tuple[int, list[int]]:
        """An n-gram table's draft after seq: (context length of its first token, tokens)."""
    DraftPolicy: type[_DraftPolicy]
    DRAFT_CLASSES: int

class _DraftPolicy:
    """The cost-aware draft-length policy (native/src/draft_policy.h)."""
    def __init__(self, k_limit: int) -> None: ...
    def reset_acceptance(self, k_max: int, prior_accept: float, use_times: bool) -> None: ...
    def set_prior_draft_cost(self, d: float) -> None: ...
    def observe(
        self,
        cls: int,
        n_draft: int,
        n_accept: int,
        t_verify: float,
        t_draft: float,
        width: int = 0,
    ) -> None: ...
    def choose(self, cls: int) -> int: ...

spec: _SpecModule

class _OpsModule:
    """edgespec._native.ops: the ai.edgespec kernels (native/src/ops/row_attention.h,
    block_offset.h)."""

    @staticmethod
    def attend_rows(
        q: npt.ArrayLike,
        k: npt.ArrayLike,
        v: npt.ArrayLike,
        n0: int,
        scale: float,
        generic: bool = False,
        tail: npt.ArrayLike | None = None,
        n_direct: int = 0,
        counts: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.float32]:
        """Causal attention of query rows q [nr, D] at consecutive positions (row r sees
        k, v rows j < n0 + r, or j < counts[r]: int32 [nr] from n0, never decreasing) -> [nr, D];
        generic: the portable kernel instead of AVX2. tail (rows that all see n0 keys): keys
        j >= n_direct are the rows tail[j - n_direct]."""
    @staticmethod
    def exp_nonpositive(x: float) -> float:
        """e^x for x <= 0 (the kernel's exp)."""
    @staticmethod
    def block_offset(
        y: npt.ArrayLike,
        x: npt.ArrayLike,
        m: npt.ArrayLike,
        block_size: int,
        generic: bool = False,
    ) -> npt.NDArray[np.float32]:
        """y [rows, n] + blocksum(x [rows, nb * block_size]) @ m (float16 bit patterns as
        uint16 [nb, n]); generic: the portable kernel instead of AVX2."""
    @staticmethod
    def qmatmul(
        x: npt.ArrayLike,
        q: npt.ArrayLike,
        scale: npt.ArrayLike,
        m: npt.ArrayLike,
        n: int,
        bits: int = 4,
        zero_point: int = 0,
        kernel: str = "auto",
    ) -> npt.NDArray[np.float32]:
        """x [rows, K] @ W^T -> [rows, n] for 4- or 8-bit weights packed by pack_qtiles (q uint8
        [tiles, K/32, 64 * bits], scale float [tiles, K/32, 16], m float16 bits as uint16 [tiles,
        K/32, 16]; W = scale (q - zero_point) + m); activations quantized to int8 per block of
        32. kernel: auto (the op's choice on this CPU), generic, avx2 or avx512vnni (ValueError
        when this CPU lacks it)."""
    @staticmethod
    def qmatmul_kernel() -> str:
        """Which QMatMul kernel this CPU runs: avx512vnni, avx2 or generic."""
    @staticmethod
    def fmatmul(
        x: npt.ArrayLike, w: npt.ArrayLike, n: int, kernel: str = "auto"
    ) -> npt.NDArray[np.float32]:
        """x [rows, K] @ W^T -> [rows, n] for float32 weights packed by pack_ftiles (w [ceil(n/16),
        K, 16]), each output one fma chain in input order; kernel: auto (the op's), generic, avx2
        or avx512 (ValueError when this CPU lacks it)."""
    @staticmethod
    def fmatmul_kernel() -> str:
        """Which FMatMul kernel this CPU runs: avx512, avx2 or generic."""
    MAX_ROWS: int
    MAX_VECTORS: int

ops: _OpsModule
