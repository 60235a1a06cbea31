"""The tokenized genome: every chromosome as a compact, memory-mapped array of token ids.

Folder layout::

    index.json              chromosomes, tokens per chromosome, dtypes, vocabulary size
    <chrom>.ids.npy         token ids (tokenizer ids, uint16 when the vocabulary fits)
    <chrom>.starts.npy      0-based chromosome position of each token's first nucleotide (uint32/int64)

Windows of tokens are cut without re-tokenizing, and every token maps back to genome coordinates.
Tokens of one chromosome are in genome order; an N run shows as a jump between one token's end and
the next token's start.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grover_core.atomic import atomic_path

if TYPE_CHECKING:  # reading a tokenized genome must stay light (the dashboard does): bpe pulls in numba
    from grover_core.bpe import TokenizedSegment

INDEX = "index.json"


def _dtype_for(max_value: int) -> np.dtype:
    for dtype in (np.uint16, np.uint32, np.int64):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"value {max_value} too large")


def write_tokenized_chromosomes(
    out_dir: str | os.PathLike, chromosomes: Iterable[tuple[str, np.ndarray, np.ndarray]], *, id_offset: int,
    vocab_size: int,
) -> Path:
    """Write ``(chromosome, ids, starts)`` items, one chromosome in memory at a time; return the folder.

    ``id_offset`` is added to the ids to give tokenizer ids (the number of special tokens placed
    before the nucleotides; 0 when the ids already are tokenizer ids). The folder appears under its
    final name only when complete.
    """
    id_dtype = _dtype_for(vocab_size - 1)
    index = {"vocab_size": vocab_size, "id_dtype": id_dtype.name, "chromosomes": {}}
    with atomic_path(out_dir, is_dir=True) as tmp:
        for chromosome, ids, starts in chromosomes:
            if chromosome in index["chromosomes"]:
                raise ValueError(f"chromosome {chromosome!r} given twice")
            chrom_ids = (np.asarray(ids, dtype=np.int64) + id_offset).astype(id_dtype)
            chrom_starts = np.asarray(starts)
            np.save(tmp / f"{chromosome}.ids.npy", chrom_ids)
            np.save(tmp / f"{chromosome}.starts.npy", chrom_starts.astype(_dtype_for(int(chrom_starts.max(initial=0)))))
            index["chromosomes"][chromosome] = {"tokens": int(chrom_ids.size)}
        (tmp / INDEX).write_text(json.dumps(index, indent=2))
    return Path(out_dir)


def write_tokenized_genome(
    out_dir: str | os.PathLike, segments: Iterable[TokenizedSegment], *, id_offset: int, vocab_size: int
) -> Path:
    """Write tokenized segments (grouped per chromosome, in order) as a tokenized-genome folder.

    Collects each chromosome's segments in memory; whole genomes should stream chromosomes through
    ``write_tokenized_chromosomes`` instead.
    """
    by_chromosome: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for segment in segments:
        ids, starts = by_chromosome.setdefault(segment.chromosome, ([], []))
        ids.append(segment.ids)
        starts.append(segment.starts)
    return write_tokenized_chromosomes(
        out_dir, ((name, np.concatenate(ids), np.concatenate(starts)) for name, (ids, starts) in by_chromosome.items()),
        id_offset=id_offset, vocab_size=vocab_size)


@dataclass(frozen=True)
class TokenizedGenome:
    """Read access to a tokenized-genome folder; arrays are memory-mapped, not loaded."""

    path: Path
    vocab_size: int
    tokens_per_chromosome: dict[str, int]

    @classmethod
    def open(cls, path: str | os.PathLike) -> TokenizedGenome:
        path = Path(path)
        index = json.loads((path / INDEX).read_text())
        counts = {name: info["tokens"] for name, info in index["chromosomes"].items()}
        return cls(path, int(index["vocab_size"]), counts)

    @property
    def chromosomes(self) -> list[str]:
        return list(self.tokens_per_chromosome)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens_per_chromosome.values())

    def ids(self, chromosome: str) -> np.ndarray:
        """Token ids of one chromosome (memory-mapped)."""
        return np.load(self.path / f"{chromosome}.ids.npy", mmap_mode="r")

    def starts(self, chromosome: str) -> np.ndarray:
        """Chromosome start of each token of one chromosome (memory-mapped)."""
        return np.load(self.path / f"{chromosome}.starts.npy", mmap_mode="r")

    def token_counts(self, *, chromosomes: Iterable[str] | None = None) -> np.ndarray:
        """Return occurrences of every token id (length ``vocab_size``) over the chosen chromosomes."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for chromosome in chromosomes if chromosomes is not None else self.chromosomes:
            counts += np.bincount(self.ids(chromosome), minlength=self.vocab_size)
        return counts
