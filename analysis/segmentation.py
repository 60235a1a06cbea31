"""How vocabularies cut the same DNA: token spans, shared boundaries, compression, token lengths.

``analysis.vocabulary`` describes each vocabulary on its own (what tokens it holds, how often the
genome uses them). This module puts several vocabularies on the same nucleotides: a BPE vocabulary,
k-mer baselines, the published GROVER tokenizer.

* ``segment`` / ``segment_with_each``: one row per token with its nucleotide span, for one or several
  tokenizers (blocks aligned on the sequence, ready to draw).
* ``token_boundaries`` / ``boundary_agreement``: where two segmentations cut the sequence, and how
  often they cut at the same place.
* ``segmentation_summary`` / ``pairwise_boundary_agreement``: the same numbers over many regions.
* ``length_distribution``: tokens per length in each vocabulary, and their share of the genome.
* ``sample_regions`` / ``compare_vocabulary_folders``: seeded genome windows, and the whole
  comparison for a set of tokenizer folders.

Definitions:

* Spans are 0-based half-open positions in the sequence once white space is dropped (a pasted FASTA
  block may hold line breaks; every tokenizer ignores them). The sequence is read as upper case: our
  tokenizers already do so, while the published GROVER tokenizer has no normalizer and would turn
  soft-masked (lower-case) DNA into [UNK].
* A non-ACGT letter (N, IUPAC codes) becomes whatever the tokenizer emits for it, usually one [UNK]
  per letter, and that token keeps the letter's span. "Special" tokens are those whose string is not
  made of A/C/G/T only ([UNK] and friends).
* Internal boundaries: the ends of all tokens but the last, i.e. the positions where a segmentation
  cuts the sequence. A token boundary at position ``p`` lies between nucleotides ``p - 1`` and ``p``.
"""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from analysis.vocabulary import shared_tokens

SEGMENT_COLUMNS = (
    "token",     # str: the token as the vocabulary writes it ("[UNK]" for an N)
    "token_id",  # int: id in the tokenizer
    "start",     # int: first nucleotide, 0-based
    "end",       # int: one past the last nucleotide
    "length",    # int: end - start
)
SUMMARY_COLUMNS = (
    "vocabulary",             # str: label of the vocabulary (key of the tokenizers mapping)
    "vocab_size",             # int: non-special tokens in the vocabulary
    "n_sequences",            # int: sequences segmented
    "nucleotides",            # int: letters in them (N included)
    "tokens",                 # int: tokens emitted ([UNK] included): what a model's context holds
    "nucleotides_per_token",  # float: nucleotides / tokens, the compression of the sequences
    "mean_token_length",      # float: mean length of the A/C/G/T tokens emitted ([UNK] left out)
    "unk_tokens",             # int: special tokens emitted ([UNK] for N and other letters)
)
AGREEMENT_COLUMNS = (
    "vocabulary_a", "vocabulary_b",  # str: the pair, in the order the tokenizers were given
    "jaccard",                       # float: shared / (boundaries_a + boundaries_b - shared)
    "share_of_a_in_b",               # float: shared / boundaries_a
    "share_of_b_in_a",               # float: shared / boundaries_b
    "boundaries_a", "boundaries_b",  # int: internal boundaries of each, summed over the sequences
    "shared",                        # int: boundaries both put at the same position
)
LENGTH_COLUMNS = (
    "vocabulary",        # str
    "length",            # int: token length in nucleotides
    "n_tokens",          # int: vocabulary tokens of that length (special tokens left out)
    "token_share",       # float: n_tokens / vocabulary size; sums to 1 per vocabulary
    "occurrence_share",  # float: share of the genome's token occurrences; NaN without frequencies
)
SHARED_COLUMNS = ("vocabulary_a", "vocabulary_b", "shared", "only_in_a", "only_in_b", "jaccard")
REGION_COLUMNS = ("chromosome", "start", "end")

