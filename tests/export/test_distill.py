"""`edgespec distill`: self-distilled draft head (export/distill/) on the tiny random Llama.

The end-to-end runs use a tiny budget (a few prompts, short answers, a few steps); they check
the bundle contract, determinism, resume and data reuse, not accuracy (the target is random).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")

from decoder_harness import torch_reference  # noqa: E402

from edgespec.cli import main as cli_main  # noqa: E402
from edgespec.export.distill import seeds, train  # noqa: E402
from edgespec.export.distill.data import (  # noqa: E402
    Corpus,
    complete_shards,
    draft_index,
    select_draft_vocab,
)
from edgespec.export.distill.main import split_indices  # noqa: E402

pytestmark = pytest.mark.export

TINY_ARGS = [
    "--prompts", "24", "--max-new-tokens", "12", "--gen-batch", "12", "--steps", "4",
    "--draft-vocab", "64", "--batch-tokens", "512", "--checkpoint-every", "2", "--quiet",
    "--dtype", "bfloat16",
]  # fmt: skip


def _copy(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def _distill(bundle: Path, teacher: Path, work: Path, *extra: str) -> int:
    argv = ["distill", str(bundle), "--teacher", str(teacher), "--work-dir", str(work)]
    return cli_main(argv + TINY_ARGS + list(extra))


def _head_bytes(bundle: Path) -> bytes:
    return (bundle / "eagle" / "model.onnx.data").read_bytes()


def _data_dir(work: Path, teacher: Path, seed: int = 0) -> Path:
    from edgespec.export.distill.data import data_key

    return work / f"data-{data_key(teacher.absolute(), seed, 12, 12, 'bfloat16')}"


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_bundle, tiny_hf_dir):
    """(bundle with a distilled head, work dir)."""
    root = tmp_path_factory.mktemp("distill")
    bundle = _copy(tiny_bundle, root / "bundle")
    assert _distill(bundle, tiny_hf_dir, root / "work") == 0
    return bundle, root / "work"


# -- end to end ----------------------------------------------------------------------------------


def test_bundle_loads_with_the_head(distilled, tiny_bundle):
    from edgespec.bundle import load_bundle

    bundle, _ = distilled
    b = load_bundle(bundle)
    assert b.eagle is not None and b.eagle.vocab_size == 64
    tm = list(b.eagle.token_map)
    assert tm == sorted(set(tm)) and set(b.tokenizer.eos_token_ids) <= set(tm)
    training = b.manifest["models"]["eagle"]["training"]
    assert training["steps"] == 4 and training["n_prompts"] > 0 and training["seed"] == 0
    assert 0.0 <= training["heldout_top1"] <= 1.0 and training["draft_vocab"] == 64
    # the same answers became prompt lookup's n-gram table
    from edgespec.bundle import load_lookup_table

    assert b.lookup is not None and b.lookup.entries > 0
    source = b.manifest["lookup"]["source"]
    assert source["n_prompts"] == training["n_prompts"] and source["seed"] == 0
    assert len(load_lookup_table(b.lookup)["keys"]) == b.lookup.entries
    assert load_bundle(tiny_bundle).eagle is None  # the source bundle is untouched
    assert load_bundle(tiny_bundle).lookup is None


def test_same_seed_same_weights_and_data_reused(distilled, tiny_bundle, tiny_hf_dir, tmp_path):
    bundle, work = distilled
    data = _data_dir(work, tiny_hf_dir)
    shards = complete_shards(data)
    stamp = (data / "shard-00000.npz").stat().st_mtime_ns
    again = _copy(tiny_bundle, tmp_path / "again")
    assert _distill(again, tiny_hf_dir, work) == 0
    assert complete_shards(data) == shards  # nothing generated again
    assert (data / "shard-00000.npz").stat().st_mtime_ns == stamp
    assert _head_bytes(again) == _head_bytes(bundle)


def test_other_seed_other_weights(distilled, tiny_bundle, tiny_hf_dir, tmp_path):
    bundle, work = distilled
    other = _copy(tiny_bundle, tmp_path / "other")
    assert _distill(other, tiny_hf_dir, work, "--seed", "1") == 0
    assert _head_bytes(other) != _head_bytes(bundle)


def test_resume_continues_from_the_checkpoint(
    distilled, tiny_bundle, tiny_hf_dir, tmp_path, monkeypatch
):
    _, work = distilled
    ref = _copy(tiny_bundle, tmp_path / "ref")
    assert _distill(ref, tiny_hf_dir, work, "--steps", "6") == 0
    calls = {"n": 0}
    real = train.batch_loss

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # during step 6: the last checkpoint is step 4
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    cut = _copy(tiny_bundle, tmp_path / "cut")
    monkeypatch.setattr(train, "batch_loss", interrupted)
    assert _distill(cut, tiny_hf_dir, work, "--steps", "6") == 130
    assert not (cut / "eagle").exists()
    monkeypatch.setattr(train, "batch_loss", real)
    assert _distill(cut, tiny_hf_dir, work, "--steps", "6", "--resume") == 0
    m = json.loads((cut / "edgespec.json").read_text())["models"]["eagle"]
    assert m["training"]["steps"] == 6
    assert _head_bytes(cut) == _head_bytes(ref)


def test_existing_head_needs_force(distilled, tiny_hf_dir, capsys):
    bundle, work = distilled
    before = _head_bytes(bundle)
    assert _distill(bundle, tiny_hf_dir, work) == 1
    assert "already has a draft head (use --force" in capsys.readouterr().err
    assert _head_bytes(bundle) == before


def test_teacher_mismatch_is_refused(tiny_bundle, tiny_tokenizer_json, tmp_path, capsys):
    from conftest import save_random_model, tiny_llama_config

    other = tmp_path / "other_teacher"
    save_random_model(other, tiny_llama_config(), seed=1, tokenizer_json=tiny_tokenizer_json)
    bundle = _copy(tiny_bundle, tmp_path / "b")
    assert _distill(bundle, other, tmp_path / "work") == 2
    err = capsys.readouterr().err
    assert "does not match the bundle's target: top-1 agreement" in err
    assert not (tmp_path / "work").exists()  # refused before any data was generated


def test_teacher_defaults_to_source_path_or_asks(tiny_bundle, tmp_path, capsys):
    bundle = _copy(tiny_bundle, tmp_path / "b")
    path = bundle / "edgespec.json"
    m = json.loads(path.read_text())
    m["models"]["target"].pop("source_path", None)
    path.write_text(json.dumps(m))
    assert cli_main(["distill", str(bundle), "--quiet"]) == 2
    assert "pass --teacher PATH" in capsys.readouterr().err


# -- the torch head against the ONNX head graph ----------------------------------------------


@pytest.fixture(scope="module")
def head_and_graph(tmp_path_factory, tiny_bundle, tiny_hf_dir):
    import torch

    from edgespec.export.distill.head import EagleHead
    from edgespec.export.distill.teacher import arch_config, frozen_tensors, load_teacher
    from edgespec.export.eagle_graph import head_config, write_eagle
    from edgespec.export.verify import SharedKVDecoder

    model = load_teacher(tiny_hf_dir)
    token_map = np.arange(0, 500, 5, dtype=np.int32)  # [100]
    cfg = head_config(arch_config(model), len(token_map))
    head = EagleHead(cfg, frozen_tensors(model), token_map, "last-layer", seed=3).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    bundle = _copy(tiny_bundle, tmp_path_factory.mktemp("parity") / "b")
    write_eagle(bundle, cfg, head.export_weights(), token_map, {"kind": "test"})
    entry = json.loads((bundle / "edgespec.json").read_text())["models"]["eagle"]
    return head, SharedKVDecoder(bundle / entry["path"], entry)


def _torch_head(head, ids, feats):
    import torch

    with torch.no_grad():
        f_hat = head.features(torch.tensor([ids]), torch.from_numpy(feats)[None])  # [1, n, H]
        return head.logits(f_hat)[0].numpy(), f_hat[0].numpy()  # [n, V], [n, H]


def test_torch_head_matches_the_onnx_graph(head_and_graph):
    head, dec = head_and_graph
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 512, 11).tolist()
    feats = (2 * rng.standard_normal((11, 64))).astype(np.float32)  # [11, H]
    logits, hidden = _torch_head(head, ids, feats)
    a_l, a_h = dec.forward(ids[:4], 0, hidden=True, features=feats[:4])
    b_l, b_h = dec.forward(ids[4:], 4, hidden=True, features=feats[4:])
    assert np.abs(np.concatenate([a_l, b_l]) - logits).max() <= 1e-4
    assert np.abs(np.concatenate([a_h, b_h]) - hidden).max() <= 1e-4


def test_unrolled_step_matches_drafting_with_own_features(head_and_graph):
    """Training step 2 at position i (own feature f^_i, keys of step 1 before i) is what the
    runtime computes when it drafts at i after catching up over 0..i-1 with true features."""
    import torch

    from edgespec.export.distill.head import KeepKV, unroll_mask

    head, dec = head_and_graph
    rng = np.random.default_rng(1)
    n = 7
    ids = rng.integers(0, 512, n).tolist()
    feats = rng.standard_normal((n, 64)).astype(np.float32)  # [n, H]
    with torch.no_grad():
        kv = KeepKV()
        t_ids, t_f = torch.tensor([ids]), torch.from_numpy(feats)[None]  # [1, n], [1, n, H]
        f1 = head.features(t_ids, t_f, None, kv)  # [1, n, H]
        pos = torch.tensor([1, 4, 6])  # step-2 positions
        prev = f1[0, pos - 1]  # [3, H]: f^_i, the step-1 prediction made at i-1
        f2 = head.features(t_ids[:, pos], prev[None], unroll_mask(pos, n), kv, pos)[0]  # [3, H]
    for r, i in enumerate(pos.tolist()):
        dec.forward(ids[:i], 0, hidden=True, features=feats[:i])  # catch up, true features
        _, h = dec.forward([ids[i]], i, hidden=True, features=prev[r : r + 1].numpy())
        assert np.abs(h[0] - f2[r].numpy()).max() <= 1e-4, i


# -- teacher generation --------------------------------------------------------------------------


def _greedy_alone(model, prompt: list[int], eos: int, max_new: int):
    """Reference: one prompt, no batch, no cache: greedy ids and the final-norm features of
    prompt + answer[:-1] from one forward over the whole sequence."""
    ids = list(prompt)
    for _ in range(max_new):
        ids.append(int(torch_reference(model, ids)[0][-1].argmax()))
        if ids[-1] == eos:
            break
    return ids, torch_reference(model, ids[:-1])[1]  # [T], [T-1, H]


def test_batched_generation_matches_each_prompt_alone(tiny_hf_dir):
    """Left padding, rows leaving the batch at EOS (their KV rows dropped) and the cap: each
    row's answer and features are what the prompt gives alone."""
    from types import SimpleNamespace

    from edgespec.export.distill.data import generate_batch
    from edgespec.export.distill.teacher import load_teacher

    model = load_teacher(tiny_hf_dir).eval()
    rng = np.random.default_rng(4)
    prompts = [rng.integers(3, 500, n).tolist() for n in (3, 9, 5, 12, 7, 4)]
    free = [_greedy_alone(model, p, -1, 10)[0][len(p) :] for p in prompts]  # no EOS
    eos = free[0][3]  # row 0 stops at its 4th token; rows without this id run to the cap
    text = SimpleNamespace(pad_id=0, eos_ids=[eos])
    seqs = generate_batch(model, prompts, text, 10)
    lens = [len(s["ids"]) - len(p) for s, p in zip(seqs, prompts, strict=True)]
    assert min(lens) < 10 and max(lens) == 10, lens  # some rows left early, some hit the cap
    for p, s in zip(prompts, seqs, strict=True):
        ids, feats = _greedy_alone(model, p, eos, 10)
        assert s["ids"] == ids
        assert s["prompt_len"] == len(p) and s["finished"] == (ids[-1] == eos)
        assert s["feats"].shape == feats.shape
        np.testing.assert_allclose(s["feats"].astype(np.float32), feats, atol=2e-2, rtol=1e-2)


