"""Drafter "eagle" (the feature-level draft head, docs/bundle-format.md) through the native engine.

The tiny bundle gets an untrained head (edgespec.export.eagle_graph.add_random_eagle: a reduced
draft vocabulary of 300 of the 512 target ids; fc starts as "take the token's embedding", so the
head leans towards what the target's final norm and head make of the last token). Greedy output
must be token-identical to plain decoding for every draft length, adaptive or not, on prompts that
cross the 64-token prefill chunk; sampling is seeded and, on a peaked near-bigram target whose
features the head predicts well, follows the target's distribution (two-sample chi-square per
position, as in test_sampling_dist.py). Construction errors name the bad value.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgespec  # noqa: F401  (loads ORT into the native module)
from edgespec import _native

DRAFT_VOCAB = 300


def target_spec(bundle: Path, hidden_states: bool = True) -> _native.ModelSpec:
    """The target's ModelSpec; with `hidden_states`, binding its feature output."""
    from test_engine import model_spec

    spec = model_spec(bundle)
    if hidden_states:
        m = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
        spec.hidden_size = m["hidden_size"]
        spec.hidden_states = m["outputs"]["hidden_states"]
    return spec


def eagle_spec(bundle: Path) -> _native.ModelSpec:
    """The head's ModelSpec straight from the manifest's models.eagle and token_map.bin."""
    from test_engine import model_spec

    m = json.loads((bundle / "edgespec.json").read_text())["models"]["eagle"]
    spec = model_spec(bundle, "eagle")
    spec.hidden_size = m["hidden_size"]
    spec.features = m["inputs"]["features"]
    spec.hidden_states = m["outputs"]["hidden_states"]
    spec.token_map = np.fromfile(bundle / m["token_map"], dtype="<i4").tolist()
    return spec


def cpu() -> _native.ProviderSpec:
    return _native.ProviderSpec(name="cpu", threads=1, prefill_chunk=64)  # prompts cross chunks


def config(**kw) -> _native.GenConfig:
    kw.setdefault("max_new_tokens", 40)
    return _native.GenConfig(**kw)


def with_random_eagle(src: Path, dst: Path, seed: int = 0) -> Path:
    from edgespec.export.eagle_graph import add_random_eagle

    shutil.copytree(src, dst)
    add_random_eagle(dst, draft_vocab=DRAFT_VOCAB, seed=seed)
    return dst


def with_feature_eagle(src: Path, dst: Path, seed: int = 1) -> Path:
    """A copy of `src` with an untrained head whose drafts depend on the features and on its KV:
    fc = [I, 0.2 I] (+ noise), attention weights of scale 0.1, the target's final norm and head
    rows; the token map leaves every 7th id out. On a near-bigram target it still drafts well
    (f_{p+1} ~ norm(embed(t_{p+1}))), and a feature off by one position, or keeping the head KV
    computed from its own predicted features, changes its drafts (checked by mutating
    simulate_greedy_eagle: 32 and 10 of the 40 peaked-target runs below differ)."""
    from edgespec.export import eagle_graph as eg

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "edgespec.json").read_text())
    target = manifest["models"]["target"]
    t = eg._target_tensors(dst, target)
    vocab, h = t["embed"].shape
    hd, nq, nkv = target["head_dim"], target["num_heads"], target["num_kv_heads"]
    cfg = eg.head_config(eg.target_arch(target, 2 * h, 10000.0, 1e-5), DRAFT_VOCAB)
    rng = np.random.default_rng(seed)
    token_map = np.array([i for i in range(vocab) if i % 7 != 3][:DRAFT_VOCAB], np.int32)
    rand = lambda scale, *shape: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    eye = np.eye(h, dtype=np.float32)
    layer = eg.LAYER
    weights = {
        "model.embed_tokens.weight": t["embed"],
        "fc.weight": np.concatenate([eye, 0.2 * eye], 1) + rand(0.02, h, 2 * h),
        f"{layer}.input_layernorm.weight": np.ones(h, np.float32),
        f"{layer}.self_attn.q_proj.weight": rand(0.1, nq * hd, h),
        f"{layer}.self_attn.k_proj.weight": rand(0.1, nkv * hd, h),
        f"{layer}.self_attn.v_proj.weight": rand(0.1, nkv * hd, h),
        f"{layer}.self_attn.o_proj.weight": rand(0.1, h, nq * hd),
        f"{layer}.post_attention_layernorm.weight": np.ones(h, np.float32),
        f"{layer}.mlp.gate_proj.weight": rand(0.02, 2 * h, h),
        f"{layer}.mlp.up_proj.weight": rand(0.02, 2 * h, h),
        f"{layer}.mlp.down_proj.weight": rand(0.02, h, 2 * h),
        "model.norm.weight": t["norm"],
        "lm_head.weight": t["head"][token_map],
    }
    eg.write_eagle(dst, cfg, weights, token_map, {"kind": "test", "seed": seed}, force=True)
    return dst


