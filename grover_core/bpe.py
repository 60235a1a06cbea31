"""Byte-pair encoding of a genome, exactly as GROVER learns its vocabulary, at genome scale.

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

How it scales: the genome is held as one compact array of token ids per chromosome (2 bytes per
nucleotide: uint16, with a separator value at every boundary), and pair counts live in a dense
``[tokens, tokens]`` matrix that is updated incrementally. A merge is one pass over the arrays
(compiled with numba, chromosomes spread over the CPU cores) that rewrites them in place and
records only the pair counts that change: those next to a merged occurrence. Memory is about
2 bytes per nucleotide plus 8 bytes per possible pair; time per merge is linear in the current
number of tokens.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numba
import numpy as np
from tqdm.auto import tqdm

from grover_core.genome import NUCLEOTIDES, Segment

# Added to the count of a pair that must never be merged again (its concatenation is a token):
# far below any real count, and incremental updates keep it there.
_BLOCKED = np.int64(1) << np.int64(52)


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
        """Return ``[cycles, 3]`` int64 rows ``(left_id, right_id, new_id)`` in internal ids."""
        index = {token: i for i, token in enumerate(self.tokens)}
        rows = [(index[left], index[right], len(NUCLEOTIDES) + k) for k, (left, right) in enumerate(self.merges)]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def prefix(self, cycles: int) -> BPEVocabulary:
        """Return the vocabulary after the first ``cycles`` merges (merges are sequential)."""
        if cycles > self.cycles:
            raise ValueError(f"asked for {cycles} cycles but only {self.cycles} were learned")
        return BPEVocabulary(self.merges[:cycles], self.merge_counts[:cycles])


@dataclass(frozen=True)
class TokenizedSegment:
    """One A/C/G/T run as tokens: internal token ids and each token's start on the chromosome."""

    chromosome: str
    ids: np.ndarray  # internal ids (0..3 nucleotides, 4.. merges)
    starts: np.ndarray  # int64 0-based chromosome position of each token's first nucleotide


# --- compiled kernels -------------------------------------------------------------------------

_BLOCK = 64  # elements tested for ``a`` at once in the merge pass

@numba.njit(cache=True, nogil=True)
def _merge_pass(ids, n, a, b, z, separator, left_of_a, right_of_b, left_of_z, right_of_z, use_blocks):
    """Merge every (a, b) in ``ids[:n]`` into z, left to right without overlap, in place.

    Returns ``(new_length, merged, ab_removed)``. The four delta vectors receive the pair-count
    changes: ``left_of_a[x]`` for pair (x, a), ``right_of_b[y]`` for (b, y), ``left_of_z[x]`` for
    (x, z) and ``right_of_z[y]`` for (z, y); ``ab_removed`` pairs (a, b) disappear. Each old pair is
    judged once, at its right element; each new pair once, when its right element is written.
    Between occurrences of ``a`` nothing changes, so those stretches are only moved (a tight copy).
    """
    r = 0
    w = 0
    merged = 0
    ab_removed = 0
    previous = separator  # old value at r - 1
    while r < n:
        v = ids[r]
        if v == a and r + 1 < n and ids[r + 1] == b:
            if r > 0 and previous != separator:
                left_of_a[previous] -= 1
            ab_removed += 1
            if w > 0 and ids[w - 1] != separator:
                left_of_z[ids[w - 1]] += 1
            ids[w] = z
            w += 1
            merged += 1
            previous = b
            r += 2
            if r >= n:
                break
            # The element right after an occurrence: pairs (b, v) go, (z, v) comes, unless v starts
            # another occurrence (then the hit branch above judges the pair).
            v = ids[r]
            if v == a and r + 1 < n and ids[r + 1] == b:
                continue
            if v != separator:
                right_of_b[v] -= 1
                right_of_z[v] += 1
        # An ordinary element, then the stretch up to the next ``a``, moved unchanged.
        ids[w] = v
        w += 1
        r += 1
        stretch_start = r
        while r < n:
            # When ``a`` is rare, whole blocks without it are skipped (or moved) at once: a branch-free
            # test the compiler vectorises, so late merges cost little more than a memory scan. When
            # ``a`` is common nearly every block holds one and the test would only add work.
            if use_blocks and r + _BLOCK <= n:
                found = False
                for i in range(_BLOCK):
                    found |= ids[r + i] == a
                if not found:
                    if w != r:
                        for i in range(_BLOCK):
                            ids[w + i] = ids[r + i]
                    r += _BLOCK
                    w += _BLOCK
                    continue
            while r < n and ids[r] != a:
                ids[w] = ids[r]
                w += 1
                r += 1
            break
        # Moving only writes below r, so ids[r - 1] still holds the old value.
        previous = ids[r - 1] if r > stretch_start else v
    return w, merged, ab_removed


