"""Byte-pair encoding of a genome, exactly as GROVER learns its vocabulary.

Start from the four nucleotides and repeat, for a number of cycles: count every adjacent pair of
tokens over the whole genome (a run AAA holds two AA pairs, as classic BPE counts), and merge the
most frequent pair into a new token, applied left to right without overlap (AAA -> AA A). Runs of N
(and any non-ACGT letter) are boundaries: no pair spans them.

Deterministic rules, so a vocabulary is reproducible:

* Ties between pairs of equal count go to the pair whose left token sorts first alphabetically,
  then whose right token does (e.g. (A, A) before (A, T) before (T, A)).
* A pair whose concatenation is already a token (e.g. A + AA when AA + A made AAA) is never merged;
  the next pair is taken. Every merge then adds exactly one new token, and a Hugging Face BPE
  tokenizer built from the merges segments any sequence exactly as this module does.
* Learning stops early when the best pair occurs fewer than ``min_pair_count`` times.

The learner keeps the genome as one array of token ids and updates pair counts incrementally: a merge
only touches the pairs next to its occurrences, so each cycle costs a scan of the array, not a
recount of every pair.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from grover_core.genome import NUCLEOTIDES, Segment

_SEPARATOR = -1  # marks a boundary between A/C/G/T runs inside the working array


@dataclass(frozen=True)
class BPEConfig:
    """Options of BPE learning (saved beside the vocabulary it made)."""

    cycles: int = 600  # merges to learn; GROVER chose 600 (400-800 scored best on next-k-mer)
    min_pair_count: int = 2  # stop when the most frequent pair is rarer than this


@dataclass
class BPEVocabulary:
    """A learned vocabulary: the four nucleotides, then one token per merge in the order learned."""

    merges: list[tuple[str, str]] = field(default_factory=list)
    merge_counts: list[int] = field(default_factory=list)  # genome-wide pair count when merged

    @property
    def tokens(self) -> list[str]:
        """Token strings by internal id: A, C, G, T, then each merge's concatenation."""
        return list(NUCLEOTIDES) + [left + right for left, right in self.merges]

    @property
    def cycles(self) -> int:
        return len(self.merges)

    def merge_table(self) -> np.ndarray:
        """Return ``[cycles, 3]`` int32 rows ``(left_id, right_id, new_id)`` in internal ids."""
        index = {token: i for i, token in enumerate(self.tokens)}
        rows = [(index[left], index[right], len(NUCLEOTIDES) + k) for k, (left, right) in enumerate(self.merges)]
        return np.asarray(rows, dtype=np.int32).reshape(-1, 3)

    def prefix(self, cycles: int) -> BPEVocabulary:
        """Return the vocabulary after the first ``cycles`` merges (merges are sequential)."""
        if cycles > self.cycles:
            raise ValueError(f"asked for {cycles} cycles but only {self.cycles} were learned")
        return BPEVocabulary(self.merges[:cycles], self.merge_counts[:cycles])


@dataclass(frozen=True)
class TokenizedSegment:
    """One A/C/G/T run as tokens: internal token ids and each token's start on the chromosome."""

    chromosome: str
    ids: np.ndarray  # int32 internal ids (0..3 nucleotides, 4.. merges)
    starts: np.ndarray  # int64 0-based chromosome position of each token's first nucleotide


def merge_occurrences(ids: np.ndarray, left: int, right: int) -> np.ndarray:
    """Return the positions where ``(left, right)`` is merged: left to right, without overlap.

    For ``left == right`` a run of n equal tokens holds n-1 overlapping pairs; merging left to right
    takes the 1st, 3rd, 5th ... of them (AAAA -> AA AA, AAA -> AA A).
    """
    hits = np.flatnonzero((ids[:-1] == left) & (ids[1:] == right))
    if left == right and hits.size > 1:
        new_run = np.empty(hits.size, dtype=bool)
        new_run[0] = True
        new_run[1:] = np.diff(hits) != 1
        run_first = np.flatnonzero(new_run)
        run_index = np.cumsum(new_run) - 1
        offset_in_run = np.arange(hits.size) - run_first[run_index]
        hits = hits[offset_in_run % 2 == 0]
    return hits


def _apply_merge(ids: np.ndarray, starts: np.ndarray | None, hits: np.ndarray, new_id: int):
    """Merge the pairs starting at ``hits`` into ``new_id``; return the shortened arrays."""
    ids[hits] = new_id
    keep = np.ones(ids.size, dtype=bool)
    keep[hits + 1] = False
    return ids[keep], (starts[keep] if starts is not None else None)