@pytest.fixture(scope="module")
def eagle_bundle(tiny_bundle, tmp_path_factory) -> Path:
    return with_random_eagle(tiny_bundle, tmp_path_factory.mktemp("eagle") / "tiny")


@pytest.fixture(scope="module")
def engine(eagle_bundle) -> _native.Engine:
    return _native.Engine(
        target_spec(eagle_bundle), None, cpu(), cpu(), eagle=eagle_spec(eagle_bundle)
    )


@pytest.fixture(scope="module")
def prompts(eagle_bundle) -> list[list[int]]:
    from test_engine import make_prompts

    return make_prompts(target_spec(eagle_bundle).vocab_size)


@pytest.fixture(scope="module")
def reference(eagle_bundle, prompts) -> list[list[int]]:
    """Greedy plain decoding on an engine that binds no features: what "eagle" must reproduce."""
    plain = _native.Engine(target_spec(eagle_bundle, hidden_states=False), None, cpu())
    out = []
    for p in prompts:
        r = plain.generate(p, config(drafter="none"))
        assert r.finish_reason == "length" and len(r.tokens) == 40
        out.append(list(r.tokens))
    return out


def check_stats(r, prompt, k_max: int | None = None) -> None:
    """k_max: the draft length; a head step may add as many siblings as its chain has drafts."""
    st = r.stats
    assert st.n_generated == len(r.tokens) and st.n_prompt == len(prompt)
    assert sum(st.accept_hist) == st.n_steps
    assert sum(j * c for j, c in enumerate(st.accept_hist)) == st.n_accept <= st.n_draft
    assert st.n_steps + st.n_accept == st.n_generated - 1  # one prefill token + 1 per step
    if k_max is not None:
        assert st.n_draft <= (k_max + min(k_max, HEAD_DEPTH)) * st.n_steps
        assert len(st.accept_hist) == k_max + 1  # a path is never longer than its chain


# ---------------------------------------------------------------- losslessness


def test_engine_has_the_head(engine, eagle_bundle):
    assert engine.has_eagle and not engine.has_draft
    assert engine.capacity == target_spec(eagle_bundle).capacity
    assert len(eagle_spec(eagle_bundle).token_map) == DRAFT_VOCAB


def test_features_output_does_not_change_plain_decoding(engine, prompts, reference):
    for p, want in zip(prompts, reference, strict=True):
        assert list(engine.generate(p, config(drafter="none")).tokens) == want


