"""Time a forward of width w at a fixed context for two bundles of the same model, interleaved.

For comparing attention ops (`edgespec export --attention gqa` vs `edgespec`) or any two exports
of one target: both decoders prefill the same context, then each round times `--reps` calls per
width and bundle, alternating. Prints median milliseconds and B/A per width, a chunked prefill of
the context, and whether a `--check`-token step gives bit-identical logits as one call and as
one-token calls (the width invariance verification relies on).

    python tools/bench_attention.py models/smollm2-135m-gqa models/smollm2-135m --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _decoder(bundle: Path, threads: int):
    from edgespec.export.verify import SharedKVDecoder

    entry = json.loads((bundle / "edgespec.json").read_text())["models"]["target"]
    return SharedKVDecoder(bundle / entry["path"], entry, threads=threads), entry


def _prefill(dec, ids: list[int], chunk: int) -> float:
    t = time.perf_counter()
    for start in range(0, len(ids), chunk):
        dec.forward(ids[start : start + chunk], start, keep=1)
    return time.perf_counter() - t


def _width_invariant(bundle: Path, ids: list[int], n: int) -> bool:
    """Logits of n tokens after ids: one n-token call vs n one-token calls, bit for bit."""
    runs = []
    for widths in ([n], [1] * n):
        dec, _ = _decoder(bundle, 1)
        dec.forward(ids, 0, keep=1)
        new, pos, rows = list(range(7, 7 + n)), len(ids), []  # the same n tokens both ways
        for w in widths:
            rows.append(dec.forward(new[pos - len(ids) : pos - len(ids) + w], pos))
            pos += w
        runs.append(np.concatenate(rows))
    return bool(np.array_equal(runs[0], runs[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle_a", type=Path)
    p.add_argument("bundle_b", type=Path)
    p.add_argument("--context", type=int, default=700, help="tokens before the timed calls")
    p.add_argument("--widths", default="1,2,3,5,9", help="forward widths to time")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--reps", type=int, default=5, help="calls per width, bundle and round")
    p.add_argument("--chunk", type=int, default=256, help="prefill chunk for the prefill timing")
    p.add_argument("--check", type=int, default=5, help="width of the invariance check (0: off)")
    args = p.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    (a, entry), (b, _) = (_decoder(x, args.threads) for x in (args.bundle_a, args.bundle_b))
    rng = np.random.default_rng(0)
    ids = rng.integers(3, min(5000, entry["vocab_size"]), args.context + max(widths)).tolist()
    pre = {"A": [], "B": []}
    for _ in range(3):
        for name, dec in (("A", a), ("B", b)):
            pre[name].append(_prefill(dec, ids[: args.context], args.chunk))
    times = {(name, w): [] for name in "AB" for w in widths}
    for r in range(args.rounds):
        for w in widths:
            for name, dec in (("A", a), ("B", b)) if r % 2 == 0 else (("B", b), ("A", a)):
                for _ in range(args.reps):
                    t = time.perf_counter()
                    dec.forward(ids[args.context : args.context + w], args.context)
                    times[name, w].append(time.perf_counter() - t)
    print(
        f"A = {args.bundle_a}, B = {args.bundle_b}; context {args.context}, {args.threads} threads"
    )
    for w in widths:
        ma, mb = (1e3 * statistics.median(times[n, w]) for n in "AB")
        print(f"width {w}: A {ma:.2f} ms, B {mb:.2f} ms, B/A {mb / ma:.3f}")
    pa, pb = (1e3 * statistics.median(pre[n]) for n in "AB")
    print(f"prefill {args.context} in {args.chunk}-chunks: A {pa:.0f} ms, B {pb:.0f} ms, "
          f"B/A {pb / pa:.3f}")  # fmt: skip
    if args.check:
        for name, bundle in (("A", args.bundle_a), ("B", args.bundle_b)):
            same = _width_invariant(bundle, ids[:35], args.check)
            print(f"{name}: {args.check} tokens in one call vs one at a time: "
                  f"{'bit-identical' if same else 'differ'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
