"""The `edgespec` command: export, generate, chat, info.

User mistakes print one line (`edgespec: error: ...`) and exit 2; `--verbose` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_USAGE = 2  # bad input / bad bundle
EXIT_FAILURE = 1  # runtime failure (ORT, provider, ...)


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the bundle's")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--drafter", default="auto", choices=["auto", "none", "ngram", "model", "eagle"])
    p.add_argument("--num-draft-tokens", type=int, default=None, help="max drafted per step")


def _add_session_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle directory written by `edgespec export`")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"])
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgespec", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("export", help="export a HF model dir or GGUF file to a bundle", add_help=False)
    sub.add_parser("bench", help="Spec-Bench speedups vs plain decoding and peers", add_help=False)
    sub.add_parser(
        "distill", help="train a draft head (drafter 'eagle') for a bundle", add_help=False
    )
    g = sub.add_parser("generate", help="generate text from a prompt (streams to the terminal)")
    _add_session_args(g)
    g.add_argument("prompt")
    g.add_argument("--raw", action="store_true", help="send the prompt as is, not as a chat turn")
    g.add_argument("--json", action="store_true", help="print one JSON result with stats")
    _add_generation_args(g)
    c = sub.add_parser("chat", help="interactive multi-turn chat (Ctrl-C cancels an answer)")
    _add_session_args(c)
    c.add_argument("--system", default=None, help="system message")
    c.add_argument("--stats", action="store_true", help="print tokens/s after each answer")
    _add_generation_args(c)
    i = sub.add_parser("info", help="what a bundle holds")
    i.add_argument("bundle")
    i.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, ImportError) as e:
        if verbose:
            raise
        print(f"edgespec: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, OSError) as e:
        if verbose:
            raise
        print(f"edgespec: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _dispatch(argv: list[str]) -> int:
    rest = [a for a in argv if a != "--verbose"]
    if rest and rest[0] == "export":
        from .export.main import main as export_main  # torch/transformers only on this path

        return export_main(rest[1:])
    if rest and rest[0] == "distill":
        from .export.distill.main import main as distill_main  # torch/transformers only here

        return distill_main(rest[1:])
    if rest and rest[0] == "bench":
        from .bench import main

        return main(rest[1:])
    args = build_parser().parse_args(argv)
    if args.command == "info":
        return _cmd_info(args)
    if args.command == "generate":
        return _cmd_generate(args)
    return _cmd_chat(args)


def _gen_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
        "drafter": args.drafter,
        "num_draft_tokens": args.num_draft_tokens,
    }


def _open(args: argparse.Namespace) -> Any:
    from .session import Session

    return Session(args.bundle, provider=args.provider, threads=args.threads)


def _cmd_generate(args: argparse.Namespace) -> int:
    with _open(args) as s:
        use_chat = not args.raw and s.bundle.tokenizer.chat_template is not None
        prompt = [{"role": "user", "content": args.prompt}] if use_chat else args.prompt
        if args.json:
            r = s.generate(prompt, **_gen_kwargs(args))
            out = {
                "text": r.text,
                "tokens": r.tokens,
                "finish_reason": r.finish_reason,
                "stats": r.stats.as_dict(),
            }
            print(json.dumps(out, ensure_ascii=False))
            return 0
        stream = s.generate(prompt, stream=True, **_gen_kwargs(args))
        for delta in stream:
            sys.stdout.write(delta)
            sys.stdout.flush()
        sys.stdout.write("\n")
        _print_stats(stream.result, sys.stderr)
    return 0


def _print_stats(r: Any, file: Any) -> None:
    st = r.stats
    print(
        f"[{st.new_tokens} tokens, {st.tokens_per_s:.1f} tok/s, drafter {st.drafter}, "
        f"acceptance {st.acceptance_rate:.0%}, {st.mean_accepted_tokens:.2f} tokens/step, "
        f"prompt {st.prompt_tokens} ({st.prompt_tokens_reused} kept), "
        f"first token {st.time_to_first_token_s:.3f} s, finish {r.finish_reason}]",
        file=file,
    )


def _cmd_chat(args: argparse.Namespace) -> int:
    with _open(args) as s:
        if s.bundle.tokenizer.chat_template is None:
            raise ValueError("this bundle has no chat template; use `edgespec generate --raw`")
        history: list[dict[str, str]] = []
        if args.system:
            history.append({"role": "system", "content": args.system})
        print(
            "edgespec chat: /reset clears the history, /exit or Ctrl-D quits, "
            "Ctrl-C cancels an answer.",
            file=sys.stderr,
        )
        while True:
            try:
                line = input("> ")
            except EOFError:
                print(file=sys.stderr)
                return 0
            if line.strip() in ("/exit", "/quit"):
                return 0
            if line.strip() == "/reset":
                history = history[:1] if args.system else []
                continue
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            answer = _chat_turn(s, history, args)
            if answer is None:
                history.pop()
            else:
                history.append({"role": "assistant", "content": answer})


def _chat_turn(s: Any, history: list[dict[str, str]], args: argparse.Namespace) -> str | None:
    """Streams one answer; returns its text, or None when Ctrl-C cancelled it."""
    stream = s.generate(history, stream=True, **_gen_kwargs(args))
    parts: list[str] = []
    try:
        for delta in stream:
            parts.append(delta)
            sys.stdout.write(delta)
            sys.stdout.flush()
    except KeyboardInterrupt:
        stream.close()
        print("\n[cancelled]", file=sys.stderr)
        return None
    sys.stdout.write("\n")
    if args.stats and stream.result is not None:
        _print_stats(stream.result, sys.stderr)
    return "".join(parts)


def _cmd_info(args: argparse.Namespace) -> int:
    from .bundle import load_bundle

    b = load_bundle(args.bundle)
    models = {"target": b.target, **({"draft": b.draft} if b.draft else {})}
    models.update({"eagle": b.eagle} if b.eagle else {})
    info = {
        "bundle": str(b.root),
        "format_version": b.manifest.get("format_version"),
        "capacity": b.capacity,
        "drafters": ["none", "ngram"]
        + (["model"] if b.draft else [])
        + (["eagle"] if b.eagle else []),
        "chat_template": b.tokenizer.chat_template is not None,
        "eos_token_ids": list(b.tokenizer.eos_token_ids),
        "models": {
            role: {
                "architecture": m.architecture,
                "precision": m.precision,
                "layers": m.num_layers,
                "kv_heads": m.num_kv_heads,
                "head_dim": m.head_dim,
                "vocab_size": m.vocab_size,
                "capacity": m.capacity,
                "kv_dtype": m.kv_dtype,
                "attention": m.attention,
                "size_mb": round(m.file_bytes / 2**20, 1),
                "source": m.raw.get("source", ""),
            }
            for role, m in models.items()
        },
    }
    for role in ("draft", "eagle"):
        m = models.get(role)
        if m is not None and b.target.file_bytes:
            info[f"{role}_overhead"] = round(m.file_bytes / b.target.file_bytes, 3)
    if b.eagle:
        info["eagle_training"] = b.eagle.raw.get("training", {})
    if b.lookup:
        lk = b.lookup
        size = lk.path.stat().st_size
        info["lookup"] = {"entries": lk.entries, "n_min": lk.n_min, "n_max": lk.n_max,
                          "size_mb": round(size / 2**20, 1)}  # fmt: skip
        info["lookup_overhead"] = round(size / max(1, b.target.file_bytes), 3)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"bundle   {info['bundle']} (format v{info['format_version']})")
    print(f"capacity {info['capacity']} tokens; drafters: {', '.join(info['drafters'])}")
    for role, m in info["models"].items():
        print(
            f"{role:8} {m['architecture']} {m['precision']}, {m['layers']} layers, "
            f"{m['kv_heads']}x{m['head_dim']} KV ({m['kv_dtype']}), {m['attention']} attention, "
            f"vocab {m['vocab_size']}, "
            f"{m['size_mb']} MB  {m['source']}"
        )
    if "lookup" in info:
        lk = info["lookup"]
        print(
            f"lookup   n-gram table for drafting: {lk['entries']} entries, contexts of "
            f"{lk['n_min']}-{lk['n_max']} tokens, {lk['size_mb']} MB"
        )
    for role in ("draft", "eagle", "lookup"):
        if f"{role}_overhead" in info:
            print(f"{role:8} adds {info[f'{role}_overhead']:.1%} of the target's size on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