_ACCEPTED: dict[str, int] = {}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        dict(num_draft_tokens=1),
        dict(num_draft_tokens=1, adaptive=False),
        dict(num_draft_tokens=3),
        dict(num_draft_tokens=3, adaptive=False),
        dict(num_draft_tokens=8),
        dict(num_draft_tokens=8, adaptive=False),
        dict(num_draft_tokens=3, adaptive=False, sibling_min=0.0),
        dict(num_draft_tokens=3, adaptive=False, sibling_min=0.01),
    ],
    ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()) or "default",
)
def test_greedy_eagle_equals_plain(engine, prompts, reference, extra):
    accepted = drafted = 0
    for p, want in zip(prompts, reference, strict=True):
        r = engine.generate(p, config(drafter="eagle", **extra))
        assert list(r.tokens) == want, p
        check_stats(r, p, extra.get("num_draft_tokens", COPY_DEFAULT_K))
        accepted += r.stats.n_accept
        drafted += r.stats.n_draft
    print(f"eagle {extra}: accepted {accepted}/{drafted}")
    if not extra.get("adaptive", True):
        assert drafted > 0
    _ACCEPTED[str(extra)] = accepted


def test_the_head_gets_drafts_accepted_on_a_peaked_target(peaked, prompts):
    """On the near-bigram target, what the untrained head computes is close to the target's own
    next feature: a good share of the drafts is accepted, at depth > 1 too."""
    _, eng, _ = peaked
    drafted = accepted = deep = 0
    for p in prompts:
        r = eng.generate(p, config(drafter="eagle", num_draft_tokens=3, adaptive=False))
        check_stats(r, p, 3)
        drafted += r.stats.n_draft
        accepted += r.stats.n_accept
        deep += sum(r.stats.accept_hist[2:])
    print(f"peaked target, k=3: accepted {accepted}/{drafted}, steps accepting >= 2: {deep}")
    assert accepted >= drafted // 20 and deep > 0


def lookup_copy(seq: list[int], k: int, n: int = 3, n_max: int = 8) -> list[int]:
    """The head's copy path (GenConfig.copy_match = n, ngram_max = n_max): the continuation of
    the earlier occurrence of the sequence's suffix with the longest match (counted up to n_max
    tokens, the most recent on ties), extended by overlapping copy; [] when the longest match
    is shorter than n (or n == 0)."""
    best_len, best_end = 0, -1
    for e in range(len(seq) - 2, -1, -1):
        m = 0
        while m < min(n_max, e + 1) and seq[e - m] == seq[len(seq) - 1 - m]:
            m += 1
        if m > best_len:
            best_len, best_end = m, e
    if n == 0 or best_len < n:
        return []
    s = list(seq)
    for i in range(k):
        s.append(s[best_end + 1 + i])
    return s[len(seq) :]


HEAD_DEPTH = 4  # drafter_eagle.cpp kHeadDepth: the head's longest chain (a copy may be longer)
COPY_DEFAULT_K = 16  # lookup.h kCopyDraft: a copy's bound without num_draft_tokens


def top_two(row: np.ndarray) -> tuple[float, int, float]:
    """drafter_eagle.cpp top_two: (p1 as float32, second id, p2) of softmax(row), the sum of
    exp(row - top) taken in float64 in increasing id order."""
    first = int(np.argmax(row))
    top = row[first]
    e = np.exp((row - top).astype(np.float64))  # row - top in float32, as the C++ code
    total = np.cumsum(e)[-1]  # sequential, as the C++ loop
    others = row.copy()
    others[first] = -np.inf
    second = int(np.argmax(others)) if len(row) > 1 else first
    p2 = float(np.exp(np.float64(row[second] - top)) / total) if len(row) > 1 else 0.0
    return float(np.float32(1.0 / total)), second, p2


