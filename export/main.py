"""`edgespec export`: argument parser and entry point (the lead's CLI calls these)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .graph import ATTENTIONS, PRECISIONS, GraphOptions
from .model_ir import LoadedModel
from .writer import ModelSpec, write_bundle

DEFAULT_CAPACITY = 2048


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the export options to `parser` (a subcommand parser or a fresh one)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="DIR", help="local Hugging Face model directory")
    src.add_argument("--gguf", metavar="FILE", help="GGUF checkpoint file")
    drf = parser.add_mutually_exclusive_group()
    drf.add_argument("--draft", metavar="DIR", help="draft model: local HF directory")
    drf.add_argument("--draft-gguf", metavar="FILE", help="draft model: GGUF file")
    drf.add_argument(
        "--self-draft",
        choices=PRECISIONS,
        metavar="PRECISION",
        help="draft model: the target itself at this precision, e.g. int4 (no second checkpoint)",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="target precision (default fp32)"
    )
    parser.add_argument(
        "--draft-precision",
        choices=PRECISIONS,
        default=None,
        help="draft precision (default: same as --precision)",
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=DEFAULT_CAPACITY,
        help=f"KV slots per layer = max prompt+generated tokens (default {DEFAULT_CAPACITY})",
    )
    parser.add_argument(
        "--block-size", type=int, default=32, help="int4/int8 quantization block size (default 32)"
    )
    parser.add_argument(
        "--accuracy-level",
        type=int,
        default=4,
        choices=range(5),
        help="MatMulNBits accuracy_level for int4/int8 (default 4)",
    )
    parser.add_argument(
        "--attention",
        choices=ATTENTIONS,
        default="auto",
        help="attention op: edgespec (CPU; verify equals plain decoding bit for bit), gqa (ORT's "
        "GroupQueryAttention, every provider); auto (default): edgespec, gqa for fp16",
    )
    parser.add_argument(
        "--no-hidden-states", action="store_true", help="omit the hidden_states graph output"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="BUNDLE", help="bundle directory to write"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def load_model(hf_dir: str | None, gguf: str | None) -> LoadedModel:
    """LoadedModel from exactly one of an HF directory or a GGUF file."""
    if hf_dir is not None:
        from .hf_loader import load_hf

        return load_hf(hf_dir)
    if gguf is None:
        raise ValueError("no model given: pass --model DIR or --gguf FILE")
    if not Path(gguf).is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    from .gguf_loader import load_gguf

    return load_gguf(gguf)


def _options(args: argparse.Namespace, precision: str) -> GraphOptions:
    return GraphOptions(
        precision=precision,
        capacity=args.capacity,
        block_size=args.block_size,
        accuracy_level=args.accuracy_level,
        hidden_states=not args.no_hidden_states,
        attention=getattr(args, "attention", "auto"),
    )


def run_export(args: argparse.Namespace) -> Path:
    """Load, build and write the bundle described by parsed `args`; returns the bundle path."""
    out = Path(args.output)
    if out.exists() and not args.force:
        raise FileExistsError(f"bundle destination exists (use --force): {out}")
    progress = not getattr(args, "quiet", False)
    loaded = load_model(args.model, args.gguf)
    source = str(Path(args.model or args.gguf).absolute())
    target = ModelSpec(loaded, _options(args, args.precision), source)
    draft = None
    if getattr(args, "self_draft", None):
        draft = ModelSpec(loaded, _options(args, args.self_draft), source)
    elif args.draft or args.draft_gguf:
        draft_opts = _options(args, args.draft_precision or args.precision)
        draft_src = str(Path(args.draft or args.draft_gguf).absolute())
        draft = ModelSpec(load_model(args.draft, args.draft_gguf), draft_opts, draft_src)
    path = write_bundle(out, target, draft, force=args.force, progress=progress)
    if progress:
        print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = add_export_arguments(argparse.ArgumentParser(prog="edgespec export"))
    run_export(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
