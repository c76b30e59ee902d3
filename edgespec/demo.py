"""`make demo`: answer real prompts with speculative decoding, next to plain decoding.

    python -m edgespec.demo BUNDLE

For each prompt: the speculative answer streams to the terminal, then the same prompt runs with
plain decoding (`drafter="none"`) in the same process, and the speedup is printed.
"""

from __future__ import annotations

import sys

from .session import Session

PASSAGE = (
    "The Great Barrier Reef is the world's largest coral reef system, composed of over 2,900 "
    "individual reefs and 900 islands stretching for over 2,300 kilometres over an area of "
    "approximately 344,400 square kilometres. The reef is located in the Coral Sea, off the "
    "coast of Queensland, Australia. The Great Barrier Reef can be seen from outer space and is "
    "the world's biggest single structure made by living organisms. This reef structure is "
    "composed of and built by billions of tiny organisms, known as coral polyps. It supports a "
    "wide diversity of life and was selected as a World Heritage Site in 1981. The reef is under "
    "threat from climate change, which causes mass coral bleaching, and from pollution and "
    "crown-of-thorns starfish outbreaks."
)

PROMPTS = [
    ("chat", "What is the capital of France? Answer in two sentences."),
    ("summarization", f"Summarize the following passage in three sentences.\n\n{PASSAGE}"),
]


def run_demo(bundle: str, max_new_tokens: int = 160) -> int:
    with Session(bundle) as s:
        warm = [{"role": "user", "content": "Hello"}]
        s.generate(warm, max_new_tokens=8, drafter="none")  # warm-up: first-run costs stay out
        print(
            f"edgespec demo: {bundle} (capacity {s.capacity}, drafter auto = "
            f"{s.resolve_drafter('auto')})\n"
        )
        for kind, text in PROMPTS:
            messages = [{"role": "user", "content": text}]
            print(f"### {kind}: {text[:90]}{'...' if len(text) > 90 else ''}")
            stream = s.generate(messages, max_new_tokens=max_new_tokens, stream=True)
            for delta in stream:
                sys.stdout.write(delta)
                sys.stdout.flush()
            spec = stream.result
            plain = s.generate(messages, max_new_tokens=max_new_tokens, drafter="none")
            assert spec is not None
            same = "identical" if plain.tokens == spec.tokens else "DIFFERENT"
            ratio = spec.stats.tokens_per_s / max(plain.stats.tokens_per_s, 1e-9)
            print(
                f"\n--> speculative ({spec.stats.drafter}): {spec.stats.tokens_per_s:.1f} tok/s | "
                f"plain: {plain.stats.tokens_per_s:.1f} tok/s | speedup {ratio:.2f}x | "
                f"acceptance {spec.stats.acceptance_rate:.0%} "
                f"({spec.stats.mean_accepted_tokens:.2f} tokens/step) | output {same} "
                f"to plain decoding\n"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgespec.demo BUNDLE", file=sys.stderr)
        return 2
    return run_demo(argv[0])


if __name__ == "__main__":
    sys.exit(main())