@numba.njit(cache=True, parallel=True)
def _merge_all(arrays, lengths, a, b, z, separator, deltas, removed, use_blocks):
    """Run ``_merge_pass`` on every chromosome array in parallel; per-array deltas, summed by the caller."""
    total = 0
    for p in numba.prange(len(arrays)):
        c = np.int64(p)  # prange indices are unsigned; keep index arithmetic signed
        new_length, merged, ab_removed = _merge_pass(arrays[c], lengths[c], a, b, z, separator,
                                                     deltas[c, 0], deltas[c, 1], deltas[c, 2], deltas[c, 3],
                                                     use_blocks)
        lengths[c] = new_length
        removed[c] = ab_removed
        total += merged
    return total


@numba.njit(cache=True, nogil=True)
def _count_pairs(ids, n, separator, counts):
    for i in range(n - 1):
        left = ids[i]
        right = ids[i + 1]
        if left != separator and right != separator:
            counts[left, right] += 1


@numba.njit(cache=True, nogil=True)
def _row_max(counts, row, tokens):
    best = np.int64(0)
    for j in range(tokens):
        if counts[row, j] > best:
            best = counts[row, j]
    return best


@numba.njit(cache=True, nogil=True)
def _best_pairs(counts, row_max, tokens):
    """Return the highest count over the live ``[tokens, tokens]`` block and every pair that has it.

    ``row_max`` holds each row's maximum, so only the rows holding the best count are scanned.
    """
    best = np.int64(0)
    for i in range(tokens):
        if row_max[i] > best:
            best = row_max[i]
    rows = []
    cols = []
    if best > 0:
        for i in range(tokens):
            if row_max[i] == best:
                for j in range(tokens):
                    if counts[i, j] == best:
                        rows.append(i)
                        cols.append(j)
    return best, rows, cols


@numba.njit(cache=True, nogil=True)
def _refresh_row_max(counts, row_max, tokens, a, b, z, column_a_change):
    """Bring ``row_max`` up to date after a merge changed column a, row b, column z, row z and (a, b)."""
    for x in range(tokens):
        if column_a_change[x] != 0 and counts[x, a] - column_a_change[x] >= row_max[x]:
            row_max[x] = _row_max(counts, x, tokens)  # the row's maximum may have been at a
        if counts[x, z] > row_max[x]:
            row_max[x] = counts[x, z]
    row_max[a] = _row_max(counts, a, tokens)
    row_max[b] = _row_max(counts, b, tokens)
    row_max[z] = _row_max(counts, z, tokens)


@numba.njit(cache=True, nogil=True)
def _apply_pass(ids, n, a, b, z):
    """Merge (a, b) into z left to right without overlap in ``ids[:n]``; return the new length."""
    r = 0
    w = 0
    while r < n:
        if ids[r] == a and r + 1 < n and ids[r + 1] == b:
            ids[w] = z
            r += 2
        else:
            ids[w] = ids[r]
            r += 1
        w += 1
    return w


@numba.njit(cache=True, nogil=True)
def _encode(ids, merge_table):
    n = ids.shape[0]
    for k in range(merge_table.shape[0]):
        if n < 2:
            break
        n = _apply_pass(ids, n, merge_table[k, 0], merge_table[k, 1], merge_table[k, 2])
    return n