def simulate_greedy_eagle(
    bundle: Path,
    prompt: list[int],
    k: int,
    max_new: int = 40,
    copy_n: int = 3,
    sibling_min: float = 0.0,
):
    """(tokens, accept_hist, steps whose path took a sibling) of greedy drafter "eagle" with a
    fixed k and draft_confidence 0, re-implemented in Python over the exported graphs
    (edgespec.export.verify) with the engine's call pattern: 64-token chunks, head catch-up over
    m..L-2 with TRUE features, drafts fed with the head's own features, only the accepted rows of
    a verify kept as true features. `sibling_min` > 0 (targets with tree_parents): the head's
    second choice at depth i joins the verify beside d_i when prod_{j<i} p1_j * p2_i >= it."""
    from edgespec.export.verify import SharedKVDecoder

    models = json.loads((bundle / "edgespec.json").read_text())["models"]
    target = SharedKVDecoder(bundle / models["target"]["path"], models["target"])
    head = SharedKVDecoder(bundle / models["eagle"]["path"], models["eagle"])
    token_map = np.fromfile(bundle / models["eagle"]["token_map"], dtype="<i4")
    cap, p_len = models["target"]["capacity"], len(prompt)
    feats = np.zeros((cap, models["target"]["hidden_size"]), np.float32)  # [capacity, H]
    tree = sibling_min > 0 and "tree_parents" in models["target"]["inputs"]

    def run(model, ids, pos, f=None):  # chunks of 64; last (logits row, hidden row)
        for s in range(0, len(ids), 64):
            chunk = None if f is None else f[s : s + 64]
            logits, hid = model.forward(ids[s : s + 64], pos + s, hidden=True, features=chunk)
            if f is None:
                feats[pos + s : pos + s + len(hid)] = hid
        return logits, hid

    def head_drafts(n_len: int, depth: int) -> tuple[list[int], list[int]]:
        """(drafts, parents): the head's chain, then the siblings that clear sibling_min."""
        nonlocal m
        logits, hid = run(head, seq[m + 1 : n_len], m, feats[m : n_len - 1])
        m = n_len - 1
        chain: list[int] = []
        siblings: list[tuple[int, int]] = []  # (row, token)
        reach = 1.0
        for i in range(depth):
            chain.append(int(token_map[np.argmax(logits[-1])]))
            p1, second, p2 = top_two(logits[-1])
            if reach * p2 >= sibling_min:
                siblings.append((i, int(token_map[second])))
            reach *= p1
            if i + 1 < depth:
                logits, hid = head.forward([chain[-1]], m + i, True, hid[-1:])
        parents = list(range(len(chain)))
        if tree:
            room = min(32, cap - n_len - 1) - len(chain)
            parents += [row for row, _ in siblings[:room]]
            chain += [t for _, t in siblings[:room]]
        return chain, parents

    seq = list(prompt)
    logits, _ = run(target, seq, 0)
    seq.append(int(np.argmax(logits[-1])))
    m = 0  # the head runs first when it first drafts: its catch-up covers the prompt
    hist = [0] * (k + 1)
    off_chain = 0
    while len(seq) - p_len < max_new:
        n_len = len(seq)
        kk = min(k, cap - n_len - 1, max_new - (n_len - p_len) - 1)
        drafts, parents = [], []
        copy = lookup_copy(seq, kk, copy_n) if kk > 0 else []
        if copy:  # the copy path: the head is not run, it catches up later
            drafts, parents = copy, list(range(len(copy)))
        elif kk > 0:
            drafts, parents = head_drafts(n_len, min(kk, HEAD_DEPTH))
        is_tree = parents != list(range(len(drafts)))
        logits, hid = target.forward(
            [seq[-1], *drafts], n_len - 1, hidden=True, parents=[-1, *parents] if tree else None
        )
        path, row = [], 0  # walk the tree: the first child holding the target's argmax
        while True:
            best = int(np.argmax(logits[row]))
            child = [i for i in range(len(drafts)) if (parents[i], drafts[i]) == (row, best)]
            if not child:
                break
            path.append(child[0])
            row = child[0] + 1
        n = len(path)
        off_chain += is_tree and path != list(range(n))
        kept = [0] + [i + 1 for i in path]
        if is_tree:
            target.keep_rows(n_len - 1, kept)
        feats[n_len - 1 : n_len + n] = hid[kept]  # the accepted rows only
        seq += [drafts[i] for i in path] + [best]
        hist[n] += 1
    return seq[p_len:], hist, off_chain


