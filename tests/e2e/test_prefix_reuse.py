"""Prefix reuse (ModelSpec.reuse_prefix, native/src/prefix.h): a generation keeps the target's KV
(and the draft model's) of the prefix its prompt shares with the tokens the engine computed
before (a chat follow-up resends the whole conversation), prefills only the rest, and returns
exactly what an engine that prefills everything returns: tokens, and with a fixed draft length
the same drafts (a stale draft KV or feature row would change them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_engine import config, cpu, model_spec  # tests/e2e is on sys.path
from test_engine_eagle import eagle_spec, target_spec, with_feature_eagle

import edgespec  # noqa: F401  (loads ORT into the native module)
from edgespec import _native


def spec(bundle: Path, role: str = "target", reuse: bool = True) -> _native.ModelSpec:
    s = model_spec(bundle, role)
    s.reuse_prefix = reuse
    return s


def pair(bundle: Path) -> tuple[_native.Engine, _native.Engine]:
    """(an engine that reuses prefixes, one that prefills every prompt in full)."""
    return tuple(  # type: ignore[return-value]
        _native.Engine(spec(bundle, reuse=r), spec(bundle, "draft", reuse=r), cpu(), cpu())
        for r in (True, False)
    )


@pytest.fixture(scope="module")
def engines(tiny_bundle_with_draft):
    return pair(tiny_bundle_with_draft)


@pytest.fixture(scope="module")
def rng_prompt(tiny_bundle_with_draft):
    vocab = model_spec(tiny_bundle_with_draft).vocab_size
    rng = np.random.default_rng(3)
    return lambda n: rng.integers(0, vocab, n).tolist()


def outcome(r, timed: bool = False) -> tuple:
    """Tokens, finish reason and, unless the draft lengths followed measured times (`timed`:
    greedy and adaptive, so they differ between engines), what was drafted and accepted."""
    st = r.stats
    if timed:
        return list(r.tokens), r.finish_reason
    return list(r.tokens), r.finish_reason, st.n_draft, st.n_accept, list(st.accept_hist)


def timed(drafter: str, extra: dict) -> bool:
    return drafter != "none" and extra.get("adaptive", True) and not extra.get("temperature")


# A fixed draft length, so the drafts themselves are compared too; and the defaults.
FIXED = dict(num_draft_tokens=3, adaptive=False)
CASES = [
    ("none", {}),
    ("ngram", FIXED),
    ("model", FIXED),
    ("model", {}),
    ("model", dict(temperature=0.8, seed=7, **FIXED)),
    ("ngram", dict(temperature=0.8, top_k=20, seed=3)),
]


@pytest.mark.parametrize(("drafter", "extra"), CASES)
def test_a_follow_up_prefills_only_its_new_tokens(engines, rng_prompt, drafter, extra):
    reuse, fresh = engines
    turn1 = rng_prompt(70)  # crosses a 64-token prefill chunk
    r1 = reuse.generate(turn1, config(drafter=drafter, **extra))
    want1 = fresh.generate(turn1, config(drafter=drafter, **extra))
    assert outcome(r1, True) == outcome(want1, True)
    turn2 = turn1 + list(r1.tokens) + rng_prompt(9)
    r2 = reuse.generate(turn2, config(drafter=drafter, **extra))
    # The target KV held every committed token but the newest.
    assert r2.stats.n_prompt_reused == len(turn1) + len(r1.tokens) - 1
    assert r2.stats.n_prompt == len(turn2)
    want = fresh.generate(turn2, config(drafter=drafter, **extra))
    assert want.stats.n_prompt_reused == 0
    assert outcome(r2, timed(drafter, extra)) == outcome(want, timed(drafter, extra))


@pytest.mark.parametrize("drafter", ["none", "ngram", "model"])
def test_the_same_prompt_again_prefills_one_token(engines, rng_prompt, drafter):
    reuse, fresh = engines
    p = rng_prompt(40)
    first = reuse.generate(p, config(drafter=drafter, **FIXED))
    again = reuse.generate(p, config(drafter=drafter, **FIXED))
    assert again.stats.n_prompt_reused == len(p) - 1  # its last token gives the first logits
    want = fresh.generate(p, config(drafter=drafter, **FIXED))
    assert outcome(again) == outcome(first) == outcome(want)


def test_a_prompt_keeps_only_what_it_shares(engines, rng_prompt):
    reuse, fresh = engines
    base = rng_prompt(30)
    reuse.generate(base + rng_prompt(20), config(drafter="model", **FIXED))
    other = base[:17] + [(base[17] + 1) % 50] + rng_prompt(12)  # differs at position 17
    r = reuse.generate(other, config(drafter="model", **FIXED))
    assert r.stats.n_prompt_reused == 17
    assert outcome(r) == outcome(fresh.generate(other, config(drafter="model", **FIXED)))
    unrelated = [(base[0] + 1) % 50, *rng_prompt(25)]
    r = reuse.generate(unrelated, config(drafter="ngram"))
    assert r.stats.n_prompt_reused == 0
    assert outcome(r, True) == outcome(fresh.generate(unrelated, config(drafter="ngram")), True)


@pytest.mark.parametrize("drafter", ["none", "model"])
def test_a_stopped_generation_leaves_what_it_committed(engines, rng_prompt, drafter):
    reuse, fresh = engines
    p = rng_prompt(50)
    r1 = reuse.generate(p, config(drafter=drafter), lambda toks: True)  # stop after a chunk
    assert r1.finish_reason == "stop"
    follow = p + list(r1.tokens) + rng_prompt(5)
    r2 = reuse.generate(follow, config(drafter=drafter, **FIXED))
    assert r2.stats.n_prompt_reused == len(p) + len(r1.tokens) - 1
    assert outcome(r2) == outcome(fresh.generate(follow, config(drafter=drafter, **FIXED)))


def test_a_failed_generation_keeps_only_what_is_sure(engines, rng_prompt):
    reuse, fresh = engines
    p = rng_prompt(45)
    reuse.generate(p, config(drafter="none"))

    class Boom(Exception):
        pass

    def explode(tokens):
        raise Boom

    follow = p + rng_prompt(30)
    with pytest.raises(Boom):
        reuse.generate(follow, config(drafter="model"), explode)
    r = reuse.generate(follow, config(drafter="model", **FIXED))
    assert r.stats.n_prompt_reused >= len(p) - 1
    assert outcome(r) == outcome(fresh.generate(follow, config(drafter="model", **FIXED)))


def test_without_the_flag_every_prompt_is_prefilled(engines, rng_prompt):
    _, fresh = engines
    p = rng_prompt(20)
    fresh.generate(p, config())
    assert fresh.generate(p, config()).stats.n_prompt_reused == 0


def test_the_manifest_sets_the_flag_for_edgespec_attention_only(
    tiny_bundle_with_draft, tiny_gqa_bundle_with_draft
):
    from edgespec.bundle import load_bundle

    ours, ort = load_bundle(tiny_bundle_with_draft), load_bundle(tiny_gqa_bundle_with_draft)
    assert ours.target.native_spec_kwargs()["reuse_prefix"] is True
    assert ours.draft.native_spec_kwargs()["reuse_prefix"] is True
    # ORT's attention sums a row differently by call width: a kept prefix would not be exact
    assert ort.target.native_spec_kwargs()["reuse_prefix"] is False


# ---------------------------------------------------------------- the eagle head's features


@pytest.fixture(scope="module")
def eagle_engines(tiny_bundle, tmp_path_factory):
    b = with_feature_eagle(tiny_bundle, tmp_path_factory.mktemp("reuse_eagle") / "tiny")
    out = []
    for r in (True, False):
        t = target_spec(b)
        t.reuse_prefix = r
        out.append(_native.Engine(t, None, cpu(), cpu(), eagle=eagle_spec(b)))
    return out


# copy_match 0: the head drafts every step, from the features of every earlier position
HEAD = dict(drafter="eagle", copy_match=0, **FIXED)


def test_eagle_keeps_the_features_of_every_kept_position(eagle_engines, rng_prompt):
    """The head's feature store follows every target forward, whichever drafter is active, so
    a follow-up keeps all the target KV it shares, turns served by other drafters included."""
    reuse, fresh = eagle_engines
    reuse.generate(rng_prompt(60), config(**HEAD))  # another conversation first
    turn1 = rng_prompt(40)
    r1 = reuse.generate(turn1, config(drafter="none"))
    turn2 = turn1 + list(r1.tokens) + rng_prompt(6)
    r2 = reuse.generate(turn2, config(**HEAD))
    assert r2.stats.n_prompt_reused == len(turn1) + len(r1.tokens) - 1
    assert outcome(r2) == outcome(fresh.generate(turn2, config(**HEAD)))
    turn3 = turn2 + list(r2.tokens) + rng_prompt(6)
    r3 = reuse.generate(turn3, config(drafter="ngram", **FIXED))  # its verifies reject drafts
    turn4 = turn3 + list(r3.tokens) + rng_prompt(6)
    r4 = reuse.generate(turn4, config(**HEAD))
    assert r4.stats.n_prompt_reused == len(turn3) + len(r3.tokens) - 1
    assert outcome(r4) == outcome(fresh.generate(turn4, config(**HEAD)))
    again = reuse.generate(turn4, config(**HEAD))  # the same prompt: one token prefilled
    assert again.stats.n_prompt_reused == len(turn4) - 1
    assert outcome(again) == outcome(r4)


# ---------------------------------------------------------------- forgetting, and the Session


def test_forget_drops_what_a_generation_left(engines, rng_prompt):
    reuse, _ = engines
    p = rng_prompt(40)
    want = outcome(reuse.generate(p, config(drafter="model", **FIXED)))
    reuse.forget(25)
    r = reuse.generate(p, config(drafter="model", **FIXED))
    assert r.stats.n_prompt_reused == 25 and outcome(r) == want
    reuse.forget()
    r = reuse.generate(p, config(drafter="model", **FIXED))
    assert r.stats.n_prompt_reused == 0 and outcome(r) == want
    with pytest.raises(ValueError, match="keep must be >= 0, got -1"):
        reuse.forget(-1)


def test_forget_refuses_while_generating(engines, rng_prompt):
    reuse, _ = engines
    seen = []

    def on_chunk(tokens):
        try:
            reuse.forget()
        except RuntimeError as e:
            seen.append(str(e))
        return True

    reuse.generate(rng_prompt(10), config(), on_chunk)
    assert seen and "while a generation runs" in seen[0]


def test_session_follow_up_reuses_the_conversation(tiny_bundle_with_draft):
    from edgespec import Session

    chat = [{"role": "user", "content": "the cat sat on the mat and then"}]
    with Session(tiny_bundle_with_draft, threads=1) as s, Session(tiny_bundle_with_draft) as cold:
        r1 = s.generate(chat, max_new_tokens=20, drafter="model")
        chat2 = [
            *chat,
            {"role": "assistant", "content": r1.text},
            {"role": "user", "content": "go"},
        ]
        r2 = s.generate(chat2, max_new_tokens=20, drafter="model")
        assert r2.stats.prompt_tokens_reused > r1.stats.prompt_tokens
        cold.forget()  # nothing to forget: a no-op
        want = cold.generate(chat2, max_new_tokens=20, drafter="model")
        assert want.stats.prompt_tokens_reused == 0
        assert (r2.text, r2.tokens) == (want.text, want.tokens)
        s.forget()
        assert s.generate(chat2, max_new_tokens=20).stats.prompt_tokens_reused == 0
        with pytest.raises(ValueError, match="keep must be >= 0"):
            s.forget(-3)
    with pytest.raises(RuntimeError, match="closed"):
        s.forget()


def test_cli_chat_keeps_the_conversation(tiny_bundle, monkeypatch, capsys):
    from edgespec.cli import main

    lines = iter(["the cat sat", "and then"])

    def fake_input(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", str(tiny_bundle), "--stats", "--max-new-tokens", "6"]) == 0
    stats = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[")]
    kept = [int(x.split(" kept)")[0].rsplit("(", 1)[1]) for x in stats]
    prompt = [int(x.split("prompt ")[1].split(" ")[0]) for x in stats]
    assert len(stats) == 2 and kept[0] == 0
    assert prompt[0] <= kept[1] < prompt[1]  # the second turn keeps the first turn's KV


def test_bench_followup_tool(tiny_bundle_with_draft, tmp_path, monkeypatch, capsys):
    """tools/bench_followup.py on two two-turn questions: a line per drafter, the kept turn
    answering as the cold one does."""
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[2] / "tools" / "bench_followup.py"
    spec_ = importlib.util.spec_from_file_location("bench_followup", path)
    tool = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(tool)
    prompts = tmp_path / "q.jsonl"
    rows = [
        {"question_id": 1, "category": "writing", "turns": ["the cat sat", "and then?"]},
        {"question_id": 2, "category": "qa", "turns": ["one turn only"]},
        {"question_id": 3, "category": "roleplay", "turns": ["a dog ran", "where to?"]},
    ]
    prompts.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    monkeypatch.setenv("EDGESPEC_SPEC_BENCH", str(prompts))
    argv = [str(tiny_bundle_with_draft), "--max-new-tokens", "8", "--drafters", "none,model"]
    assert tool.main([*argv, "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [x.split(":")[0] for x in out] == ["none", "model"]
    for line in out:
        assert "2 follow-ups" in line and "identical 2/2" in line
        assert int(line.split("prompt tokens reused ")[1].split(";")[0]) > 0