# -- pure pieces -----------------------------------------------------------------------------


def test_draft_vocab_by_frequency_with_eos_sorted():
    answers = np.array([7, 7, 7, 3, 3, 9, 9, 1, 5])  # 7:3, 3:2, 9:2, 1:1, 5:1
    tm = select_draft_vocab(answers, target_vocab=12, size=4, eos_ids=[11])
    assert tm.tolist() == [3, 7, 9, 11] and tm.dtype == np.int32  # tie 3/9 both in, 1 vs 5 out
    tm = select_draft_vocab(answers, target_vocab=12, size=5, eos_ids=[11])
    assert tm.tolist() == [1, 3, 7, 9, 11]  # tie at count 1: lower id first
    assert len(select_draft_vocab(answers, 12, 100, [11])) == 12  # capped at the target vocab
    with pytest.raises(ValueError, match="smaller than"):
        select_draft_vocab(answers, 12, 1, [10, 11])
    inv = draft_index(np.array([1, 3, 7], np.int32), 10)
    assert inv.tolist() == [-1, 0, -1, 1, -1, -1, -1, 2, -1, -1]


def test_seed_prompts_deterministic_distinct_and_varied():
    a, b = seeds.base_prompts(0, 600), seeds.base_prompts(0, 600)
    assert a == b
    assert len({repr(p["messages"]) for p in a}) == 600
    assert {p["kind"] for p in a} == set(seeds.CATEGORY_WEIGHTS)
    assert seeds.base_prompts(1, 50) != a[:50]
    assert len(seeds.base_prompts(0, 100_000)) >= 3000  # a few thousand available


