"""Greedy losslessness on every supported architecture, through the public Session API.

For llama, mistral, qwen2 and qwen3, a tiny random-weight target (2 layers) and a smaller draft of
the same architecture and tokenizer (1 layer sharing the target's embedding, first layer, final
norm and head, so that drafts are accepted often but not always) are exported to one bundle. On
100 varied prompts (random token strings, repetitive text, prompts longer than the 64-token
prefill chunk, very short ones) every drafter must produce exactly the tokens of plain decoding
(drafter "none"), with default settings and with num_draft_tokens 1 / 3 / 8, adaptive on and off.
Drafter "eagle" runs on a copy of each bundle with an untrained draft head
(edgespec.export.eagle_graph.add_random_eagle: few of its drafts are accepted, so only the
identity is asserted).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from edgespec import Session

NEW_TOKENS = 24
N_PROMPTS = 100
ARCHS = {  # model_type -> (transformers config class name, config overrides)
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": 256}),  # window = capacity: no effect
    "qwen2": ("Qwen2Config", {"tie_word_embeddings": False}),  # q/k/v biases
    "qwen3": ("Qwen3Config", {"head_dim": 32, "tie_word_embeddings": True}),  # q/k norms, tied
}
VARIANTS = [  # (drafter, num_draft_tokens, adaptive) beyond the defaults
    (drafter, k, adaptive)
    for drafter in ("ngram", "model")
    for k in (1, 3, 8)
    for adaptive in (True, False)
]


def arch_config(arch: str, **overrides):
    import transformers
    from conftest import TINY_CAPACITY, TINY_VOCAB, tiny_config

    cls_name, extra = ARCHS[arch]
    kw = dict(
        vocab_size=TINY_VOCAB,
        intermediate_size=128,
        max_position_embeddings=TINY_CAPACITY,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return tiny_config(getattr(transformers, cls_name), **{**kw, **extra, **overrides})


def build_arch_bundle(root: Path, arch: str, tokenizer_json: str) -> Path:
    """Export a tiny target of `arch` plus a 1-layer draft that shares part of its weights."""
    import torch
    import transformers
    from conftest import _export, save_random_model, write_tiny_tokenizer

    seed = sorted(ARCHS).index(arch) + 10
    target = save_random_model(root / "target", arch_config(arch), seed, tokenizer_json)
    with torch.no_grad():  # damp the last layer so that the draft agrees more often
        for name, p in target.named_parameters():
            if name.startswith("model.layers.1.") and name.endswith(
                ("o_proj.weight", "down_proj.weight")
            ):
                p.mul_(0.3)
    target.save_pretrained(str(root / "target"))
    write_tiny_tokenizer(root / "target", tokenizer_json)
    draft = transformers.AutoModelForCausalLM.from_config(arch_config(arch, num_hidden_layers=1))
    with torch.no_grad():
        own = draft.state_dict()
        for name, t in target.state_dict().items():
            if name in own:
                own[name].copy_(t)
    draft.save_pretrained(str(root / "draft"))
    write_tiny_tokenizer(root / "draft", tokenizer_json)
    return _export(root / "target", root / "bundle", draft_dir=root / "draft")


def make_prompts(tokenizer_json: str, n: int = N_PROMPTS) -> list[str]:
    """Random token strings, repetitive text, long prompts (> 64 tokens), short ones."""
    from conftest import tiny_corpus
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    rng = random.Random(1234)
    corpus = tiny_corpus(200, seed=5)
    prompts: list[str] = []
    while len(prompts) < n:
        kind = len(prompts) % 4
        if kind == 0:  # random token ids (specials excluded), decoded
            ids = [rng.randrange(3, tok.get_vocab_size()) for _ in range(rng.randint(2, 40))]
            text = tok.decode(ids)
        elif kind == 1:  # a short pattern repeated
            pattern = " ".join(rng.sample(corpus, 1)[0].split()[: rng.randint(1, 4)])
            text = " ".join([pattern] * rng.randint(3, 12))
        elif kind == 2:  # long: several corpus lines (crosses the 64-token prefill chunk)
            text = " ".join(rng.sample(corpus, rng.randint(6, 14)))
        else:  # short: one to three words, or a single character
            words = rng.choice(corpus).split()
            text = " ".join(words[: rng.randint(1, 3)]) if rng.random() < 0.8 else words[0][0]
        if text.strip():
            prompts.append(text)
    return prompts


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer_json) -> list[str]:
    return make_prompts(tiny_tokenizer_json)


@pytest.fixture(scope="module", params=list(ARCHS))
def arch_session(request, tmp_path_factory, tiny_tokenizer_json):
    """(arch, Session over its bundle with a draft), one per architecture."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("onnx")
    arch = request.param
    bundle = build_arch_bundle(
        tmp_path_factory.mktemp(f"lossless_{arch}"), arch, tiny_tokenizer_json
    )
    with Session(bundle, threads=1, prefill_chunk=64) as s:
        assert s.bundle.target.architecture == arch and s.has_draft
        yield arch, s