# the copy path from 1 token (the default), from 3, and off, with the head's siblings (a tree)
# and without
@pytest.mark.parametrize(
    ("copy_n", "sibling_min"), [(1, 0.0), (3, 0.0), (0, 0.0), (3, 0.05), (0, 0.05)]
)
@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("which", ["tiny", "peaked"])
def test_engine_matches_a_python_reference_head(
    engine, eagle_bundle, peaked, prompts, which, k, copy_n, sibling_min
):
    """Same tokens AND the same accept histogram as the Python re-implementation: the engine
    feeds the head the right features at the right positions (on the peaked target, steps
    accept several drafts, so the head's own features are exercised too), with and without the
    head's second choices as siblings (a tree verify)."""
    pytest.importorskip("onnxruntime")
    bundle, eng = (eagle_bundle, engine) if which == "tiny" else peaked[:2]
    deep = off_chain = 0
    for i in range(0, len(prompts), 1 if which == "peaked" else 3):
        want, hist, off = simulate_greedy_eagle(bundle, prompts[i], k, 40, copy_n, sibling_min)
        cfg = config(
            drafter="eagle",
            num_draft_tokens=k,
            adaptive=False,
            copy_match=copy_n,
            draft_confidence=0,
            sibling_min=sibling_min,
        )
        r = eng.generate(prompts[i], cfg)
        assert list(r.tokens) == want and list(r.stats.accept_hist) == hist, (i, hist)
        if off:  # a sibling's KV rows were moved into place: still plain decoding's tokens
            assert want == list(eng.generate(prompts[i], config(drafter="none")).tokens), i
        deep += sum(hist[2:])
        off_chain += off
    print(f"{which} k={k} copy={copy_n} sibling_min={sibling_min}: {off_chain} took a sibling")
    if which == "peaked" and k > 1:
        assert deep > 0, "no step accepted two drafts: the predicted-feature path is untested"
    if which == "peaked" and sibling_min and k > 1:
        assert off_chain > 0, "no accepted path took a sibling: the tree verify is untested"


def test_drafters_interleaved_on_one_engine(engine, prompts, reference):
    """Each generation starts from a clean state whichever drafter ran before."""
    for i in (0, 9, 3, 15, 8):
        for drafter in ("eagle", "ngram", "none", "eagle"):
            r = engine.generate(prompts[i], config(drafter=drafter))
            assert list(r.tokens) == reference[i], (i, drafter)


def test_top_k_one_sampling_equals_greedy(engine, prompts, reference):
    for p, want in list(zip(prompts, reference, strict=True))[::3]:
        r = engine.generate(p, config(drafter="eagle", temperature=0.8, top_k=1, seed=3))
        assert list(r.tokens) == want, p


# ---------------------------------------------------------------- stop conditions


@pytest.mark.parametrize("max_new", [1, 2, 5, 17])
def test_max_new_tokens(engine, prompts, reference, max_new):
    chunks: list[list[int]] = []
    r = engine.generate(
        prompts[-3], config(drafter="eagle", max_new_tokens=max_new), lambda c: chunks.append(c)
    )
    assert r.finish_reason == "length" and list(r.tokens) == reference[-3][:max_new]
    assert sum(chunks, []) == list(r.tokens)


def test_capacity_reached_finishes_length(engine, eagle_bundle):
    cap = engine.capacity
    rng = np.random.default_rng(9)
    base = rng.integers(0, target_spec(eagle_bundle).vocab_size, 4).tolist()
    prompt = (base * cap)[: cap - 12]
    plain = engine.generate(prompt, config(drafter="none", max_new_tokens=100))
    assert plain.finish_reason == "length" and len(plain.tokens) == 12
    for k in (1, 8):
        r = engine.generate(
            prompt, config(drafter="eagle", max_new_tokens=100, num_draft_tokens=k, adaptive=False)
        )
        assert r.finish_reason == "length" and list(r.tokens) == list(plain.tokens)
    last = engine.generate(prompt[:1] * (cap - 1), config(drafter="eagle", max_new_tokens=5))
    assert len(last.tokens) == 1 and last.finish_reason == "length"