def test_derived_prompts_carry_the_passage_and_history():
    rng = random.Random(0)
    answer = "Bees carry pollen between flowers. " * 6
    passage = seeds.clean_passage(answer)
    assert passage and passage.endswith(".")
    assert seeds.clean_passage("Too short.") is None
    task = seeds.passage_task(passage, "bees", rng)
    assert passage in task["messages"][0]["content"] and task["kind"] == "passage"
    chat = [{"role": "user", "content": "Tell me about bees."}]
    follow = seeds.followup_task(chat, answer, rng)
    assert [m["role"] for m in follow["messages"]] == ["user", "assistant", "user"]
    assert chat == [{"role": "user", "content": "Tell me about bees."}]  # not mutated


def _corpus() -> Corpus:
    """Two sequences, H=2: T=6 with P=3 and T=4 with P=1; features = position numbers."""
    ids = np.array([10, 11, 12, 13, 14, 2, 20, 21, 22, 2], np.int32)
    lens, plens = np.array([6, 4], np.int32), np.array([3, 1], np.int32)
    feats = np.concatenate([np.arange(5), np.arange(3)]).repeat(2).reshape(-1, 2)  # [8, 2]
    return Corpus(ids, feats.astype(np.float16), lens, plens)


def test_collate_shifts_and_masks_answer_positions():
    corpus = _corpus()
    inv = draft_index(np.array([2, 13, 14, 21], np.int32), 32)
    b = train.collate(corpus, [0, 1], inv)
    assert b["ids"].tolist() == [[11, 12, 13, 14], [21, 22, 0, 0]]  # t_{p+1}
    assert b["f_in"][0, :, 0].tolist() == [0, 1, 2, 3]  # f_p
    assert b["f_tgt"][0, :, 0].tolist() == [1, 2, 3, 4]  # f_{p+1}
    assert b["tok"].tolist() == [[-1, 1, 2, 0], [-1, 0, -1, -1]]  # t_{p+2}; -1 outside vocab
    # drafted positions: p >= P-1 (the answer's second token onwards), p <= T-3
    assert b["mask"].tolist() == [[False, False, True, True], [True, True, False, False]]
    assert train.loss_positions(6, 3) == (2, 4)


