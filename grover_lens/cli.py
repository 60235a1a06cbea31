"""The ``grover`` command.

    grover demo-genome --out data/demo_genome      write the synthetic demo genome and annotations
    grover demo --out runs/demo                    build the built-in demo run (genome if missing)
    grover build genome.fa --out runs/mine         build a run from any FASTA genome
    grover vocab learn genome.fa --cycles 100 600 --out vocabularies/
                                                   learn BPE once, export each cycle count

Bad input ends with one line naming the problem (exit status 2), not a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from grover_core.errors import GroverInputError

DEFAULT_GENOME_DIR = Path("data/demo_genome")


def _cmd_demo_genome(args) -> None:
    from grover_core.demo_genome import DemoGenomeConfig, write_demo_genome

    config = DemoGenomeConfig.tiny(seed=args.seed) if args.tiny else DemoGenomeConfig(seed=args.seed)
    paths = write_demo_genome(args.out, config=config)
    for kind, path in paths.items():
        print(f"{kind:20s} {path}")


def _cmd_demo(args) -> None:
    from grover_lens.pipeline import DemoConfig, build_demo

    config = DemoConfig.tiny() if args.tiny else DemoConfig()
    if args.seed is not None:
        config = dataclasses.replace(config, genome=dataclasses.replace(config.genome, seed=args.seed))
    out = build_demo(args.out, genome_dir=args.genome_dir, config=config, progress=not args.quiet)
    print(f"demo run written to {out}")


def _cmd_build(args) -> None:
    from grover_lens.pipeline import RunConfig, build_run

    _require_file(args.fasta)
    config = RunConfig.tiny() if args.tiny else RunConfig()
    if args.cycles is not None:
        config = dataclasses.replace(config, bpe=dataclasses.replace(config.bpe, cycles=args.cycles))
    out = build_run(args.fasta, args.out, config=config, progress=not args.quiet)
    print(f"run written to {out}")


def _cmd_vocab_learn(args) -> None:
    from grover_core.bpe import BPEConfig, learn_bpe
    from grover_core.genome import GenomeStats, iter_segments
    from grover_core.tokenizer import build_bpe_tokenizer, save_tokenizer

    _require_file(args.fasta)
    cycles = sorted(set(args.cycles))
    if cycles[0] < 1:
        raise GroverInputError(f"--cycles must be positive whole numbers, got {cycles[0]}.")
    stats = GenomeStats()
    chromosomes = set(args.chromosomes) if args.chromosomes else None
    vocabulary, _ = learn_bpe(iter_segments(args.fasta, chromosomes=chromosomes, stats=stats),
                              config=BPEConfig(cycles=cycles[-1]), progress=not args.quiet)
    for count in cycles:
        if count > vocabulary.cycles:
            print(f"only {vocabulary.cycles} merges were possible; skipping {count} cycles", file=sys.stderr)
            continue
        prefix = vocabulary.prefix(count)
        out = save_tokenizer(build_bpe_tokenizer(prefix), Path(args.out) / f"bpe_{count}", extra={
            "kind": "bpe", "cycles": count, "merges": [list(m) for m in prefix.merges],
            "merge_counts": prefix.merge_counts, "genome": str(args.fasta), "genome_stats": stats.as_dict()})
        print(f"bpe {count:>5} cycles -> {out}")


def _require_file(path: str) -> None:
    if not Path(path).is_file():
        raise GroverInputError(f"genome file not found: {path}. Give the path of a FASTA file (.fa, .fa.gz).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grover", description="GROVER Lens: DNA language models, looked inside.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-genome", help="write the synthetic demo genome and its annotations")
    p.add_argument("--out", default=str(DEFAULT_GENOME_DIR), help="folder to write (default %(default)s)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--tiny", action="store_true", help="a ~300 kb genome for tests")
    p.set_defaults(run=_cmd_demo_genome)

    p = sub.add_parser("demo", help="build the built-in demo run (vocabulary, model, analyses)")
    p.add_argument("--out", default="runs/demo", help="run folder to write (default %(default)s)")
    p.add_argument("--genome-dir", default=str(DEFAULT_GENOME_DIR),
                   help="where the demo genome lives; written there when missing (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="demo genome seed")
    p.add_argument("--tiny", action="store_true", help="seconds-scale settings (tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_demo)

    p = sub.add_parser("build", help="build a run from a FASTA genome")
    p.add_argument("fasta")
    p.add_argument("--out", required=True)
    p.add_argument("--cycles", type=int, default=None, help="BPE cycles (default 600)")
    p.add_argument("--tiny", action="store_true", help="seconds-scale settings")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_build)

    vocab = sub.add_parser("vocab", help="vocabularies").add_subparsers(dest="vocab_command", required=True)
    p = vocab.add_parser("learn", help="learn BPE once and export a tokenizer per cycle count")
    p.add_argument("fasta")
    p.add_argument("--cycles", type=int, nargs="+", default=[600])
    p.add_argument("--chromosomes", nargs="+", default=None, help="only these records of the FASTA")
    p.add_argument("--out", default="vocabularies")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_cmd_vocab_learn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (GroverInputError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"grover: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grover: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
