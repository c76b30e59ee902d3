"""Speculative SAMPLING through the native engine reproduces the target's distribution.

One fixed prompt, three sampling settings, three drafters: a GOOD draft model (the target's
embedding / first layer / head, with a perturbed head: acceptance ~50%), a POOR one (unrelated
random weights: almost every draft is rejected, so the residual distribution carries the output)
and prompt lookup (ngram: a one-hot q). For each, the tokens at positions 1..4 of many seeded
generations are compared with plain sampling (drafter "none", other seeds) by a two-sample
chi-square test per position (rare tokens pooled). Position 1 comes from the prefill (the same
code path in both); positions 2..4 are drafted, accepted or resampled.

The statistic demonstrably has power: the same test at the same significance level rejects
plain sampling at a 1.3x temperature, and samples drawn from the exact law that a BROKEN
residual (sampling p instead of norm(max(0, p - q)) after a rejection) would produce, computed
from the exported graphs. The seeds are fixed, so each outcome is deterministic.

The target is a tiny random Llama whose layers are scaled down (nearly a bigram model with a
peaked next-token distribution): greedy decoding falls into a loop that the prompt contains, so
prompt lookup proposes plausible tokens and gets accepted often enough to test both paths.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import edgespec  # noqa: F401  (loads ORT into the native module)
from edgespec import _native

N = 4000  # generations per sample (each ~0.1 ms)
NEW = 4  # tokens per generation: positions 1..4
ALPHA = 1e-4  # significance level of each of the 45 p-values (seeds fixed: deterministic)
MIN_EXPECTED = 5.0  # categories with a smaller expected count are pooled
SETTINGS = {  # name -> (temperature, top_k, top_p)
    "T1.0": (1.0, 0, 1.0),
    "T0.7-topk20": (0.7, 20, 1.0),
    "T1.2-topp0.8": (1.2, 0, 0.8),
}
PLAIN_SEEDS = range(0, N)
SPEC_SEEDS = range(10**6, 10**6 + N)
WRONG_SEEDS = range(2 * 10**6, 2 * 10**6 + N)


# ---------------------------------------------------------------- statistics


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df): the regularized upper incomplete gamma Q(df/2, x/2)."""
    a, z = df / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    log_front = -z + a * math.log(z) - math.lgamma(a)
    if z < a + 1:  # series for the lower function P
        term = total = 1.0 / a
        n = a
        while term > total * 1e-15:
            n += 1
            term *= z / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    # continued fraction for Q (modified Lentz)
    tiny = 1e-300
    b = z + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return math.exp(log_front) * h


