import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from edgespec.text import IncrementalDetokenizer, StopMatcher, check_unicode, render_chat


def _byte_tok():
    """Byte-level tokenizer with single-byte tokens only: multi-byte characters span tokens."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


_TOK = _byte_tok()


@pytest.fixture(scope="module")
def byte_tokenizer():
    return _TOK


TEXTS = ["hello world", "héllo wörld ✓", "emoji 🚀🎉 end", "日本語のテキスト", "a\n\n b  c\t", "ü"]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_incremental_detok_never_emits_broken_utf8_and_loses_nothing(byte_tokenizer, text, chunk):
    ids = byte_tokenizer.encode(text).ids
    detok = IncrementalDetokenizer(byte_tokenizer)
    pieces = [detok.push(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    pieces.append(detok.flush())
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


@given(st.text(min_size=1, max_size=40), st.integers(1, 5))
@settings(max_examples=200, deadline=None)
def test_incremental_detok_property(text, chunk):
    tok = _TOK
    ids = tok.encode(text).ids
    detok = IncrementalDetokenizer(tok)
    out = "".join(detok.push(ids[i : i + chunk]) for i in range(0, len(ids), chunk))
    out += detok.flush()
    assert out == tok.decode(ids)


def _run_stops(stops, pieces):
    m = StopMatcher(tuple(stops))
    out = [m.feed(p) for p in pieces]
    out.append(m.flush())
    return "".join(out), m.stopped


def test_stop_string_spanning_chunks_is_found_and_not_emitted():
    text, stopped = _run_stops(["END"], ["abc E", "N", "D more"])
    assert stopped and text == "abc "


def test_partial_stop_is_held_then_released():
    m = StopMatcher(("STOP",))
    assert m.feed("go ST") == "go "
    assert m.feed("ART") == "START"
    assert not m.stopped


def test_earliest_of_several_stops_wins():
    text, stopped = _run_stops(["xyz", "b"], ["aaxyzb"])
    assert stopped and text == "aa"


@given(
    st.lists(st.text(alphabet="abcXY", max_size=5), max_size=8), st.sampled_from(["XY", "aXb", "Y"])
)
@settings(max_examples=300, deadline=None)
def test_stop_matcher_equals_find_on_whole_text(pieces, stop):
    whole = "".join(pieces)
    text, stopped = _run_stops([stop], pieces)
    idx = whole.find(stop)
    assert stopped == (idx >= 0)
    assert text == (whole[:idx] if idx >= 0 else whole)


def test_no_stops_passes_everything():
    assert _run_stops([], ["a", "b"]) == ("ab", False)


def test_unpaired_surrogate_is_rejected():
    with pytest.raises(ValueError, match="unpaired surrogate"):
        check_unicode("ok \ud800 bad", "prompt")


CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TRIM = (
    "{{ bos_token }}\n{% for m in messages %}\n  {%- if m.role == 'user' %}\n"
    "[U] {{ m.content | trim }}\n  {% else %}\n[A] {{ m.content | tojson }}\n  {% endif %}\n"
    "{% endfor %}\n{% if add_generation_prompt %}[A]{% endif %}"
)

MESSAGES = [
    {"role": "user", "content": 'Hi <there> & "you" ünï'},
    {"role": "assistant", "content": "Hello!\nHow can I help?"},
    {"role": "user", "content": "  Tell me a joke.  "},
]


@pytest.mark.parametrize("template", [CHATML, TRIM])
@pytest.mark.parametrize("gen", [True, False])
def test_chat_template_matches_transformers(template, gen):
    transformers = pytest.importorskip("transformers")
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=_TOK, bos_token="<s>", eos_token="</s>")
    expected = tok.apply_chat_template(
        MESSAGES, chat_template=template, tokenize=False, add_generation_prompt=gen
    )
    got = render_chat(template, MESSAGES, {"bos_token": "<s>", "eos_token": "</s>"}, gen)
    assert got == expected
    del transformers


def test_template_raise_exception_is_a_value_error():
    with pytest.raises(ValueError, match="roles must alternate"):
        render_chat("{{ raise_exception('roles must alternate') }}", MESSAGES, {}, True)