def test_eos_and_callback_exception(engine, prompts, reference):
    want = reference[6]
    r = engine.generate(prompts[6], config(drafter="eagle", eos_ids=[want[7]]))
    assert r.finish_reason == "eos" and list(r.tokens) == want[: want.index(want[7]) + 1]

    def boom(tokens):
        raise KeyError("from the callback")

    with pytest.raises(KeyError):
        engine.generate(prompts[-1], config(drafter="eagle"), boom)
    assert list(engine.generate(prompts[8], config(drafter="eagle")).tokens) == reference[8]


def test_cancelled_prefill_then_clean_generation(engine, prompts, reference):
    token = _native.CancelToken()
    token.cancel()
    r = engine.generate(prompts[9], config(drafter="eagle"), None, token)  # 150 tokens: 3 chunks
    assert r.finish_reason == "cancelled" and not r.tokens
    assert list(engine.generate(prompts[7], config(drafter="eagle")).tokens) == reference[7]


# ---------------------------------------------------------------- sampling


def test_sampling_is_seeded(engine, prompts):
    cfg = config(drafter="eagle", temperature=1.0, top_p=0.9, seed=42)
    a = engine.generate(prompts[5], cfg).tokens
    b = engine.generate(prompts[5], cfg).tokens
    cfg.seed = 43
    c = engine.generate(prompts[5], cfg).tokens
    assert a == b and len(a) == 40
    assert a != c