_ACGT = frozenset("ACGT")
_FIRST_BATCH_FACTOR = 2   # candidate windows drawn per region wanted in the first pass over the genome
_MAX_PASSES = 8           # passes over the FASTA before sample_regions gives up on an N-heavy genome


def _clean(sequence: str) -> str:
    """The letters every vocabulary sees: white space dropped, upper case."""
    return "".join(str(sequence).split()).upper()


def _is_nucleotide_token(token: str) -> bool:
    return bool(token) and set(token) <= _ACGT


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})


def segment(tokenizer: PreTrainedTokenizerBase, sequence: str) -> pd.DataFrame:
    """Return the tokens a tokenizer cuts a sequence into, each with its nucleotide span.

    Parameters
    ----------
    tokenizer
        A fast (Rust-backed) Hugging Face tokenizer that reads raw sequence: our BPE and
        non-overlapping k-mer tokenizers, or the published GROVER one (``grover_core.tokenizer.load_tokenizer``).
    sequence
        DNA letters; white space is dropped and lower case read as upper case (module docstring).

    Returns
    -------
    DataFrame with the columns in ``SEGMENT_COLUMNS``, one row per token in sequence order, no
    [CLS]/[SEP]: ``token`` (str), ``token_id``, ``start``, ``end`` (0-based half-open span in the
    cleaned sequence), ``length`` (int64). On A/C/G/T input the spans tile the sequence.

    Raises
    ------
    GroverInputError
        When the tokenizer is not a fast one, or turns A/C/G/T letters into a special token: it does
        not read raw sequence (an overlapping k-mer tokenizer reads ``kmer_text`` output instead).
    """
    from grover_core.errors import GroverInputError

    if not getattr(tokenizer, "is_fast", False):
        raise GroverInputError(f"{type(tokenizer).__name__} is not a fast tokenizer, so it has no offsets. "
                               "Load the folder with grover_core.tokenizer.load_tokenizer.")
    text = _clean(sequence)
    # verbose=False: a 1 kb region is longer than model_max_length, which is fine for segmentation.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    table = pd.DataFrame({
        "token": pd.Series(encoding.tokens(), dtype=object),
        "token_id": np.asarray(encoding["input_ids"], dtype=np.int64),
        "start": offsets[:, 0],
        "end": offsets[:, 1],
        "length": offsets[:, 1] - offsets[:, 0],
    })
    for token, start, end in zip(table["token"], table["start"], table["end"]):
        if not _is_nucleotide_token(token) and _ACGT & set(text[start:end]):
            raise GroverInputError(
                f"the tokenizer turned {text[start:end][:20]!r} (positions {start}-{end}) into {token}: it does not "
                "read raw sequence. An overlapping k-mer tokenizer reads kmer_text output; compare BPE and "
                "non-overlapping k-mer tokenizers instead."
            )
    return table