def test_loss_ignores_targets_outside_the_vocab():
    import torch

    from edgespec.export.distill.head import EagleHead
    from edgespec.export.model_ir import ArchConfig

    cfg = ArchConfig("llama", 1, 2, 1, 4, 8, 16, 3, 1e-5, 10000.0, 64, False)
    frozen = {"embed": torch.randn(32, 8), "lm_head": torch.randn(32, 8), "norm": torch.ones(8),
              "last_layer": {}}  # fmt: skip
    head = EagleHead(cfg, frozen, np.array([2, 13, 14], np.int32), "random", 0)
    corpus = _corpus()
    corpus.feats = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float16)
    batch = train.collate(corpus, [0, 1], draft_index(np.array([2, 13, 14], np.int32), 32))
    batch["tok"][:] = -1  # every target outside the draft vocabulary
    loss, stats = train.batch_loss(head, batch, train.TrainConfig(), 0.0, None)
    assert torch.isfinite(loss) and int(stats[0][0]) == 0 and int(stats[0][1]) == 4


def test_batches_cover_every_sequence_once_within_the_token_budget():
    lens = np.array([10, 50, 20, 30, 40, 5, 60])
    rng = np.random.default_rng(0)
    batches = train.make_batches(lens, np.arange(7), 100, rng)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len(b) * max(lens[b]) <= 100 or len(b) == 1 for b in batches)


def test_split_is_seeded_and_disjoint():
    tr, held = split_indices(100, seed=0)
    assert len(held) == 5 and not set(tr) & set(held) and len(tr) + len(held) == 100
    assert split_indices(100, seed=0)[1].tolist() == held.tolist()
    assert split_indices(100, seed=1)[1].tolist() != held.tolist()
    assert len(split_indices(1, 0)[1]) == 0


def test_compute_dtype_choice():
    from edgespec.export.distill.teacher import fast_dtype

    assert fast_dtype("float32") == "float32" and fast_dtype("bfloat16") == "bfloat16"
    assert fast_dtype("auto") in ("float32", "bfloat16")