def pool(counts: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Categories with an expected count below MIN_EXPECTED merged into one (rows: samples)."""
    small = expected < MIN_EXPECTED
    if small.sum() == 0:
        return counts, expected
    counts = np.concatenate([counts[:, ~small], counts[:, small].sum(axis=1, keepdims=True)], 1)
    expected = np.append(expected[~small], expected[small].sum())
    return counts, expected


def two_sample(x: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
    """Chi-square two-sample test of the token samples x and y: (statistic, df, p-value)."""
    cats, inv = np.unique(np.concatenate([x, y]), return_inverse=True)
    counts = np.stack(
        [
            np.bincount(inv[: len(x)], minlength=len(cats)),
            np.bincount(inv[len(x) :], minlength=len(cats)),
        ]
    ).astype(np.float64)
    nx, ny = len(x), len(y)
    counts, _ = pool(counts, counts.sum(axis=0) * min(nx, ny) / (nx + ny))
    cx, cy = counts
    stat = float((((math.sqrt(ny / nx) * cx - math.sqrt(nx / ny) * cy) ** 2) / (cx + cy)).sum())
    df = len(cx) - 1
    return stat, df, chi2_sf(stat, df)


def goodness_of_fit(x: np.ndarray, probs: np.ndarray) -> tuple[float, int, float]:
    """One-sample chi-square test of the token sample x against the exact law `probs`."""
    counts = np.bincount(x, minlength=len(probs))[None].astype(np.float64)
    assert counts[0, probs == 0].sum() == 0, "a token of probability 0 was generated"
    counts, expected = pool(counts[:, probs > 0], len(x) * probs[probs > 0])
    stat = float(((counts[0] - expected) ** 2 / expected).sum())
    df = len(expected) - 1
    return stat, df, chi2_sf(stat, df)


def positions_report(a: np.ndarray, b: np.ndarray) -> list[tuple[float, int, float]]:
    """two_sample per generated position (columns of the [N, NEW] token arrays)."""
    return [two_sample(a[:, j], b[:, j]) for j in range(a.shape[1])]


def fmt(report) -> str:
    return "; ".join(
        f"pos{j + 1}: chi2={s:.1f} df={d} p={p:.2e}" for j, (s, d, p) in enumerate(report)
    )


def test_chi2_sf_matches_tables():
    for x, df, p in ((3.841, 1, 0.05), (18.307, 10, 0.05), (6.635, 1, 0.01), (124.342, 100, 0.05)):
        assert chi2_sf(x, df) == pytest.approx(p, rel=2e-3)
    assert chi2_sf(0.0, 5) == 1.0
    assert chi2_sf(300.0, 100) < 1e-20
    assert chi2_sf(99.33, 100) == pytest.approx(0.5, abs=2e-3)  # median ~ df(1 - 2/(9 df))^3


# ---------------------------------------------------------------- models and samples


def _save(model, path: Path, tokenizer_json: str) -> Path:
    from conftest import write_tiny_tokenizer

    model.save_pretrained(str(path))
    write_tiny_tokenizer(path, tokenizer_json)
    return path


def _models(root: Path, tokenizer_json: str) -> dict[str, Path]:
    """HF dirs: a near-bigram peaked target, a good draft (shared layer, noisy head), a poor one."""
    import torch
    import transformers
    from conftest import tiny_llama_config

    torch.manual_seed(0)
    target = transformers.AutoModelForCausalLM.from_config(tiny_llama_config(initializer_range=0.4))
    with torch.no_grad():
        for name, p in target.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                p.mul_(1e-3)  # layers barely matter: next token ~ a function of the last one
    one_layer = tiny_llama_config(num_hidden_layers=1, initializer_range=0.4)
    good = transformers.AutoModelForCausalLM.from_config(one_layer)
    with torch.no_grad():
        own = good.state_dict()
        for name, t in target.state_dict().items():
            if name in own:
                own[name].copy_(t)
        good.lm_head.weight.add_(0.15 * torch.randn_like(good.lm_head.weight))
    torch.manual_seed(123)
    poor = transformers.AutoModelForCausalLM.from_config(one_layer)
    return {
        "target": _save(target, root / "target", tokenizer_json),
        "good": _save(good, root / "good", tokenizer_json),
        "poor": _save(poor, root / "poor", tokenizer_json),
    }


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_tokenizer_json) -> dict[str, Path]:
    """{"good": bundle with the good draft, "poor": same target with the poor draft}."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("onnx")
    from conftest import _export

    root = tmp_path_factory.mktemp("sampling_dist")
    hf = _models(root, tiny_tokenizer_json)
    return {
        d: _export(hf["target"], root / f"bundle_{d}", draft_dir=hf[d]) for d in ("good", "poor")
    }


def _spec(bundle: Path, role: str) -> _native.ModelSpec:
    from test_engine import model_spec

    return model_spec(bundle, role)


@pytest.fixture(scope="module")
def engines(bundles) -> dict[str, _native.Engine]:
    cpu = _native.ProviderSpec(threads=1)
    return {
        d: _native.Engine(_spec(b, "target"), _spec(b, "draft"), cpu, cpu)
        for d, b in bundles.items()
    }


@pytest.fixture(scope="module")
def prompt(engines) -> list[int]:
    """[5] + greedy[:16] + [5] + greedy[:6]: the second part repeats the first (prompt lookup)."""
    greedy = list(engines["good"].generate([5], _native.GenConfig(max_new_tokens=16)).tokens)
    return [5, *greedy, 5, *greedy[:6]]


DRAFTERS = {"good": ("good", "model"), "poor": ("poor", "model"), "ngram": ("good", "ngram")}


def sample(engine, prompt, drafter: str, setting, seeds, temperature_factor: float = 1.0):
    """[len(seeds), NEW] generated tokens and (drafted, accepted, runs that drafted)."""
    temperature, top_k, top_p = setting
    cfg = _native.GenConfig(
        max_new_tokens=NEW,
        temperature=temperature * temperature_factor,
        top_k=top_k,
        top_p=top_p,
        drafter=drafter,
        num_draft_tokens=2,  # step 1 drafts positions 2, 3; position 4 is the bonus if both pass
        adaptive=False,  # always 2: the acceptance math is under test, not the length policy
    )
    out = np.empty((len(seeds), NEW), np.int64)
    drafted = accepted = runs_drafting = 0
    for i, seed in enumerate(seeds):
        cfg.seed = seed
        r = engine.generate(prompt, cfg)
        assert len(r.tokens) == NEW and r.finish_reason == "length"
        out[i] = r.tokens
        drafted += r.stats.n_draft
        accepted += r.stats.n_accept
        runs_drafting += r.stats.n_draft > 0
    return out, (drafted, accepted, runs_drafting)


_CACHE: dict[tuple[str, str], tuple[np.ndarray, tuple[int, int, int]]] = {}


def cached(engines, prompt, drafter_name: str, setting_name: str):
    """sample() of drafter_name ("none" = plain sampling) under a setting, computed once."""
    key = (drafter_name, setting_name)
    if key not in _CACHE:
        engine_name, drafter = DRAFTERS.get(drafter_name, ("good", "none"))
        seeds = PLAIN_SEEDS if drafter == "none" else SPEC_SEEDS
        _CACHE[key] = sample(engines[engine_name], prompt, drafter, SETTINGS[setting_name], seeds)
    return _CACHE[key]


# ---------------------------------------------------------------- the engine is lossless


@pytest.mark.parametrize("setting_name", list(SETTINGS))
@pytest.mark.parametrize("drafter_name", list(DRAFTERS))
def test_speculative_sampling_matches_plain(engines, prompt, setting_name, drafter_name):
    base, _ = cached(engines, prompt, "none", setting_name)
    got, (drafted, accepted, runs_drafting) = cached(engines, prompt, drafter_name, setting_name)
    report = positions_report(base, got)
    print(f"{drafter_name} {setting_name}: drafted {drafted} accepted {accepted}; {fmt(report)}")
    # both paths are exercised: accepted drafts and rejections (residual sampling)
    assert runs_drafting >= N // 10, runs_drafting
    assert accepted >= 20 and drafted - accepted >= 200, (drafted, accepted)
    assert all(p >= ALPHA for _, _, p in report), fmt(report)


@pytest.mark.parametrize("setting_name", list(SETTINGS))
def test_the_statistic_detects_a_wrong_temperature(engines, prompt, setting_name):
    base, _ = cached(engines, prompt, "none", setting_name)
    wrong, _ = sample(engines["good"], prompt, "none", SETTINGS[setting_name], WRONG_SEEDS, 1.3)
    report = positions_report(base, wrong)
    print(f"T x1.3 {setting_name}: {fmt(report)}")
    assert min(p for _, _, p in report[1:]) < ALPHA, fmt(report)


# ---------------------------------------------------------------- the exact law of the 2nd token


def ngram_first_proposal(seq: list[int], n_max: int = 3, n_min: int = 1) -> int | None:
    """The first token prompt lookup proposes after `seq` (drafter_ngram.cpp), None if none."""
    for n in range(min(n_max, len(seq) - 1), n_min - 1, -1):
        suffix = seq[len(seq) - n :]
        for end in range(len(seq) - 2, n - 2, -1):
            if seq[end - n + 1 : end + 1] == suffix:
                return seq[end + 1]
    return None


_LOGITS: dict[tuple[Path, str], tuple[np.ndarray, np.ndarray]] = {}


def next_logits(bundle: Path, role: str, prompt: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Logits after the prompt [vocab] and after prompt + [t1] for every t1 [vocab, vocab],
    from the exported graph run by onnxruntime's Python API (edgespec.export.verify)."""
    from edgespec.export.verify import SharedKVDecoder

    if (bundle, role) not in _LOGITS:
        m = json.loads((bundle / "edgespec.json").read_text())["models"][role]
        dec = SharedKVDecoder(bundle / m["path"], m)
        first = dec.forward(prompt, 0)[-1]
        second = np.stack([dec.forward([t], len(prompt))[0] for t in range(len(first))])
        _LOGITS[bundle, role] = first, second
    return _LOGITS[bundle, role]


def exact_second_token_laws(bundle: Path, prompt, setting, drafter: str):
    """Exact law of the 2nd generated token: correct speculative sampling (= the target's own
    marginal) and one whose residual is BROKEN (p instead of norm(max(0, p - q)))."""

    def process(logits):
        return _native.spec.process_logits(logits, *setting).astype(np.float64)

    first, second = next_logits(bundle, "target", prompt)
    p1, p2 = process(first[None])[0], process(second)  # p2[t1] = law of t2 after t1
    if drafter == "model":
        q = process(next_logits(bundle, "draft", prompt)[1])
    else:  # prompt lookup: one-hot on its proposal (no row: nothing proposed)
        q = np.zeros_like(p2)
        for t1 in range(len(p1)):
            d = ngram_first_proposal([*prompt, t1])
            if d is not None:
                q[t1, d] = 1.0
    overlap = np.minimum(p2, q)  # the mass accepted, per token
    broken = overlap + (1 - overlap.sum(axis=1, keepdims=True)) * p2
    correct, broken = p1 @ p2, p1 @ broken
    return correct / correct.sum(), broken / broken.sum()


@pytest.mark.parametrize("setting_name", list(SETTINGS))
@pytest.mark.parametrize("drafter_name", list(DRAFTERS))
def test_second_token_follows_the_exact_law(bundles, engines, prompt, setting_name, drafter_name):
    """Goodness of fit of the engine's 2nd token to the exact law; the same test rejects a
    sample of the broken-residual law (good drafter and ngram: the poor one's q hardly
    overlaps p, so there the residual is ~p either way), and the exact law agrees with plain
    sampling in the two-sample test."""
    engine_name, drafter = DRAFTERS[drafter_name]
    correct, broken = exact_second_token_laws(
        bundles[engine_name], prompt, SETTINGS[setting_name], drafter
    )
    spec, _ = cached(engines, prompt, drafter_name, setting_name)
    base, _ = cached(engines, prompt, "none", setting_name)
    rng = np.random.default_rng(0)
    engine_fit = goodness_of_fit(spec[:, 1], correct)
    broken_fit = goodness_of_fit(rng.choice(len(broken), N, p=broken), correct)
    plain_vs_exact = two_sample(base[:, 1], rng.choice(len(correct), N, p=correct))
    tv = 0.5 * np.abs(broken - correct).sum()
    print(
        f"{drafter_name} {setting_name} 2nd token: engine vs exact chi2={engine_fit[0]:.1f} "
        f"df={engine_fit[1]} p={engine_fit[2]:.2e}; broken law (TV {tv:.3f}) vs exact "
        f"chi2={broken_fit[0]:.1f} p={broken_fit[2]:.2e}; plain vs exact p={plain_vs_exact[2]:.2e}"
    )
    assert engine_fit[2] >= ALPHA and plain_vs_exact[2] >= ALPHA, (engine_fit, plain_vs_exact)
    if drafter_name != "poor":
        assert broken_fit[2] < ALPHA, broken_fit


def test_two_sample_statistic_detects_a_broken_residual(bundles, engines, prompt):
    """Against plain samples alone (no exact law), the good drafter's broken residual shows."""
    correct, broken = exact_second_token_laws(bundles["good"], prompt, SETTINGS["T1.0"], "model")
    base, _ = cached(engines, prompt, "none", "T1.0")
    bad = two_sample(base[:, 1], np.random.default_rng(1).choice(len(broken), N, p=broken))
    print(
        f"broken residual (good drafter, T1.0) vs plain: chi2={bad[0]:.1f} df={bad[1]} "
        f"p={bad[2]:.2e}"
    )
    assert bad[2] < ALPHA, bad