@pytest.fixture(scope="module")
def plain(arch_session, prompts) -> dict[str, list[int]]:
    """Greedy plain decoding of every prompt: what each drafter must reproduce."""
    _, s = arch_session
    return {p: s.generate(p, max_new_tokens=NEW_TOKENS, drafter="none").tokens for p in prompts}


def test_prompt_mix(arch_session, prompts):
    _, s = arch_session
    lengths = [len(s.encode(p)) for p in prompts]
    assert len(set(prompts)) >= 95
    assert sum(n > 64 for n in lengths) >= 15 and sum(n <= 3 for n in lengths) >= 10
    assert max(lengths) + NEW_TOKENS <= s.capacity


@pytest.mark.parametrize("drafter", ["ngram", "model", "auto"])
def test_default_drafters_equal_plain(arch_session, prompts, plain, drafter):
    arch, s = arch_session
    accepted = drafted = deep = 0
    for p in prompts:
        r = s.generate(p, max_new_tokens=NEW_TOKENS, drafter=drafter)
        assert r.tokens == plain[p], (arch, drafter, p)
        accepted += r.stats.accepted
        drafted += r.stats.drafted
        deep += sum(r.stats.accept_histogram[3:])
    print(
        f"{arch} {drafter}: {len(prompts)} prompts identical, accepted {accepted}/{drafted}, "
        f"steps accepting >= 3: {deep}"
    )
    assert accepted > 0, f"{arch}: drafter {drafter} never got a token accepted"


@pytest.mark.parametrize(("drafter", "k", "adaptive"), VARIANTS)
def test_draft_lengths_and_adaptive_equal_plain(arch_session, prompts, plain, drafter, k, adaptive):
    arch, s = arch_session
    for p in prompts:
        r = s.generate(
            p, max_new_tokens=NEW_TOKENS, drafter=drafter, num_draft_tokens=k, adaptive=adaptive
        )
        assert r.tokens == plain[p], (arch, drafter, k, adaptive, p)
        assert r.stats.drafted <= k * max(r.stats.steps, 1)


@pytest.fixture(scope="module")
def eagle_session(arch_session, tmp_path_factory):
    """(arch, Session over a copy of the arch bundle with an untrained draft head)."""
    from edgespec.export.eagle_graph import add_random_eagle

    arch, s = arch_session
    bundle = tmp_path_factory.mktemp(f"lossless_eagle_{arch}") / "bundle"
    shutil.copytree(s.bundle.root, bundle)
    add_random_eagle(bundle, draft_vocab=300, seed=sorted(ARCHS).index(arch))
    with Session(bundle, threads=1, prefill_chunk=64) as e:
        assert e.has_eagle
        yield arch, e


@pytest.mark.parametrize(
    ("k", "adaptive"), [(0, True)] + [(k, a) for k in (1, 3, 8) for a in (True, False)]
)
def test_eagle_equals_plain(eagle_session, prompts, plain, k, adaptive):
    arch, s = eagle_session
    accepted = drafted = 0
    for p in prompts:
        r = s.generate(
            p, max_new_tokens=NEW_TOKENS, drafter="eagle", num_draft_tokens=k, adaptive=adaptive
        )
        assert r.tokens == plain[p], (arch, "eagle", k, adaptive, p)
        # k = 0: the drafter's own bound, 16 for a copy (lookup.h kCopyDraft; the head's chain
        # stops at 4): with copy_match 1 these looping answers are mostly copied
        assert r.stats.accepted <= r.stats.drafted <= (k or 16) * max(r.stats.steps, 1)
        accepted += r.stats.accepted
        drafted += r.stats.drafted
    print(f"{arch} eagle k={k} adaptive={adaptive}: accepted {accepted}/{drafted}")


@pytest.mark.parametrize("sibling_min", [0.05, 0.001])
def test_eagle_trees_equal_plain(eagle_session, prompts, plain, sibling_min):
    """Greedy drafter "eagle" with the head's siblings (GenConfig.sibling_min, native only):
    every step verifies a draft tree through the architecture's attention (separate q/k/v for
    qwen3, biases for qwen2), and the output is still plain decoding's, token for token."""
    from edgespec import GenerationConfig

    arch, s = eagle_session
    trees = off_chain = 0
    for p in prompts[::2]:
        nc = s._native_config(GenerationConfig(max_new_tokens=NEW_TOKENS, drafter="eagle"))
        nc.sibling_min = sibling_min
        r = s._engine.generate(s.encode(p), nc)
        assert list(r.tokens) == plain[p], (arch, sibling_min, p)
        trees += r.stats.n_tree
        off_chain += r.stats.n_off_chain
    print(f"{arch} sibling_min={sibling_min}: {trees} tree steps, {off_chain} took a sibling")
    assert trees > 0, f"{arch}: no step verified a tree"
