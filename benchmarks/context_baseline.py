"""How predictable are a run's hidden tokens from their two neighbours? A ceiling-style check for the MLM.

    python benchmarks/context_baseline.py --run runs/demo
    python benchmarks/context_baseline.py --run runs/demo --positions 50000

A lookup table counted on the training chromosomes maps each (left token, right token) pair to the
commonest token between them; an unseen pair falls back to the commonest token overall (the
frequency baseline the model is scored against). Both predict held-out positions sampled at random
from the run's held-out chromosome. Positions are also split by whether their token starts in a
soft-masked (lower-case: repeat) base of the genome, so the figure shows where the signal lies.

This is what a masked LM seeing only its two neighbours could reach without generalising; a model
at the frequency baseline has not learned to use its context. Written to the
"## Masked-token baseline from neighbours" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _markdown import write_section  # noqa: E402 (benchmarks/ is on sys.path when a script runs)
from grover_core.genome import iter_fasta  # noqa: E402
from grover_core.pretrain import split_chromosomes  # noqa: E402
from grover_core.tokenized_genome import TokenizedGenome  # noqa: E402

SECTION = "## Masked-token baseline from neighbours"


def neighbour_lookup(arrays: list[np.ndarray], vocab: int) -> dict[int, int]:
    """Return ``left * vocab + right`` -> the commonest middle token, counted over ``arrays``."""
    keys = np.concatenate([(a[:-2].astype(np.int64) * vocab + a[2:]) * vocab + a[1:-1] for a in arrays])
    triples, counts = np.unique(keys, return_counts=True)
    pair, middle = np.divmod(triples, vocab)
    # Per pair, the middle with the largest count: sort by (pair, count) and keep each pair's last row.
    order = np.lexsort((counts, pair))
    last = np.r_[pair[order][1:] != pair[order][:-1], True]
    return dict(zip(pair[order][last].tolist(), middle[order][last].tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--positions", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    started = time.perf_counter()
    genome = TokenizedGenome.open(args.run / "tokenized")
    train, held = split_chromosomes(genome)
    arrays = [np.asarray(genome.ids(name)) for name in train]
    vocab = int(max(int(a.max()) for a in arrays + [np.asarray(genome.ids(held[0]))])) + 1
    table = neighbour_lookup(arrays, vocab)
    commonest = int(np.bincount(np.concatenate(arrays), minlength=vocab).argmax())

    fasta = json.loads((args.run / "manifest.json").read_text())["genome"]["fasta"]
    rows = []
    for name in held:
        ids, starts = np.asarray(genome.ids(name)), np.asarray(genome.starts(name))
        letters = np.frombuffer(dict(iter_fasta(fasta, chromosomes=[name]))[name], dtype=np.uint8)
        in_repeat = letters[starts] >= ord("a")
        rng = np.random.default_rng(args.seed)
        picked = rng.choice(np.arange(1, ids.size - 1), size=min(args.positions, ids.size - 2), replace=False)
        pairs = ids[picked - 1].astype(np.int64) * vocab + ids[picked + 1]
        lookup = np.array([table.get(p, commonest) for p in pairs.tolist()])
        for where, mask in (("all", np.ones(picked.size, bool)), ("repeats (soft-masked)", in_repeat[picked]),
                            ("elsewhere", ~in_repeat[picked])):
            truth = ids[picked][mask]
            rows.append((name, where, int(mask.sum()), float((truth == commonest).mean()),
                         float((lookup[mask] == truth).mean())))
    seconds = time.perf_counter() - started

    lines = [SECTION, "", f"`python benchmarks/context_baseline.py --run {args.run} --positions {args.positions}` "
             f"({len(table):,} neighbour pairs counted on {', '.join(train)}; {seconds:.0f} s).", "",
             "| held-out | positions | n | frequency baseline top-1 | neighbour lookup top-1 |", "|---|---|---|---|---|"]
    for name, where, n, base, look in rows:
        lines.append(f"| {name} | {where} | {n:,} | {base:.1%} | {look:.1%} |")
        print(f"{name} {where}: n={n} frequency baseline {base:.2%}, neighbour lookup {look:.2%}")
    write_section(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