def encode_codes(codes: np.ndarray, merge_table: np.ndarray) -> np.ndarray:
    """Segment one A/C/G/T run (codes 0..3) by applying the merges in order; return internal ids.

    This is the segmentation the learner ends with, for any sequence: the reference the Hugging Face
    tokenizer is checked against.
    """
    ids = np.asarray(codes, dtype=np.int32).copy()
    for left, right, new_id in merge_table:
        if ids.size < 2:
            break
        hits = merge_occurrences(ids, left, right)
        if hits.size:
            ids, _ = _apply_merge(ids, None, hits, new_id)
    return ids


def _pair_codes(ids: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """Codes ``left * width + right`` of the pairs starting at ``at``, boundaries left out."""
    left = ids[at].astype(np.int64)
    right = ids[at + 1].astype(np.int64)
    valid = (left >= 0) & (right >= 0)
    return left[valid] * width + right[valid]


def _update_counts(counts: np.ndarray, ids: np.ndarray, at: np.ndarray, width: int, sign: int) -> None:
    """Add ``sign`` times the pairs starting at positions ``at`` (each position once) to ``counts``."""
    last = ids.size - 1
    at = at[(at >= 0) & (at < last)]
    # Neighbouring occurrences share pairs: count each position once. A mask beats sorting when
    # the early merges touch millions of positions.
    if at.size * 8 > last:
        mark = np.zeros(last, dtype=bool)
        mark[at] = True
        at = np.flatnonzero(mark)
    else:
        at = np.unique(at)
    codes = _pair_codes(ids, at, width)
    if codes.size * 4 > counts.size:
        counts += sign * np.bincount(codes, minlength=counts.size)
    else:
        unique_codes, how_many = np.unique(codes, return_counts=True)
        counts[unique_codes] += sign * how_many


def learn_bpe(
    segments: Iterable[Segment], *, config: BPEConfig = BPEConfig(), progress: bool = False
) -> tuple[BPEVocabulary, list[TokenizedSegment]]:
    """Learn BPE merges over all ``segments`` and return the vocabulary and the final segmentation.

    Returns
    -------
    vocabulary
        Merges in the order learned with their genome-wide pair counts.
    tokenized
        Every input segment as tokens (internal ids and chromosome starts), in input order: the
        segmentation the learning ends with, which ``encode_codes`` reproduces for each segment.
    """
    chromosomes: list[str] = []
    id_parts: list[np.ndarray] = []
    start_parts: list[np.ndarray] = []
    for segment in segments:
        chromosomes.append(segment.chromosome)
        id_parts += [segment.codes.astype(np.int32), np.array([_SEPARATOR], dtype=np.int32)]
        start_parts += [np.arange(segment.start, segment.start + segment.codes.size, dtype=np.int64),
                        np.array([-1], dtype=np.int64)]
    if not id_parts:
        raise ValueError("learn_bpe got no sequence")
    ids = np.concatenate(id_parts)
    starts = np.concatenate(start_parts)
    del id_parts, start_parts

    width = len(NUCLEOTIDES) + config.cycles  # ids never exceed this, so pair codes are unique
    counts = np.zeros(width * width, dtype=np.int64)
    _update_counts(counts, ids, np.arange(ids.size - 1), width, +1)
    blocked = np.zeros(width * width, dtype=bool)  # pairs whose concatenation is already a token

    vocabulary = BPEVocabulary()
    tokens = list(NUCLEOTIDES)
    known = set(tokens)
    bar = tqdm(total=config.cycles, desc="BPE merges", unit="merge", disable=not progress)
    while vocabulary.cycles < config.cycles:
        candidates = np.where(blocked, 0, counts)
        best_count = int(candidates.max())
        if best_count < max(config.min_pair_count, 1):
            break
        tied = np.flatnonzero(candidates == best_count)
        best = min(tied.tolist(), key=lambda code: (tokens[code // width], tokens[code % width]))
        left, right = divmod(best, width)
        merged = tokens[left] + tokens[right]
        if merged in known:
            blocked[best] = True
            continue
        new_id = len(tokens)
        hits = merge_occurrences(ids, left, right)
        # Only pairs touching a merged occurrence change: take them out, merge, put the new ones in.
        _update_counts(counts, ids, np.concatenate((hits - 1, hits, hits + 1)), width, -1)
        ids, starts = _apply_merge(ids, starts, hits, new_id)
        merged_at = hits - np.arange(hits.size)
        _update_counts(counts, ids, np.concatenate((merged_at - 1, merged_at)), width, +1)
        tokens.append(merged)
        known.add(merged)
        vocabulary.merges.append((tokens[left], tokens[right]))
        vocabulary.merge_counts.append(best_count)
        bar.update(1)
    bar.close()

    boundaries = np.flatnonzero(ids == _SEPARATOR)
    tokenized = []
    begin = 0
    for chromosome, end in zip(chromosomes, boundaries.tolist()):
        tokenized.append(TokenizedSegment(chromosome, ids[begin:end].copy(), starts[begin:end].copy()))
        begin = end + 1
    return vocabulary, tokenized
