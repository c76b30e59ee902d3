"""The real SmolLM2-135M-Instruct bundle through the public API."""

import pytest

pytestmark = pytest.mark.slow


def test_factual_chat_answer(smollm2_session):
    r = smollm2_session.generate(
        [{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=40
    )
    assert "Paris" in r.text
    assert r.finish_reason in ("eos", "length")


def test_eos_is_im_end(smollm2_session):
    assert 2 in smollm2_session.bundle.tokenizer.eos_token_ids
    r = smollm2_session.generate([{"role": "user", "content": "Say hi."}], max_new_tokens=64)
    assert (
        r.finish_reason == "eos" and r.tokens[-1] in smollm2_session.bundle.tokenizer.eos_token_ids
    )
    assert "<|im_end|>" not in r.text


def test_chat_prompt_has_one_bos_and_split_digits(smollm2_session):
    ids = smollm2_session.encode([{"role": "user", "content": "Add 12345 and 6"}])
    assert ids[0] == 1 and ids[1] != 1  # starts with one <|im_start|>: no BOS added on top
    tok = smollm2_session.tokenizer
    assert len(tok.encode("12345", add_special_tokens=False).ids) == 5


@pytest.mark.parametrize("category", ["summarization", "rag", "qa", "math_reasoning"])
def test_ngram_greedy_identical_on_spec_bench(smollm2_session, spec_bench_prompts, category):
    prompts = [p for p in spec_bench_prompts if p["category"] == category][:2]
    assert prompts, category
    for p in prompts:
        messages = [{"role": "user", "content": p["turns"][0]}]
        plain = smollm2_session.generate(messages, max_new_tokens=64, drafter="none")
        spec = smollm2_session.generate(messages, max_new_tokens=64, drafter="ngram")
        assert spec.tokens == plain.tokens, p["question_id"]
