"""The Python API end to end on a tiny random-weight bundle."""

import threading

import pytest

import edgespec
from edgespec import Session

PROMPTS = [
    "the quick brown fox jumps over the lazy dog",
    "one two three one two three one two three",
    "hello world, hello world, hello world",
    "a b c d e f g",
    "zebra",
    "abc abc abc abc abc abc abc abc",
]


@pytest.fixture(scope="module")
def session(tiny_bundle):
    with Session(tiny_bundle, threads=1) as s:
        yield s


@pytest.fixture(scope="module")
def reference(session):
    """Greedy plain-decoding outputs: what every other path must reproduce."""
    return {p: session.generate(p, max_new_tokens=24, drafter="none") for p in PROMPTS}


@pytest.mark.parametrize("drafter", ["ngram", "auto"])
def test_greedy_speculative_equals_plain(session, reference, drafter):
    for p in PROMPTS:
        r = session.generate(p, max_new_tokens=24, drafter=drafter)
        assert r.tokens == reference[p].tokens, p
        assert r.text == reference[p].text


def test_model_drafter_equals_plain(tiny_bundle_with_draft):
    with Session(tiny_bundle_with_draft, threads=1) as s:
        assert s.has_draft and s.resolve_drafter("auto") == "model"
        for p in PROMPTS:
            plain = s.generate(p, max_new_tokens=20, drafter="none")
            spec = s.generate(p, max_new_tokens=20, drafter="model")
            assert spec.tokens == plain.tokens, p
            assert spec.stats.drafted > 0


def test_result_fields_and_stats(session, reference):
    r = reference[PROMPTS[0]]
    assert r.finish_reason in ("length", "eos")
    assert 1 <= len(r.tokens) <= 24
    st = r.stats
    assert st.new_tokens == len(r.tokens) and st.prompt_tokens > 0
    assert st.drafter == "none" and st.drafted == 0
    assert st.tokens_per_s > 0 and st.total_s >= st.time_to_first_token_s > 0


def test_stream_equals_non_stream(session, reference):
    for p in PROMPTS[:3]:
        stream = session.generate(p, max_new_tokens=24, drafter="ngram", stream=True)
        pieces = list(stream)
        assert "".join(pieces) == reference[p].text
        assert stream.result.tokens == reference[p].tokens


def test_stop_string_spanning_tokens(session, reference):
    text = next(r.text for r in reference.values() if len(r.text) > 12)
    stop = text[5:9]
    cut = text.find(stop)
    r = session.generate(
        next(p for p in PROMPTS if reference[p].text == text), max_new_tokens=24, stop=[stop]
    )
    assert r.finish_reason == "stop"
    assert r.text == text[:cut]
    streamed = "".join(
        session.generate(
            next(p for p in PROMPTS if reference[p].text == text),
            max_new_tokens=24,
            stop=stop,
            stream=True,
        )
    )
    assert streamed == text[:cut]


