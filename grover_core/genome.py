"""Reading genomes: FASTA (plain or gzip), one record at a time, split into runs of A/C/G/T.

GROVER uses only A, C, G and T. Every other letter (N runs, IUPAC codes) is a boundary that no token
crosses; lower case (soft-masked repeats) counts as upper case.
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grover_core.errors import GroverInputError

NUCLEOTIDES = "ACGT"
#: Code for a letter that is not A/C/G/T (a boundary).
NOT_ACGT = 255

# Byte -> nucleotide code (A=0, C=1, G=2, T=3, anything else NOT_ACGT), case-insensitive.
_CODE_OF_BYTE = np.full(256, NOT_ACGT, dtype=np.uint8)
for _code, _letter in enumerate(NUCLEOTIDES):
    _CODE_OF_BYTE[ord(_letter)] = _code
    _CODE_OF_BYTE[ord(_letter.lower())] = _code


@dataclass
class GenomeStats:
    """What reading a genome saw: nucleotides kept and boundaries, per chromosome."""

    chromosome_lengths: dict[str, int] = field(default_factory=dict)
    acgt_nucleotides: int = 0
    other_nucleotides: int = 0  # N and IUPAC codes: boundaries, never inside a token
    gc_nucleotides: int = 0
    segments: int = 0  # runs of A/C/G/T

    @property
    def gc_fraction(self) -> float:
        return self.gc_nucleotides / self.acgt_nucleotides if self.acgt_nucleotides else 0.0

    def as_dict(self) -> dict:
        return {
            "chromosomes": dict(self.chromosome_lengths),
            "acgt_nucleotides": self.acgt_nucleotides,
            "other_nucleotides": self.other_nucleotides,
            "gc_fraction": round(self.gc_fraction, 6),
            "acgt_segments": self.segments,
        }


def _open_text(path: Path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_fasta(path: str | os.PathLike, *, chromosomes: set[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, sequence)`` for each FASTA record, one record in memory at a time.

    ``name`` is the header up to the first white space; ``sequence`` is the raw bytes (case kept).
    Only records named in ``chromosomes`` are yielded when it is given.

    Raises
    ------
    GroverInputError
        When the file is missing, empty, or not FASTA.
    """
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"genome file not found: {path}. Give the path of a FASTA file (.fa, .fa.gz).")
    name: str | None = None
    chunks: list[bytes] = []
    seen_header = False
    with _open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(b">"):
                if name is not None and (chromosomes is None or name in chromosomes):
                    yield name, b"".join(chunks)
                parts = line[1:].split()
                if not parts:
                    raise GroverInputError(f"{path}: line {line_number} is a FASTA header without a name.")
                name = parts[0].decode("ascii", errors="replace")
                chunks = []
                seen_header = True
            elif not seen_header:
                raise GroverInputError(
                    f"{path} is not a FASTA file: line {line_number} comes before any '>' header. "
                    "Give a FASTA genome (records starting with '>name')."
                )
            elif name is not None and (chromosomes is None or name in chromosomes):
                if b"\x00" in line:
                    raise GroverInputError(f"{path} is not a FASTA file: binary data on line {line_number}.")
                chunks.append(line)
    if not seen_header:
        raise GroverInputError(f"{path} is empty or not a FASTA file: no '>' header found.")
    if name is not None and (chromosomes is None or name in chromosomes):
        yield name, b"".join(chunks)


def encode_nucleotides(sequence: bytes | str) -> np.ndarray:
    """Return the sequence as uint8 codes (A=0, C=1, G=2, T=3, other letters ``NOT_ACGT``), case-insensitive."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii", errors="replace")
    return _CODE_OF_BYTE[np.frombuffer(sequence, dtype=np.uint8)]


def acgt_runs(codes: np.ndarray) -> list[tuple[int, int]]:
    """Return the ``(start, end)`` half-open intervals of maximal A/C/G/T runs in a code array."""
    is_acgt = np.concatenate(([False], codes != NOT_ACGT, [False]))
    edges = np.flatnonzero(is_acgt[1:] != is_acgt[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


@dataclass(frozen=True)
class Segment:
    """A maximal run of A/C/G/T on one chromosome: nucleotide codes and where they sit."""

    chromosome: str
    start: int  # 0-based position of codes[0] on the chromosome
    codes: np.ndarray  # uint8, values 0..3


def iter_segments(
    path: str | os.PathLike, *, chromosomes: set[str] | None = None, stats: GenomeStats | None = None
) -> Iterator[Segment]:
    """Yield every A/C/G/T run of the genome in file order, updating ``stats`` when given.

    Raises ``GroverInputError`` when the genome holds no A/C/G/T at all.
    """
    stats = stats if stats is not None else GenomeStats()
    for name, sequence in iter_fasta(path, chromosomes=chromosomes):
        codes = encode_nucleotides(sequence)
        stats.chromosome_lengths[name] = int(codes.size)
        runs = acgt_runs(codes)
        for start, end in runs:
            run = codes[start:end]
            stats.acgt_nucleotides += int(run.size)
            stats.gc_nucleotides += int(np.count_nonzero((run == 1) | (run == 2)))
            stats.segments += 1
            yield Segment(name, start, run)
        stats.other_nucleotides += int(codes.size) - sum(end - start for start, end in runs)
    if stats.acgt_nucleotides == 0:
        where = f" in chromosomes {sorted(chromosomes)}" if chromosomes else ""
        raise GroverInputError(
            f"{path}: the genome holds no A/C/G/T nucleotides{where} (empty, or only N). Give a genome with sequence."
        )