def segment_with_each(tokenizers: Mapping[str, PreTrainedTokenizerBase], sequence: str) -> pd.DataFrame:
    """Return ``segment`` of the same sequence by every tokenizer, stacked for drawing aligned blocks.

    Returns
    -------
    DataFrame with columns ``vocabulary`` (the key of ``tokenizers``, in the order given), ``block``
    (0, 1, 2, ... the token's index within its vocabulary's segmentation; ``block % 2`` alternates
    colours), then the ``SEGMENT_COLUMNS``.
    """
    frames = []
    for name, tokenizer in tokenizers.items():
        table = segment(tokenizer, sequence)
        table.insert(0, "block", np.arange(len(table), dtype=np.int64))
        table.insert(0, "vocabulary", str(name))
        frames.append(table)
    if not frames:
        return _empty(("vocabulary", "block") + SEGMENT_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def token_boundaries(segmentation: pd.DataFrame) -> set[int]:
    """Return the internal boundaries of a ``segment`` table: every token end except the last.

    >>> token_boundaries(pd.DataFrame({"start": [0, 3, 6], "end": [3, 6, 9]}))
    {3, 6}
    """
    ends = segmentation["end"].to_numpy(dtype=np.int64)
    if not ends.size:
        return set()
    last = int(ends.max())
    return {int(e) for e in ends if e != last}


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _agreement(n_a: int, n_b: int, shared: int) -> dict[str, Any]:
    return {"boundaries_a": n_a, "boundaries_b": n_b, "shared": shared,
            "jaccard": _ratio(shared, n_a + n_b - shared),
            "share_of_a_in_b": _ratio(shared, n_a), "share_of_b_in_a": _ratio(shared, n_b)}


def boundary_agreement(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """Return how often two segmentations of the same sequence cut it at the same positions.

    Parameters
    ----------
    a, b
        ``segment`` tables (at least ``end``) of one sequence by two vocabularies.

    Returns
    -------
    dict with ``boundaries_a``, ``boundaries_b`` (counts of internal boundaries, see
    ``token_boundaries``), ``shared`` (count of positions in both), ``jaccard`` (shared / union),
    ``share_of_a_in_b`` (shared / boundaries_a: how many of a's cuts b makes too) and
    ``share_of_b_in_a`` (shared / boundaries_b). A ratio is NaN when its denominator is 0 (a
    sequence that fits in one token).

    Raises
    ------
    ValueError
        When the two tables end at different positions (not the same sequence).

    Examples
    --------
    >>> a = pd.DataFrame({"end": [3, 6, 9]})
    >>> b = pd.DataFrame({"end": [2, 3, 9]})
    >>> boundary_agreement(a, b)["jaccard"], boundary_agreement(a, b)["share_of_a_in_b"]
    (0.3333333333333333, 0.5)
    """
    end_a = int(a["end"].max()) if len(a) else 0
    end_b = int(b["end"].max()) if len(b) else 0
    if end_a != end_b:
        raise ValueError(f"the segmentations end at {end_a} and {end_b}: give two segmentations of the same sequence")
    set_a, set_b = token_boundaries(a), token_boundaries(b)
    return _agreement(len(set_a), len(set_b), len(set_a & set_b))


def _sequence_texts(sequences: Sequence[str] | Iterable[tuple]) -> list[str]:
    """Plain sequences from strings, (name, sequence) pairs or ``sample_regions`` triples (last item)."""
    return [item if isinstance(item, str) else str(item[-1]) for item in sequences]


def _segment_all(tokenizers: Mapping[str, PreTrainedTokenizerBase],
                 texts: Sequence[str]) -> dict[str, list[pd.DataFrame]]:
    """Label -> one ``segment`` table per text: segmented once, shared by the summary and the agreement."""
    return {str(name): [segment(tokenizer, text) for text in texts] for name, tokenizer in tokenizers.items()}


def _vocab_size(tokenizer: PreTrainedTokenizerBase) -> int:
    from grover_core.tokenizer import special_token_mask

    return int((~special_token_mask(tokenizer)).sum())


def _summary_table(tokenizers: Mapping[str, PreTrainedTokenizerBase], segmentations: Mapping[str, list[pd.DataFrame]],
                   texts: Sequence[str]) -> pd.DataFrame:
    nucleotides = sum(len(_clean(text)) for text in texts)
    rows = []
    for name, tokenizer in tokenizers.items():
        tables = segmentations[str(name)]
        tokens = sum(len(table) for table in tables)
        acgt_lengths = [table.loc[[_is_nucleotide_token(t) for t in table["token"]], "length"] for table in tables]
        acgt_tokens = sum(len(lengths) for lengths in acgt_lengths)
        acgt_nucleotides = sum(int(lengths.sum()) for lengths in acgt_lengths)
        rows.append({
            "vocabulary": str(name), "vocab_size": _vocab_size(tokenizer), "n_sequences": len(texts),
            "nucleotides": nucleotides, "tokens": tokens,
            "nucleotides_per_token": _ratio(nucleotides, tokens),
            "mean_token_length": _ratio(acgt_nucleotides, acgt_tokens),
            "unk_tokens": tokens - acgt_tokens,
        })
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _agreement_table(segmentations: Mapping[str, list[pd.DataFrame]]) -> pd.DataFrame:
    boundaries = {name: [token_boundaries(table) for table in tables] for name, tables in segmentations.items()}
    rows = []
    for name_a, name_b in itertools.combinations(boundaries, 2):
        pairs = list(zip(boundaries[name_a], boundaries[name_b]))
        counts = _agreement(sum(len(a) for a, _ in pairs), sum(len(b) for _, b in pairs),
                            sum(len(a & b) for a, b in pairs))
        rows.append({"vocabulary_a": name_a, "vocabulary_b": name_b, **counts})
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def segmentation_summary(tokenizers: Mapping[str, PreTrainedTokenizerBase],
                         sequences: Sequence[str] | Iterable[tuple]) -> pd.DataFrame:
    """Return one row per vocabulary: how finely it cuts the same set of sequences.

    Parameters
    ----------
    tokenizers
        Label -> tokenizer (see ``segment``).
    sequences
        Sequences as strings, ``(name, sequence)`` pairs or ``sample_regions`` triples; every
        vocabulary segments the same ones.

    Returns
    -------
    DataFrame with the columns in ``SUMMARY_COLUMNS``, one row per tokenizer in the order given:
    ``vocabulary``, ``vocab_size`` (non-special tokens), ``n_sequences``, ``nucleotides`` (letters,
    N included), ``tokens`` (emitted, [UNK] included), ``nucleotides_per_token`` (nucleotides /
    tokens), ``mean_token_length`` (mean length of the A/C/G/T tokens emitted; equals
    ``nucleotides_per_token`` on sequences without N) and ``unk_tokens`` (special tokens emitted).
    """
    texts = _sequence_texts(sequences)
    return _summary_table(tokenizers, _segment_all(tokenizers, texts), texts)


def pairwise_boundary_agreement(tokenizers: Mapping[str, PreTrainedTokenizerBase],
                                sequences: Sequence[str] | Iterable[tuple]) -> pd.DataFrame:
    """Return boundary agreement for every pair of vocabularies, pooled over all sequences.

    Pooled: boundary counts are summed over the sequences before the ratios are taken, so long
    sequences weigh more than short ones (see ``boundary_agreement`` for the ratios).

    Returns
    -------
    DataFrame with the columns in ``AGREEMENT_COLUMNS``, one row per unordered pair (a before b in
    the order given): ``vocabulary_a``, ``vocabulary_b``, ``jaccard``, ``share_of_a_in_b``,
    ``share_of_b_in_a``, then the pooled counts ``boundaries_a``, ``boundaries_b``, ``shared``.
    """
    texts = _sequence_texts(sequences)
    return _agreement_table(_segment_all(tokenizers, texts))


def _length_table(vocabulary: pd.DataFrame | PreTrainedTokenizerBase) -> pd.DataFrame:
    """A table with ``length``, ``is_special`` and ``frequency`` (NaN when unknown) columns."""
    if isinstance(vocabulary, pd.DataFrame):
        table = vocabulary
    else:
        from grover_core.tokenizer import special_token_mask, token_strings

        strings = token_strings(vocabulary)
        special = special_token_mask(vocabulary)
        table = pd.DataFrame({"length": [0 if s else len(t) for t, s in zip(strings, special)], "is_special": special})
    missing = {"length", "is_special"} - set(table.columns)
    if missing:
        raise ValueError(f"the token table lacks {sorted(missing)}: give a vocabulary_token_table or a tokenizer")
    frequency = table["frequency"].astype(float) if "frequency" in table.columns else np.nan
    return pd.DataFrame({"length": table["length"].to_numpy(dtype=np.int64),
                         "is_special": table["is_special"].to_numpy(dtype=bool), "frequency": frequency})


def length_distribution(tables: Mapping[str, pd.DataFrame | PreTrainedTokenizerBase]) -> pd.DataFrame:
    """Return, per vocabulary and token length, how many tokens have it and how much of the genome they cover.

    Parameters
    ----------
    tables
        Label -> ``analysis.vocabulary.vocabulary_token_table`` (or any table with ``length``,
        ``is_special`` and optionally ``frequency``), or label -> tokenizer (no frequencies).
        Special rows are left out.

    Returns
    -------
    DataFrame with the columns in ``LENGTH_COLUMNS``, ordered by vocabulary (as given) then length,
    lengths that no token has left out: ``vocabulary``, ``length``, ``n_tokens``, ``token_share``
    (sums to 1 per vocabulary) and ``occurrence_share`` (the tokens' share of all token occurrences
    in the genome; sums to 1 per vocabulary; NaN without frequencies or when none occur).

    Examples
    --------
    >>> table = pd.DataFrame({"length": [0, 1, 1, 2], "is_special": [True, False, False, False],
    ...                       "frequency": [0, 3, 3, 2]})
    >>> length_distribution({"toy": table})
      vocabulary  length  n_tokens  token_share  occurrence_share
    0        toy       1         2     0.666667              0.75
    1        toy       2         1     0.333333              0.25
    """
    frames = []
    for name, vocabulary in tables.items():
        table = _length_table(vocabulary)
        table = table.loc[~table["is_special"]]
        grouped = table.groupby("length", sort=True).agg(n_tokens=("length", "size"),
                                                        frequency=("frequency", lambda f: f.sum(min_count=1)))
        total = grouped["frequency"].sum(min_count=1)
        frames.append(pd.DataFrame({
            "vocabulary": str(name),
            "length": grouped.index.to_numpy(dtype=np.int64),
            "n_tokens": grouped["n_tokens"].to_numpy(dtype=np.int64),
            "token_share": grouped["n_tokens"].to_numpy(dtype=float) / max(len(table), 1),
            "occurrence_share": (grouped["frequency"] / total).to_numpy(dtype=float) if total > 0 else np.nan,
        }))
    if not frames:
        return _empty(LENGTH_COLUMNS)
    return pd.concat(frames, ignore_index=True)[list(LENGTH_COLUMNS)]


def _chromosome_lengths(fasta: str | os.PathLike, chromosomes) -> list[tuple[str, int]]:
    from grover_core.genome import iter_fasta

    return [(name, len(letters)) for name, letters in iter_fasta(fasta, chromosomes=chromosomes)]


def _non_acgt_fraction(window: str) -> float:
    """Share of letters that are not A/C/G/T (N, IUPAC codes) in an upper-case window."""
    return (len(window) - sum(window.count(letter) for letter in "ACGT")) / len(window)


def sample_regions(fasta: str | os.PathLike, *, n_regions: int, length: int, seed: int = 0,
                   chromosomes: Sequence[str] | None = None,
                   max_n_fraction: float = 0.1) -> list[tuple[str, int, str]]:
    """Return genome windows drawn uniformly at random (seeded), skipping windows with too many N.

    Every window of ``length`` that fits in a chosen chromosome is equally likely; windows are
    distinct (different starts) but may overlap. The genome is read one chromosome at a time, once to
    learn the lengths and once per batch of candidate windows (usually one batch).

    Parameters
    ----------
    fasta
        A FASTA (.fa, .fa.gz) or .2bit genome (read with ``grover_core.genome.iter_fasta``).
    n_regions, length
        How many windows, and their length in nucleotides.
    seed
        The same seed, genome and options give the same windows.
    chromosomes
        Draw only from these records (default: all).
    max_n_fraction
        Skip windows where more than this share of letters is not A/C/G/T (N or IUPAC codes).

    Returns
    -------
    list of ``(chromosome, start, sequence)``: 0-based start, upper-case sequence of ``length``
    letters, ordered by chromosome (as in the file) then start.

    Raises
    ------
    GroverInputError
        When no chosen chromosome is as long as ``length``, or too few windows pass the N filter.
    """
    from grover_core.errors import GroverInputError
    from grover_core.genome import iter_fasta

    if n_regions < 0 or length < 1:
        raise GroverInputError(f"need n_regions >= 0 and length >= 1, got n_regions={n_regions}, length={length}")
    if n_regions == 0:
        return []
    lengths = [(name, size) for name, size in _chromosome_lengths(fasta, chromosomes) if size >= length]
    if not lengths:
        raise GroverInputError(f"no chromosome in {fasta} is {length:,} nt long. Sample shorter regions.")
    names = [name for name, _ in lengths]
    index_of = {name: c for c, name in enumerate(names)}
    windows = np.array([size - length + 1 for _, size in lengths], dtype=np.int64)
    first_window = np.concatenate(([0], np.cumsum(windows)))  # global window index of each chromosome's start
    total = int(first_window[-1])
    if total < n_regions:
        raise GroverInputError(f"{fasta} holds only {total:,} windows of {length:,} nt; ask for fewer regions.")

    rng = np.random.default_rng(seed)
    seen: set[int] = set()
    accepted: list[tuple[int, int, str]] = []  # (chromosome index, start, sequence)
    pass_rate = 1.0
    for _ in range(_MAX_PASSES):
        needed = n_regions - len(accepted)
        # Draw with replacement and keep first occurrences: the distinct windows in draw order are a
        # uniform sample without replacement. Size the batch by the share that passed so far.
        batch = int(min(needed * _FIRST_BATCH_FACTOR / max(pass_rate, 0.01), 100 * needed)) + 16
        drawn = [int(i) for i in dict.fromkeys(rng.integers(0, total, size=batch).tolist()) if i not in seen]
        seen.update(drawn)
        order = {index: rank for rank, index in enumerate(drawn)}
        chromosome_of = np.searchsorted(first_window, drawn, side="right") - 1
        wanted: dict[int, list[int]] = {}
        for index, c in zip(drawn, chromosome_of.tolist()):
            wanted.setdefault(c, []).append(index)
        found: list[tuple[int, int, int, str]] = []  # (draw rank, chromosome index, start, sequence)
        records = iter_fasta(fasta, chromosomes=[names[c] for c in wanted]) if wanted else ()
        for name, letters in records:
            c = index_of[name]
            for index in wanted[c]:
                start = index - int(first_window[c])
                window = letters[start:start + length].decode("ascii", errors="replace").upper()
                if _non_acgt_fraction(window) <= max_n_fraction:
                    found.append((order[index], c, start, window))
        found.sort()
        accepted += [(c, start, window) for _, c, start, window in found[:needed]]
        pass_rate = len(found) / max(len(drawn), 1)
        if len(accepted) >= n_regions or len(seen) >= total:
            break
    if len(accepted) < n_regions:
        raise GroverInputError(
            f"found only {len(accepted)} of {n_regions} windows of {length:,} nt with at most {max_n_fraction:.0%} N "
            f"in {fasta}. Ask for fewer or shorter regions, or raise max_n_fraction."
        )
    accepted.sort()
    return [(names[c], start, window) for c, start, window in accepted]


def regions_table(regions: Iterable[tuple[str, int, str]]) -> pd.DataFrame:
    """Return ``sample_regions`` output as a table: ``chromosome``, ``start``, ``end`` (0-based half-open)."""
    rows = [(chromosome, int(start), int(start) + len(sequence)) for chromosome, start, sequence in regions]
    return pd.DataFrame(rows, columns=list(REGION_COLUMNS)).astype({"start": np.int64, "end": np.int64})


def shared_token_table(tokenizers: Mapping[str, PreTrainedTokenizerBase]) -> pd.DataFrame:
    """Return the tokens every pair of vocabularies shares (``analysis.vocabulary.shared_tokens``).

    Returns
    -------
    DataFrame with the columns in ``SHARED_COLUMNS``, one row per unordered pair in the order given:
    ``vocabulary_a``, ``vocabulary_b``, ``shared``, ``only_in_a``, ``only_in_b`` (token counts, special
    tokens left out) and ``jaccard`` (shared / union).
    """
    from grover_core.tokenizer import special_token_mask, token_strings

    token_sets = {str(name): {t for t, s in zip(token_strings(tok), special_token_mask(tok)) if not s}
                  for name, tok in tokenizers.items()}
    rows = []
    for name_a, name_b in itertools.combinations(token_sets, 2):
        result = shared_tokens(token_sets[name_a], token_sets[name_b])
        rows.append({"vocabulary_a": name_a, "vocabulary_b": name_b,
                     **{key: result[key] for key in SHARED_COLUMNS[2:]}})
    return pd.DataFrame(rows, columns=list(SHARED_COLUMNS))


def compare_vocabulary_folders(folders: Mapping[str, str | os.PathLike], *, fasta: str | os.PathLike,
                               n_regions: int = 100, region_length: int = 1000,
                               seed: int = 0) -> dict[str, pd.DataFrame]:
    """Load tokenizer folders and compare how they cut the same genome windows.

    Parameters
    ----------
    folders
        Label -> tokenizer folder (BPE or non-overlapping k-mer, ours or GROVER's).
    fasta
        The genome the windows are drawn from (``sample_regions``, once for all vocabularies).
    n_regions, region_length, seed
        Passed to ``sample_regions``.

    Returns
    -------
    dict of DataFrames:
    ``summary`` (``segmentation_summary``), ``agreement`` (``pairwise_boundary_agreement``),
    ``shared`` (``shared_token_table``: tokens each pair has in common), ``lengths``
    (``length_distribution``: tokens per length, and the share of the regions' token occurrences
    each length takes) and ``regions`` (the windows used, ``regions_table``: their provenance).

    Raises
    ------
    GroverInputError
        When a folder is not a tokenizer folder, holds an overlapping k-mer tokenizer (it does not read
        raw sequence), or the genome has too few windows (``sample_regions``).
    """
    from grover_core.errors import GroverInputError
    from grover_core.tokenizer_folder import load_any_tokenizer

    tokenizers = {}
    for name, folder in folders.items():
        loaded = load_any_tokenizer(Path(folder))
        if loaded.kind == "kmer" and loaded.overlapping:
            raise GroverInputError(f"{folder} holds an overlapping k-mer tokenizer: its tokens overlap, so they "
                                   "have no boundaries to compare. Give a non-overlapping k-mer folder.")
        tokenizers[str(name)] = loaded.tokenizer
    regions = sample_regions(fasta, n_regions=n_regions, length=region_length, seed=seed)
    texts = _sequence_texts(regions)
    segmentations = _segment_all(tokenizers, texts)
    return {
        "summary": _summary_table(tokenizers, segmentations, texts),
        "agreement": _agreement_table(segmentations),
        "shared": shared_token_table(tokenizers),
        "lengths": length_distribution(_region_token_tables(tokenizers, segmentations)),
        "regions": regions_table(regions),
    }


def _region_token_tables(tokenizers: Mapping[str, PreTrainedTokenizerBase],
                         segmentations: Mapping[str, list[pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Label -> token table whose ``frequency`` counts occurrences in the sampled regions."""
    from grover_core.tokenizer import special_token_mask, token_strings

    tables = {}
    for name, tokenizer in tokenizers.items():
        strings, special = token_strings(tokenizer), special_token_mask(tokenizer)
        ids = np.concatenate([t["token_id"].to_numpy() for t in segmentations[str(name)]] or [np.zeros(0, int)])
        counts = np.bincount(ids.astype(np.int64), minlength=len(strings))[: len(strings)]
        tables[str(name)] = pd.DataFrame({"length": [0 if s else len(t) for t, s in zip(strings, special)],
                                          "is_special": special, "frequency": counts})
    return tables
