"""`Session`: a bundle opened for generation, and the results it returns.

Threading policy: one Session may be shared by several threads; `generate` calls are
serialized by an internal lock (a second caller waits for the first to finish). `cancel()`
may be called from any thread and ends the generation in progress at its next step.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from . import _native
from .bundle import Bundle, BundleError, load_bundle, load_lookup_table
from .config import PROVIDERS, GenerationConfig
from .text import IncrementalDetokenizer, StopMatcher, check_messages, check_unicode, render_chat


@dataclass(frozen=True)
class GenerationStats:
    """Figures of one generation (times in seconds)."""

    prompt_tokens: int  # prompt tokens
    new_tokens: int  # tokens generated
    steps: int  # target forward calls after the prefill
    drafted: int  # tokens proposed by the drafter
    accepted: int  # proposed tokens the target accepted
    acceptance_rate: float  # accepted / drafted (0 when nothing was drafted)
    mean_accepted_tokens: float  # tokens committed per target step (Spec-Bench's tau)
    accept_histogram: tuple[int, ...]  # [j] = steps that accepted exactly j drafted tokens
    tokens_per_s: float  # new_tokens / total_s
    decode_tokens_per_s: float  # tokens after the first / time after the first token
    time_to_first_token_s: float
    prefill_s: float
    draft_s: float  # time in the drafter
    verify_s: float  # time in target forward calls after the prefill
    total_s: float
    drafter: str  # drafter that ran: none | ngram | model | eagle
    # of prompt_tokens, those whose KV the previous generation left (a shared prefix: a chat
    # follow-up), so not prefilled again
    prompt_tokens_reused: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class GenerationResult:
    text: str  # generated text (stop string and special tokens excluded)
    tokens: list[int]  # generated token ids (EOS included when it ended the generation)
    finish_reason: str  # "eos" | "length" | "stop" | "cancelled"
    stats: GenerationStats
    prompt_tokens: list[int] = field(repr=False, default_factory=list)


class Session:
    """A bundle opened for generation: tokenizer, chat template and the native engine.

    `provider` / `draft_provider`: "cpu", "cuda" or "tensorrt" (draft defaults to the
    target's). `threads`: intra-op threads per model (None = ONNX Runtime's default).
    `prefill_chunk`: prompt tokens per forward pass (None = 256 for fp32/fp16 targets, 128 for
    int8/int4 ones): wider prefills long prompts faster (one pass over the weights per chunk) and
    needs more activation memory.
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike[str],
        provider: str = "cpu",
        draft_provider: str | None = None,
        threads: int | None = None,
        device_id: int = 0,
        trt_cache_dir: str | None = None,
        prefill_chunk: int | None = None,
    ) -> None:
        if prefill_chunk is not None and (
            not isinstance(prefill_chunk, int)
            or isinstance(prefill_chunk, bool)
            or prefill_chunk < 1
        ):
            raise ValueError(
                f"prefill_chunk must be a positive integer or None, got {prefill_chunk!r}"
            )
        self.bundle: Bundle = load_bundle(bundle_dir)
        for p in (provider, draft_provider or provider):
            if p not in PROVIDERS:
                raise ValueError(f"unknown provider {p!r}; choose one of {', '.join(PROVIDERS)}")
        _check_attention(self.bundle, provider, draft_provider or provider)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.tokenizer = _load_tokenizer(self.bundle.tokenizer.path)
        prefill_chunk = prefill_chunk or _default_prefill_chunk(self.bundle.target.precision)
        tp = _provider(provider, threads, device_id, trt_cache_dir, prefill_chunk)
        dp = _provider(draft_provider or provider, threads, device_id, trt_cache_dir, prefill_chunk)
        b = self.bundle
        draft = _model_spec(b.draft) if b.draft else _native.ModelSpec()
        target = _model_spec(b.target, hidden_states=b.eagle is not None)
        extra = {"eagle": _model_spec(b.eagle)} if b.eagle else {}
        if b.lookup is not None and b.lookup.entries:
            info = b.lookup
            tables = load_lookup_table(info)
            extra["table"] = _native.NgramTable(**tables, n_min=info.n_min, n_max=info.n_max)
        self._engine: Any = _native.Engine(target, draft, tp, dp, **extra)
        self._lock = threading.Lock()
        self._running: _Run | None = None  # the generation holding the lock, if any

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the ONNX Runtime sessions and KV buffers. Idempotent."""
        self.cancel()
        with self._lock:
            self._engine = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def has_draft(self) -> bool:
        """True when the bundle carries a draft model (drafter "model" is available)."""
        return self.bundle.draft is not None

    @property
    def has_eagle(self) -> bool:
        """True when the bundle carries a distilled draft head (drafter "eagle" is available)."""
        return self.bundle.eagle is not None

    @property
    def capacity(self) -> int:
        """Tokens (prompt + generated) that fit in the KV cache."""
        return self.bundle.capacity

    def forget(self, keep: int = 0) -> None:
        """Drop the KV state earlier generations left past their first `keep` tokens (0: all of
        it). A generation keeps the KV of the prefix its prompt shares with the conversation so
        far (a chat follow-up prefills only its new tokens; stats.prompt_tokens_reused); after
        this the next one prefills from `keep` at the latest, a cold start. Outputs never
        depend on it, only prefill time does. ValueError for keep < 0 (the engine's check)."""
        with self._lock:
            if self._engine is None:
                raise RuntimeError("session is closed")
            self._engine.forget(keep)

    def cancel(self) -> None:
        """End the generation in progress (finish_reason "cancelled"). Safe from any thread."""
        run = self._running
        if run is not None:
            run.cancel()

    # -- prompts -----------------------------------------------------------------------------
    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt string for `messages`, rendered as transformers renders it."""
        template = self.bundle.tokenizer.chat_template
        if template is None:
            raise ValueError("this bundle has no chat template: pass a plain string prompt")
        return render_chat(
            template,
            check_messages(messages),
            self.bundle.tokenizer.special_tokens,
            add_generation_prompt,
        )

    def encode(self, prompt: str | list[dict[str, Any]]) -> list[int]:
        """Token ids for a raw prompt (str) or a chat (list of messages)."""
        if isinstance(prompt, list):
            ids = self.tokenizer.encode(
                self.apply_chat_template(prompt), add_special_tokens=False
            ).ids
        elif isinstance(prompt, str):
            if not prompt:
                raise ValueError("prompt is empty")
            check_unicode(prompt, "prompt")
            ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
            bos = self.bundle.tokenizer.bos_token_id
            if self.bundle.tokenizer.add_bos_token and bos is not None:
                ids = [bos, *ids]
        else:
            raise TypeError(
                f"prompt must be a str or a list of messages, got {type(prompt).__name__}"
            )
        if not ids:
            raise ValueError("prompt encodes to no tokens")
        return ids

    # -- generation --------------------------------------------------------------------------
    def generate(
        self,
        prompt: str | list[dict[str, Any]],
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        stop: str | list[str] | tuple[str, ...] | None = None,
        drafter: str = "auto",
        num_draft_tokens: int | None = None,
        stream: bool = False,
        adaptive: bool = True,
        callback: Callable[[str], None] | None = None,
    ) -> GenerationResult | TextStream:
        """Generate a continuation of `prompt` (a string, or chat messages).

        Unset sampling parameters take the bundle's defaults. Returns a GenerationResult, or with
        `stream=True` a TextStream that yields text deltas and holds the result afterwards.
        `callback(delta)` is called with each text delta as it is committed (in the generating
        thread); an exception it raises ends the generation and propagates to the caller.
        """
        cfg = self._config(
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop,
            drafter,
            num_draft_tokens,
            adaptive,
        )
        ids = self.encode(prompt)
        self._check_fits(ids)
        run = _Run(self, ids, cfg)
        if stream:
            if callback is not None:
                raise ValueError("pass either stream=True or a callback, not both")
            return TextStream(run)
        return run.execute(on_text=callback)

    def _config(
        self,
        max_new_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        top_k: int | None,
        seed: int | None,
        stop: Any,
        drafter: str,
        num_draft_tokens: int | None,
        adaptive: bool,
    ) -> GenerationConfig:
        defaults = self.bundle.generation
        stops = () if stop is None else ((stop,) if isinstance(stop, str) else tuple(stop))
        cfg = GenerationConfig(
            max_new_tokens=_pick(max_new_tokens, defaults.get("max_new_tokens"), 256),
            temperature=_pick(temperature, defaults.get("temperature"), 0.0),
            top_p=_pick(top_p, defaults.get("top_p"), 1.0),
            top_k=_pick(top_k, defaults.get("top_k"), 0),
            seed=seed,
            stop=stops,
            drafter=drafter,
            num_draft_tokens=num_draft_tokens,
            adaptive=adaptive,
        )
        if cfg.drafter == "model" and not self.has_draft:
            raise ValueError("drafter 'model' needs a bundle with a draft model; this one has none")
        if cfg.drafter == "eagle" and not self.has_eagle:
            raise ValueError(
                "drafter 'eagle' needs a bundle with a draft head (`edgespec distill BUNDLE`); "
                "this one has none"
            )
        return cfg

    def _check_fits(self, ids: list[int]) -> None:
        if len(ids) + 1 > self.capacity:
            raise ValueError(
                f"prompt has {len(ids)} tokens but the context capacity is {self.capacity} "
                f"(prompt + at least 1 new token must fit)"
            )

    def _native_config(self, cfg: GenerationConfig) -> Any:
        nc = _native.GenConfig()
        nc.max_new_tokens = cfg.max_new_tokens
        nc.temperature = float(cfg.temperature)
        nc.top_p = float(cfg.top_p)
        nc.top_k = cfg.top_k
        nc.seed = secrets.randbits(63) if cfg.seed is None else cfg.seed
        nc.drafter = self.resolve_drafter(cfg.drafter)
        nc.num_draft_tokens = cfg.num_draft_tokens or 0
        nc.adaptive = cfg.adaptive
        nc.eos_ids = list(self.bundle.tokenizer.eos_token_ids)
        return nc

    def resolve_drafter(self, drafter: str) -> str:
        """ "auto" becomes "eagle" when the bundle has a draft head, else "model" when it has a
        draft model, else "ngram"."""
        if drafter == "auto":
            return "eagle" if self.has_eagle else "model" if self.has_draft else "ngram"
        return drafter


class _Run:
    """One generation: drives the native engine and turns committed tokens into text."""

    def __init__(self, session: Session, ids: list[int], cfg: GenerationConfig) -> None:
        self.session = session
        self.ids = ids
        self.cfg = cfg
        self.detok = IncrementalDetokenizer(session.tokenizer)
        self.stops = StopMatcher(cfg.stop)
        self.pieces: list[str] = []  # emitted text deltas
        self._cancel = _native.CancelToken()  # this run's own: cancelling it touches no other

    def cancel(self) -> None:
        """End this generation at its next step (or right away if it has not started)."""
        self._cancel.cancel()

    def execute(self, on_text: Any) -> GenerationResult:
        s = self.session
        with s._lock:
            if s._engine is None:
                raise RuntimeError("session is closed")
            native_cfg = s._native_config(self.cfg)

            def on_chunk(tokens: list[int]) -> bool:
                self._emit(self.stops.feed(self.detok.push(tokens)), on_text)
                return self.stops.stopped

            s._running = self
            try:
                out = s._engine.generate(self.ids, native_cfg, on_chunk, self._cancel)
            finally:
                s._running = None
        if not self.stops.stopped:
            self._emit(self.stops.feed(self.detok.flush()), on_text)
            self._emit(self.stops.flush(), on_text)
        reason = "stop" if self.stops.stopped else out.finish_reason
        stats = _stats(out.stats, native_cfg.drafter)
        return GenerationResult("".join(self.pieces), list(out.tokens), reason, stats, self.ids)

    def _emit(self, text: str, on_text: Any) -> None:
        if text:
            self.pieces.append(text)
            if on_text is not None:
                on_text(text)


class TextStream:
    """Iterator of text deltas from a streaming generation; `.result` once it is exhausted.

    The generation runs in a worker thread (ONNX Runtime releases the GIL). Leaving the loop
    early, or `close()`, cancels the generation and waits for the worker.
    """

    _DONE = object()

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._queue: queue.Queue[Any] = queue.Queue()
        self.result: GenerationResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="edgespec-stream", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self.result = self._run.execute(on_text=self._queue.put)
        except BaseException as e:  # handed to the consumer
            self._error = e
        finally:
            self._queue.put(self._DONE)

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                item = self._queue.get()
                if item is self._DONE:
                    break
                yield item
        finally:
            self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Cancel the generation if still running (or still waiting for the session) and wait
        for the worker. Cancels this stream's generation only, never another caller's."""
        if self._thread.is_alive():
            self._run.cancel()
            self._thread.join()


def _load_tokenizer(path: Path) -> Tokenizer:
    """The bundle's tokenizer.json; BundleError naming the file when it cannot be parsed."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the tokenizers library raises a bare Exception for a bad file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BundleError(f"cannot read the bundle's tokenizer {path}: {reason}") from None


def _pick(value: Any, default: Any, fallback: Any) -> Any:
    if value is not None:
        return value
    return default if default is not None else fallback


def _default_prefill_chunk(precision: str) -> int:
    """Measured on 2 cores, SmolLM2-135M, summarization prompts of 449-769 tokens: fp32 time to
    first token falls ~25% from 64- to 256-token chunks for +26 MB peak RSS; an int4 target
    (MatMulNBits, compute-bound in prefill) gains ~5% at 128 and nothing more at 256, where its
    RSS grows 41 MB instead of 13. int8 runs the same kernel family (not measured)."""
    return 128 if precision in ("int4", "int8") else 256


def _check_attention(bundle: Bundle, provider: str, draft_provider: str) -> None:
    """Refuse a GPU provider for attention that would run on the CPU, copying every layer's KV
    cache to the host and back at each step: edgespec's op (a CPU op), and ORT's
    GroupQueryAttention in float32 (it has no fp32 CUDA kernel; ORT's profile of SmolLM2 fp32 on
    an H200: 22 ms of kernels per forward, 13.5 of them attention on the CPU; fp16: 6.7 ms).
    The draft model and the draft head run on `draft_provider`."""
    pairs = [(bundle.target, provider)]
    pairs += [(m, draft_provider) for m in (bundle.draft, bundle.eagle) if m is not None]
    for model, p in pairs:
        if p == "cpu":
            continue
        # `edgespec distill` writes an fp32 head: beside a GPU target it can only run on the CPU.
        fix = (
            "draft_provider='cpu'"
            if model.role == "eagle"
            else "a bundle exported with --precision fp16"
        )
        if model.attention == "edgespec":
            raise ValueError(
                f"the bundle's {model.role} uses edgespec attention, a CPU op; provider {p!r} "
                f"needs {fix}"
            )
        if model.kv_dtype == "float32":
            raise ValueError(
                f"the bundle's {model.role} runs attention in float32 ({model.precision}), which "
                f"ONNX Runtime runs on the CPU only; provider {p!r} needs {fix}"
            )


def _provider(
    name: str, threads: int | None, device_id: int, trt_cache_dir: str | None, chunk: int
) -> Any:
    spec = _native.ProviderSpec()
    spec.name = name
    spec.threads = threads or 0
    spec.prefill_chunk = chunk
    spec.device_id = device_id
    spec.trt_cache_dir = str(Path(trt_cache_dir).expanduser()) if trt_cache_dir else ""
    return spec


def _model_spec(info: Any, hidden_states: bool = False) -> Any:
    spec = _native.ModelSpec()
    for key, value in info.native_spec_kwargs(hidden_states).items():
        setattr(spec, key, value)
    return spec


def _stats(st: Any, drafter: str) -> GenerationStats:
    after_first = max(st.n_generated - 1, 0)
    decode_s = st.t_total_s - st.t_first_token_s
    return GenerationStats(
        prompt_tokens=st.n_prompt,
        prompt_tokens_reused=st.n_prompt_reused,
        new_tokens=st.n_generated,
        steps=st.n_steps,
        drafted=st.n_draft,
        accepted=st.n_accept,
        acceptance_rate=st.n_accept / st.n_draft if st.n_draft else 0.0,
        mean_accepted_tokens=after_first / st.n_steps if st.n_steps else 0.0,
        accept_histogram=tuple(st.accept_hist),
        tokens_per_s=st.n_generated / st.t_total_s if st.t_total_s > 0 else 0.0,
        decode_tokens_per_s=after_first / decode_s if decode_s > 0 else 0.0,
        time_to_first_token_s=st.t_first_token_s,
        prefill_s=st.t_prefill_s,
        draft_s=st.t_draft_s,
        verify_s=st.t_verify_s,
        total_s=st.t_total_s,
        drafter=drafter,
    )