@pytest.fixture(scope="module")
def peaked(tmp_path_factory, tiny_tokenizer_json) -> tuple[Path, _native.Engine, list[int]]:
    """The near-bigram peaked target of test_sampling_dist.py with a random head, and a prompt.
    Its layers barely matter, so f_{p+1} ~ norm(embed(t_{p+1})): what the head computes."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from conftest import _export
    from test_sampling_dist import _models

    root = tmp_path_factory.mktemp("eagle_dist")
    hf = _models(root, tiny_tokenizer_json)
    bundle = with_feature_eagle(_export(hf["target"], root / "exported"), root / "bundle")
    engine = _native.Engine(target_spec(bundle), None, cpu(), cpu(), eagle=eagle_spec(bundle))
    greedy = list(engine.generate([5], config(max_new_tokens=16)).tokens)
    return bundle, engine, [5, *greedy, 5, *greedy[:6]]


@pytest.mark.parametrize("setting_name", ["T1.0", "T0.7-topk20", "T1.2-topp0.8"])
def test_speculative_sampling_matches_plain(peaked, setting_name):
    from test_sampling_dist import (
        ALPHA,
        PLAIN_SEEDS,
        SETTINGS,
        SPEC_SEEDS,
        N,
        fmt,
        positions_report,
        sample,
    )

    _, engine, prompt = peaked
    setting = SETTINGS[setting_name]
    base, _ = sample(engine, prompt, "none", setting, PLAIN_SEEDS)
    got, (drafted, accepted, runs_drafting) = sample(engine, prompt, "eagle", setting, SPEC_SEEDS)
    report = positions_report(base, got)
    print(f"eagle {setting_name}: drafted {drafted} accepted {accepted}; {fmt(report)}")
    assert runs_drafting >= N // 10, runs_drafting
    assert accepted >= 20 and drafted - accepted >= 200, (drafted, accepted)
    assert all(p >= ALPHA for _, _, p in report), fmt(report)


# ---------------------------------------------------------------- errors


def test_eagle_drafter_without_a_head(eagle_bundle, prompts, reference):
    plain = _native.Engine(target_spec(eagle_bundle, hidden_states=False), None, cpu())
    assert not plain.has_eagle
    with pytest.raises(ValueError, match="eagle"):
        plain.generate([1, 2], config(drafter="eagle"))
    assert list(plain.generate(prompts[2], config()).tokens) == reference[2]


def _engine_with(bundle: Path, target=None, **eagle_changes) -> _native.Engine:
    head = eagle_spec(bundle)
    for key, value in eagle_changes.items():
        setattr(head, key, value)
    return _native.Engine(target or target_spec(bundle), None, cpu(), cpu(), eagle=head)


def test_token_map_errors(eagle_bundle):
    good = eagle_spec(eagle_bundle).token_map
    vocab = target_spec(eagle_bundle).vocab_size
    with pytest.raises(ValueError, match=f"token_map has {DRAFT_VOCAB - 1} entries.*{DRAFT_VOCAB}"):
        _engine_with(eagle_bundle, token_map=good[:-1])
    dup = list(good)
    dup[7] = dup[3]
    with pytest.raises(ValueError, match=rf"token_map\[7\] = {dup[3]} duplicates token_map\[3\]"):
        _engine_with(eagle_bundle, token_map=dup)
    for bad in (vocab, -1):
        wrong = list(good)
        wrong[5] = bad
        with pytest.raises(ValueError, match=rf"token_map\[5\] = {bad} is outside.*{vocab}"):
            _engine_with(eagle_bundle, token_map=wrong)


def test_target_and_head_mismatches(eagle_bundle):
    with pytest.raises(ValueError, match="hidden_states"):
        _engine_with(eagle_bundle, target=target_spec(eagle_bundle, hidden_states=False))
    t = target_spec(eagle_bundle)
    h = t.hidden_size
    with pytest.raises(ValueError, match=f"hidden_size {h + 1}.*{h}"):
        _engine_with(eagle_bundle, hidden_size=h + 1)
    with pytest.raises(ValueError, match="features"):
        _engine_with(eagle_bundle, features="")
    with pytest.raises(RuntimeError, match="feats"):
        _engine_with(eagle_bundle, features="feats")  # the graph has no such input
    t.hidden_states = "hidden"
    with pytest.raises(RuntimeError, match="hidden"):
        _engine_with(eagle_bundle, target=t)  # the graph has no such output


def test_spec_fields_roundtrip():
    spec = _native.ModelSpec(hidden_size=8, features="f", hidden_states="h", token_map=[3, 1])
    assert (spec.hidden_size, spec.features, spec.hidden_states) == (8, "f", "h")
    assert spec.token_map == [3, 1]
    assert _native.ModelSpec().hidden_states == "" and _native.ModelSpec().token_map == []


def test_unconfident_head_stops_after_one_draft(engine, prompts, reference):
    """Drafting stops once the head's confidence (product of its top-token probabilities) is
    below draft_confidence: a random head over 300 tokens is never 0.3 sure, so every step
    drafts one token; with draft_confidence 0 it drafts the fixed k, bounded by the head's depth
    (4: kHeadDepth)."""
    steps = drafted = fixed = fixed_steps = 0
    for p, want in list(zip(prompts, reference, strict=True))[:6]:
        base = dict(drafter="eagle", copy_match=0, num_draft_tokens=6, adaptive=False)
        r = engine.generate(p, config(**base, draft_confidence=0.3))
        f = engine.generate(p, config(**base, draft_confidence=0.0))
        assert list(r.tokens) == want and list(f.tokens) == want
        steps += r.stats.n_steps
        drafted += r.stats.n_draft
        fixed += f.stats.n_draft
        fixed_steps += f.stats.n_steps
    assert steps - 6 <= drafted <= steps  # a last step with budget for no draft drafts none
    assert 3 * fixed_steps < fixed <= HEAD_DEPTH * fixed_steps
