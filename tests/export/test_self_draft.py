"""`edgespec export --self-draft PRECISION`: the target itself, quantized, as the draft model."""

import json

import pytest

from edgespec.cli import main as cli_main


@pytest.fixture(scope="module")
def self_draft_bundle(tmp_path_factory, tiny_hf_dir):
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("selfdraft") / "b"
    rc = cli_main(
        [
            "export",
            "--model",
            str(tiny_hf_dir),
            "--self-draft",
            "int8",
            "--capacity",
            "256",
            "-o",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    return out


def test_manifest_has_a_quantized_copy_of_the_target(self_draft_bundle):
    m = json.loads((self_draft_bundle / "edgespec.json").read_text())
    target, draft = m["models"]["target"], m["models"]["draft"]
    assert target["precision"] == "fp32" and draft["precision"] == "int8"
    for key in ("num_layers", "num_kv_heads", "head_dim", "vocab_size", "capacity"):
        assert draft[key] == target[key], key
    assert 0 < draft["file_bytes"] < target["file_bytes"]


def test_self_draft_is_lossless_and_mostly_accepted(self_draft_bundle):
    import edgespec

    with edgespec.Session(self_draft_bundle, threads=1) as s:
        assert s.resolve_drafter("auto") == "model"
        for prompt in ("the quick brown fox", "one two three four", "hello world hello"):
            plain = s.generate(prompt, max_new_tokens=24, drafter="none")
            spec = s.generate(prompt, max_new_tokens=24, drafter="model", adaptive=False)
            assert spec.tokens == plain.tokens, prompt
            assert spec.stats.acceptance_rate > 0.5, spec.stats


def test_self_draft_excludes_other_draft_flags(tiny_hf_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse usage error: exit status 2
        cli_main(
            [
                "export",
                "--model",
                str(tiny_hf_dir),
                "--self-draft",
                "int4",
                "--draft",
                str(tiny_hf_dir),
                "-o",
                str(tmp_path / "x"),
                "--quiet",
            ]
        )
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