def test_chat_template_matches_transformers(session, tiny_bundle):
    transformers = pytest.importorskip("transformers")
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(session.bundle.tokenizer.path), **session.bundle.tokenizer.special_tokens
    )
    messages = [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "again"},
    ]
    expected = tok.apply_chat_template(
        messages,
        chat_template=session.bundle.tokenizer.chat_template,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert session.apply_chat_template(messages) == expected
    r = session.generate(messages, max_new_tokens=5)
    assert r.prompt_tokens == tok(expected, add_special_tokens=False)["input_ids"]


BAD_CALLS = [
    (("",), {}, ValueError, "empty"),
    (([],), {}, ValueError, "non-empty list"),
    (([{"role": "user"}],), {}, ValueError, "content"),
    ((b"bytes",), {}, TypeError, "str or a list"),
    (("ok \ud800",), {}, ValueError, "surrogate"),
    (("hi",), {"max_new_tokens": 0}, ValueError, "max_new_tokens"),
    (("hi",), {"max_new_tokens": 10**9}, ValueError, "max_new_tokens"),
    (("hi",), {"temperature": -1.0}, ValueError, "temperature"),
    (("hi",), {"top_p": 0.0}, ValueError, "top_p"),
    (("hi",), {"top_p": 1.01}, ValueError, "top_p"),
    (("hi",), {"top_k": -3}, ValueError, "top_k"),
    (("hi",), {"drafter": "magic"}, ValueError, "unknown drafter"),
    (("hi",), {"drafter": "model"}, ValueError, "draft model"),
]


@pytest.mark.parametrize(("args", "kwargs", "exc", "needle"), BAD_CALLS)
def test_bad_input_is_a_clear_error_and_session_survives(
    session, reference, args, kwargs, exc, needle
):
    with pytest.raises(exc, match=needle):
        session.generate(*args, **kwargs)
    again = session.generate(PROMPTS[0], max_new_tokens=24, drafter="none")
    assert again.tokens == reference[PROMPTS[0]].tokens


def test_prompt_longer_than_capacity(session):
    long_prompt = "word " * (session.capacity + 10)
    with pytest.raises(ValueError, match=f"capacity is {session.capacity}"):
        session.generate(long_prompt)


def test_generation_reaching_capacity_ends_with_length(session):
    prompt = "one two three " * 8
    n_prompt = len(session.encode(prompt))
    for drafter in ("none", "ngram"):
        r = session.generate(prompt, max_new_tokens=100000, drafter=drafter)
        if r.finish_reason == "eos":
            pytest.skip("tiny model emitted EOS before capacity")
        assert r.finish_reason == "length"
        assert n_prompt + len(r.tokens) <= session.capacity


def test_cancel_from_another_thread(session, reference):
    calls = []

    def on_text(delta):
        calls.append(delta)
        if len(calls) == 1:  # cancel from another thread while this generation runs
            t = threading.Thread(target=session.cancel)
            t.start()
            t.join()

    r = session.generate(
        "one two three " * 4, max_new_tokens=100000, drafter="none", callback=on_text
    )
    assert r.finish_reason == "cancelled"
    assert len(r.tokens) < session.capacity // 2
    again = session.generate(PROMPTS[0], max_new_tokens=24, drafter="none")
    assert again.tokens == reference[PROMPTS[0]].tokens


def test_exception_in_callback_propagates_and_leaks_nothing(session, reference):
    class Boom(Exception):
        pass

    def on_text(delta):
        raise Boom("from user code")

    with pytest.raises(Boom, match="from user code"):
        session.generate(PROMPTS[2], max_new_tokens=24, drafter="ngram", callback=on_text)
    again = session.generate(PROMPTS[2], max_new_tokens=24, drafter="none")
    assert again.tokens == reference[PROMPTS[2]].tokens


def test_stream_stopped_early_leaks_nothing(session, reference):
    stream = session.generate(PROMPTS[1], max_new_tokens=24, stream=True)
    for _ in stream:
        break
    stream.close()
    again = session.generate(PROMPTS[1], max_new_tokens=24, drafter="none")
    assert again.tokens == reference[PROMPTS[1]].tokens


def test_two_threads_share_a_session(session, reference):
    results: dict[int, list] = {}

    def work(i):
        p = PROMPTS[i % len(PROMPTS)]
        results[i] = (p, session.generate(p, max_new_tokens=24, drafter="ngram").tokens)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 6
    for p, tokens in results.values():
        assert tokens == reference[p].tokens


def test_sampling_is_seeded(session):
    a = session.generate(PROMPTS[0], max_new_tokens=16, temperature=0.9, top_p=0.9, seed=7)
    b = session.generate(PROMPTS[0], max_new_tokens=16, temperature=0.9, top_p=0.9, seed=7)
    assert a.tokens == b.tokens


def test_providers(tiny_fp16_bundle_with_draft):
    with pytest.raises(ValueError, match="unknown provider"):
        Session(tiny_fp16_bundle_with_draft, provider="tpu")
    if "CUDAExecutionProvider" in edgespec.available_providers():
        pytest.skip("this ONNX Runtime has CUDA; the error path is for CPU-only builds")
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        Session(tiny_fp16_bundle_with_draft, provider="cuda")


@pytest.mark.parametrize(
    ("chunk", "exc"), [(0, ValueError), (True, ValueError), (5000, ValueError)]
)
def test_prefill_chunk_is_checked(tiny_bundle, chunk, exc):
    with pytest.raises(exc, match="prefill_chunk"):
        Session(tiny_bundle, prefill_chunk=chunk)


def test_prefill_chunk_gives_the_same_text(tiny_bundle, reference):
    prompt = "one two three " * 40  # > 64 tokens: several 16-token chunks
    with (
        Session(tiny_bundle, threads=1) as a,
        Session(tiny_bundle, threads=1, prefill_chunk=16) as b,
    ):
        want = a.generate(prompt, max_new_tokens=12).text
        assert b.generate(prompt, max_new_tokens=12).text == want


def test_closed_session_refuses(tiny_bundle):
    s = Session(tiny_bundle, threads=1)
    s.close()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.generate("hello", max_new_tokens=2)