def encode_codes(codes: np.ndarray, merge_table: np.ndarray) -> np.ndarray:
    """Segment one A/C/G/T run (codes 0..3) by applying the merges in order; return internal ids (int64).

    This is the segmentation the learner ends with, for any sequence: the reference the Hugging Face
    tokenizer is checked against, and the encoder ``grover tokenize`` uses.
    """
    ids = np.asarray(codes, dtype=np.int64).copy()
    n = _encode(ids, np.ascontiguousarray(merge_table, dtype=np.int64).reshape(-1, 3))
    return ids[:n]


# --- the learner ------------------------------------------------------------------------------

def _id_dtype(max_tokens: int) -> np.dtype:
    """uint16 while token ids and the separator fit (up to 65,534 tokens), else uint32."""
    return np.dtype(np.uint16) if max_tokens < np.iinfo(np.uint16).max else np.dtype(np.uint32)


class BPELearner:
    """Holds a genome as token-id arrays and learns BPE merges on it.

    >>> from grover_core.genome import encode_nucleotides
    >>> learner = BPELearner.from_segments([Segment("c", 0, encode_nucleotides("AAAAC"))], max_cycles=2)
    >>> learner.learn(BPEConfig(cycles=2, min_pair_count=1)).merges
    [('A', 'A'), ('AA', 'AA')]
    """

    def __init__(self, max_cycles: int):
        self.max_tokens = len(NUCLEOTIDES) + max_cycles
        self.dtype = _id_dtype(self.max_tokens)
        self.separator = int(np.iinfo(self.dtype).max)
        self.names: list[str] = []
        self.arrays: list[np.ndarray] = []
        self.lengths = np.zeros(0, dtype=np.int64)
        self.segments: list[list[tuple[int, int]]] = []  # per array: (chromosome start, nucleotides)
        self.vocabulary = BPEVocabulary()

    @classmethod
    def from_segments(cls, segments: Iterable[Segment], *, max_cycles: int) -> BPELearner:
        """Pack A/C/G/T runs (grouped by chromosome, in order) into one id array per chromosome."""
        learner = cls(max_cycles)
        current: str | None = None
        pending: list[Segment] = []
        lengths = []
        for segment in segments:
            if segment.chromosome != current and pending:
                lengths.append(learner._pack(pending))
                pending = []
            current = segment.chromosome
            pending.append(segment)
        if pending:
            lengths.append(learner._pack(pending))
        if not learner.arrays:
            raise ValueError("learn_bpe got no sequence")
        learner.lengths = np.asarray(lengths, dtype=np.int64)
        return learner

    def _pack(self, segments: list[Segment]) -> int:
        size = sum(s.codes.size + 1 for s in segments)
        ids = np.empty(size, dtype=self.dtype)
        at = 0
        for s in segments:
            ids[at:at + s.codes.size] = s.codes
            ids[at + s.codes.size] = self.separator
            at += s.codes.size + 1
        self.names.append(segments[0].chromosome)
        self.arrays.append(ids)
        self.segments.append([(s.start, int(s.codes.size)) for s in segments])
        return size

    @property
    def total_tokens(self) -> int:
        """Tokens now in the genome (separators excluded)."""
        return int(self.lengths.sum()) - sum(len(s) for s in self.segments)

    def learn(self, config: BPEConfig, *, progress: bool = False) -> BPEVocabulary:
        """Learn up to ``config.cycles`` merges; return the vocabulary (also kept on the learner)."""
        if len(NUCLEOTIDES) + config.cycles > self.max_tokens:
            raise ValueError(f"this learner was packed for at most {self.max_tokens - 4} cycles")
        width = self.max_tokens
        counts = np.zeros((width, width), dtype=np.int64)
        for ids, n in zip(self.arrays, self.lengths):
            _count_pairs(ids, n, self.separator, counts)

        # Largest chromosomes first, handed to the cores one at a time, keeps the cores equally busy.
        order = np.argsort([-a.size for a in self.arrays], kind="stable")
        arrays = numba.typed.List([self.arrays[i] for i in order])
        lengths = self.lengths[order].copy()
        deltas = np.zeros((len(arrays), 4, width), dtype=np.int64)
        removed = np.zeros(len(arrays), dtype=np.int64)

        tokens = list(NUCLEOTIDES)
        known = set(tokens)
        occurrences = np.zeros(width, dtype=np.int64)  # of each token, to judge how rare ``a`` is
        for ids, n in zip(self.arrays, self.lengths):
            for code in range(len(NUCLEOTIDES)):  # comparisons only: no wide temporary arrays
                occurrences[code] += np.count_nonzero(ids[:n] == code)
        row_max = np.zeros(width, dtype=np.int64)
        for row in range(len(tokens)):
            row_max[row] = _row_max(counts, row, len(tokens))
        vocabulary = BPEVocabulary()
        bar = tqdm(total=config.cycles, desc="BPE merges", unit="merge", disable=not progress)
        while vocabulary.cycles < config.cycles:
            best, rows, cols = _best_pairs(counts, row_max, len(tokens))
            if best < max(config.min_pair_count, 1):
                break
            a, b = min(zip(rows, cols), key=lambda pair: (tokens[pair[0]], tokens[pair[1]]))
            merged_token = tokens[a] + tokens[b]
            if merged_token in known:
                counts[a, b] -= _BLOCKED
                row_max[a] = _row_max(counts, a, len(tokens))
                continue
            z = len(tokens)
            deltas[:] = 0
            rare = occurrences[a] * _BLOCK * 4 < lengths.sum()
            with numba.parallel_chunksize(1):
                merged = _merge_all(arrays, lengths, a, b, z, self.separator, deltas, removed, rare)
            occurrences[a] -= merged
            occurrences[b] -= merged
            occurrences[z] += merged
            change = deltas.sum(axis=0)
            counts[:, a] += change[0]
            counts[b, :] += change[1]
            counts[:, z] += change[2]
            counts[z, :] += change[3]
            counts[a, b] -= removed.sum()
            tokens.append(merged_token)
            _refresh_row_max(counts, row_max, len(tokens), a, b, z, change[0])
            known.add(merged_token)
            vocabulary.merges.append((tokens[a], tokens[b]))
            vocabulary.merge_counts.append(int(best))
            bar.update(1)
        bar.close()
        self.lengths[order] = lengths
        self.vocabulary = vocabulary
        return vocabulary

    def _chromosome_tokens(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return internal ids, nucleotide starts and segment number of every token of one array."""
        ids = self.arrays[index][: self.lengths[index]]
        separators = ids == self.separator
        token_lengths = np.array([len(t) for t in self.vocabulary.tokens], dtype=np.int64)
        lengths = np.where(separators, 0, token_lengths[np.where(separators, 0, ids)])
        segment = np.cumsum(separators) - separators  # the separator closes its segment
        # Start = the segment's chromosome start + the lengths of the segment's earlier tokens.
        before = np.cumsum(lengths) - lengths
        first_of_segment = np.concatenate(([0], np.flatnonzero(separators)[:-1] + 1))
        base = np.array([start for start, _ in self.segments[index]], dtype=np.int64)
        starts = base[segment] + before - before[first_of_segment][segment]
        keep = ~separators
        return ids[keep].astype(np.int64), starts[keep], segment[keep]

    def iter_chromosomes(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(chromosome, ids, starts)`` per chromosome: internal ids and nucleotide starts."""
        for index, name in enumerate(self.names):
            ids, starts, _ = self._chromosome_tokens(index)
            yield name, ids, starts

    def iter_segments(self) -> Iterator[TokenizedSegment]:
        """Yield every input segment as tokens, in input order."""
        for index, name in enumerate(self.names):
            ids, starts, segment = self._chromosome_tokens(index)
            cuts = np.flatnonzero(np.diff(segment)) + 1
            for part_ids, part_starts in zip(np.split(ids, cuts), np.split(starts, cuts)):
                yield TokenizedSegment(name, part_ids, part_starts)


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
        For whole genomes use ``BPELearner`` directly and stream ``iter_chromosomes`` instead.
    """
    learner = BPELearner.from_segments(segments, max_cycles=config.cycles)
    vocabulary = learner.learn(config, progress=progress)
    return vocabulary, list(learner.iter_segments())
