"""Genome annotations: read BED / bedGraph / bigWig files and ask what windows and tokens overlap.

Users bring annotation files in standard formats:

- BED (BED3, BED4 with a label such as a ChromHMM state in column 4, BED6 with a strand, or wider;
  ``#``, ``track`` and ``browser`` lines are headers), read by ``read_bed`` into
  ``Chromosome, Start, End, Label[, Strand]``;
- bedGraph (``chrom start end value``) or bigWig, read by ``read_signal`` into
  ``Chromosome, Start, End, Value``.

Coordinates stay 0-based half-open, as in BED. Then:

- ``window_label_fractions``: share of each window's bp covered by each label, majority label;
- ``window_signal_mean``: bp-weighted mean signal over each window;
- ``binned_timing``: replication-timing values binned into late / (mid /) early;
- ``token_occurrence_shares``: for every token id, the share of its genome occurrences that fall
  inside each label (streamed chromosome by chromosome, in chunks);
- ``genome_label_fractions``: share of the genome covered by each label (enrichment background).

Label-to-column rule: a label keeps its text verbatim behind a prefix, ``frac_<label>`` for windows
and ``share_<label>`` for tokens (``frac_ZNF/Rpts``, ``share_SINE/Alu``); with ``strand_aware`` the
label becomes ``<label>_plus`` / ``<label>_minus`` first. Each result also carries the mapping in
``result.attrs["label_columns"]`` (display label -> column), in label order: the categories' order
when ``Label`` is categorical, else order of first appearance in the annotation.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from grover_core.errors import GroverInputError

NO_LABEL = "none"  # majority label of a window no label covers (and timing bin of a NaN value)
FRACTION_PREFIX = "frac_"
SHARE_PREFIX = "share_"
STRAND_SUFFIXES = {"+": "_plus", "-": "_minus"}
DEFAULT_CHUNK_TOKENS = 10_000_000  # tokens held in memory at once: ~0.5 GB of int64 work arrays

_HEADER_PREFIXES = ("#", "track", "browser")
_GZIP_MAGIC = b"\x1f\x8b"
# bigWig / bigBed magic numbers, written in the file's own byte order (either order is legal).
_BIGWIG_MAGIC = (b"\x26\xfc\x8f\x88", b"\x88\x8f\xfc\x26")
_BIGBED_MAGIC = (b"\xeb\xf2\x89\x87", b"\x87\x89\xf2\xeb")
_BIGWIG_SUFFIXES = (".bw", ".bigwig")
_ANNOTATION_SUFFIXES = (".gz", ".bed", ".bedgraph", ".bg", ".txt", ".tsv")
_STRANDS = ("+", "-", ".")


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"{path}: file not found; check the path (it is read relative to "
                               f"{Path.cwd()}).")
    return path


def _magic(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def _open_text(path: Path) -> TextIO:
    # Gzip is recognised by its magic bytes, so a compressed file without ".gz" still reads.
    if _magic(path)[:2] == _GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _data_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(1-based line number, fields)`` of every data line, skipping headers and blank lines.

    Fields split on tabs (BED's separator); a line without a tab splits on any whitespace, since
    hand-written files often use spaces.
    """
    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith(_HEADER_PREFIXES):
                continue
            yield lineno, line.split("\t") if "\t" in line else line.split()


def _line_error(path: Path, lineno: int, problem: str, fix: str) -> GroverInputError:
    return GroverInputError(f"{path}, line {lineno}: {problem}; {fix}")


def _coordinates(path: Path, lineno: int, fields: list[str]) -> tuple[int, int]:
    if len(fields) < 3:
        raise _line_error(path, lineno, f"{len(fields)} column(s), a BED-like line needs at least 3 "
                          "(chrom, start, end)", "separate columns with tabs and check the file format")
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise _line_error(path, lineno, f"coordinates {fields[1]!r}, {fields[2]!r} are not integers",
                          "columns 2 and 3 must be whole-number 0-based positions") from None
    if start < 0:
        raise _line_error(path, lineno, f"start {start} is negative", "coordinates are 0-based, from 0")
    if end < start:
        raise _line_error(path, lineno, f"end {end} is before start {start}",
                          "write intervals as start <= end (0-based, half-open)")
    return start, end


def _file_label(path: Path) -> str:
    """Return the file name without annotation suffixes: ``cpg_islands.bed.gz`` -> ``cpg_islands``."""
    name = path.name
    while Path(name).suffix.lower() in _ANNOTATION_SUFFIXES:
        name = name[: -len(Path(name).suffix)]
    return name


def read_bed(path: str | os.PathLike, *, label_column: int | None = 3, strand: bool = True) -> pd.DataFrame:
    """Read a BED file (plain or gzipped) into one row per interval, in file order.

    Parameters
    ----------
    path
        BED3, BED4, BED6 or wider; ``#``, ``track`` and ``browser`` lines are skipped.
    label_column
        0-based index of the column holding the label: 3 is the BED name (a ChromHMM state);
        6 is RepeatMasker's class in a ``chrom start end name score strand class family`` file.
        ``None`` labels every interval with the file name (``cpg_islands.bed`` -> ``cpg_islands``),
        for BED3 files.
    strand
        Add a ``Strand`` column (``+``, ``-`` or ``.``) when every line has a 6th column.

    Returns
    -------
    DataFrame with ``Chromosome`` (str), ``Start``, ``End`` (int64, 0-based half-open),
    ``Label`` (str) and, when read, ``Strand`` (str).

    Raises
    ------
    GroverInputError
        Naming the file, the line and the fix: missing file, fewer than 3 columns, non-integer or
        negative coordinates, end before start, missing label column, bad strand, no intervals.
    """
    path = _existing_file(path)
    file_label = _file_label(path) if label_column is None else None
    chroms: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    labels: list[str] = []
    strands: list[str] = []
    strand_lines: list[int] = []
    all_stranded = strand
    for lineno, fields in _data_lines(path):
        start, end = _coordinates(path, lineno, fields)
        if label_column is not None and len(fields) <= label_column:
            raise _line_error(path, lineno, f"no label column {label_column} (0-based) in a line of "
                              f"{len(fields)} columns", "pass label_column=<0-based index of the label "
                              "column>, or label_column=None to label every interval with the file name")
        chroms.append(fields[0])
        starts.append(start)
        ends.append(end)
        labels.append(file_label if label_column is None else fields[label_column])
        if all_stranded and len(fields) >= 6:
            strands.append(fields[5])
            strand_lines.append(lineno)
        else:
            all_stranded = False
    if not chroms:
        raise GroverInputError(f"{path}: no intervals (every line is blank or a header); "
                               "check that this is the intended BED file.")
    table = pd.DataFrame({"Chromosome": chroms, "Start": np.asarray(starts, dtype=np.int64),
                          "End": np.asarray(ends, dtype=np.int64), "Label": labels})
    if all_stranded:
        bad = [i for i, value in enumerate(strands) if value not in _STRANDS]
        if bad:
            raise _line_error(path, strand_lines[bad[0]], f"strand {strands[bad[0]]!r} in column 6",
                              "use +, - or ., or pass strand=False to ignore column 6")
        table["Strand"] = strands
    return table


def _read_bedgraph(path: Path) -> pd.DataFrame:
    chroms: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    values: list[float] = []
    for lineno, fields in _data_lines(path):
        start, end = _coordinates(path, lineno, fields)
        if len(fields) < 4:
            raise _line_error(path, lineno, f"{len(fields)} columns, a bedGraph line needs 4 "
                              "(chrom, start, end, value)", "add the value column")
        try:
            value = float(fields[3])
        except ValueError:
            raise _line_error(path, lineno, f"value {fields[3]!r} is not a number",
                              "column 4 of a bedGraph holds the signal value") from None
        chroms.append(fields[0])
        starts.append(start)
        ends.append(end)
        values.append(value)
    if not chroms:
        raise GroverInputError(f"{path}: no intervals (every line is blank or a header); "
                               "check that this is the intended bedGraph file.")
    return pd.DataFrame({"Chromosome": chroms, "Start": np.asarray(starts, dtype=np.int64),
                         "End": np.asarray(ends, dtype=np.int64),
                         "Value": np.asarray(values, dtype=np.float64)})


def _read_bigwig(path: Path) -> pd.DataFrame:
    import pyBigWig  # imported here: only bigWig input needs the C extension

    parts = []
    handle = pyBigWig.open(str(path))
    if handle is None:
        raise GroverInputError(f"{path}: pyBigWig could not open this bigWig; check that the file is "
                               "complete (re-download or re-create it).")
    try:
        for chrom in handle.chroms():
            intervals = handle.intervals(chrom)  # None when the chromosome holds no data
            if not intervals:
                continue
            array = np.asarray(intervals, dtype=np.float64)
            parts.append(pd.DataFrame({"Chromosome": chrom, "Start": array[:, 0].astype(np.int64),
                                       "End": array[:, 1].astype(np.int64), "Value": array[:, 2]}))
    finally:
        handle.close()
    if not parts:
        raise GroverInputError(f"{path}: the bigWig holds no intervals; check that this is the intended file.")
    return pd.concat(parts, ignore_index=True)


def read_signal(path: str | os.PathLike) -> pd.DataFrame:
    """Read a bedGraph (plain or gzipped) or bigWig file of a numeric signal, in file order.

    The format is decided by the file's first bytes (the bigWig magic number), so a misnamed file
    still reads; a ``.bw`` / ``.bigWig`` name on a file that is not a bigWig is an error.

    Returns
    -------
    DataFrame with ``Chromosome`` (str), ``Start``, ``End`` (int64, 0-based half-open) and
    ``Value`` (float64).
    """
    path = _existing_file(path)
    magic = _magic(path)
    if magic in _BIGBED_MAGIC:
        raise GroverInputError(f"{path}: this is a bigBed, not a signal; read it with read_bed after "
                               "converting with `bigBedToBed`.")
    if magic in _BIGWIG_MAGIC:
        return _read_bigwig(path)
    if path.suffix.lower() in _BIGWIG_SUFFIXES:
        raise GroverInputError(f"{path}: named like a bigWig but the file does not start with the bigWig "
                               "magic number; rename it if it is a bedGraph, or re-create the bigWig.")
    return _read_bedgraph(path)


# --------------------------------------------------------------------------------------------
# Labels and merged intervals
# --------------------------------------------------------------------------------------------

def _require_columns(frame: pd.DataFrame, columns: Sequence[str], *, what: str, fix: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise GroverInputError(f"{what} lacks column(s) {', '.join(missing)}; {fix}")


def _check_annotation(annotation: pd.DataFrame, *, strand_aware: bool = False) -> None:
    columns = ["Chromosome", "Start", "End", "Label"] + (["Strand"] if strand_aware else [])
    fix = ("read BED files with read_bed" if not strand_aware
           else "read a BED6 file with read_bed(..., strand=True), or pass strand_aware=False")
    _require_columns(annotation, columns, what="annotation", fix=fix)


def _label_order(labels: pd.Series) -> list[str]:
    """Return the distinct labels: category order when categorical, else order of first appearance."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return [str(label) for label in labels.cat.categories]
    return [str(label) for label in pd.unique(labels)]


def _keyed_annotation(annotation: pd.DataFrame, *, strand_aware: bool) -> tuple[pd.DataFrame, list[str]]:
    """Return ``Chromosome, Start, End, Label`` with the label keys used for columns, and their order.

    With ``strand_aware`` each label splits into ``<label>_plus`` and ``<label>_minus``; intervals
    of strand ``.`` get no key (they still count in the union).
    """
    _check_annotation(annotation, strand_aware=strand_aware)
    order = _label_order(annotation["Label"])
    keyed = pd.DataFrame({"Chromosome": annotation["Chromosome"].astype(str).to_numpy(),
                          "Start": annotation["Start"].to_numpy(np.int64),
                          "End": annotation["End"].to_numpy(np.int64),
                          "Label": annotation["Label"].astype(str).to_numpy()})
    if not strand_aware:
        return keyed, order
    strand = annotation["Strand"].astype(str).to_numpy()
    stranded = np.isin(strand, list(STRAND_SUFFIXES))
    suffix = pd.Series(strand[stranded]).map(STRAND_SUFFIXES).to_numpy()
    keyed = keyed[stranded].assign(Label=keyed["Label"].to_numpy()[stranded] + suffix)
    return keyed, [label + suffix for label in order for suffix in STRAND_SUFFIXES.values()]


@contextlib.contextmanager
def _quiet_pyranges() -> Iterator[None]:
    # pyranges 0.1 sets pandas options that pandas 3 deprecates; the warning is not the user's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _merged(intervals: pd.DataFrame, *, by_label: bool) -> pd.DataFrame:
    """Return disjoint ``Chromosome, Start, End[, Label]`` intervals: each label's own (or all) merged."""
    import pyranges as pr  # imported here: pyranges is slow to import and only overlaps need it

    columns = ["Chromosome", "Start", "End"] + (["Label"] if by_label else [])
    if intervals.empty:
        return pd.DataFrame({column: pd.Series(dtype=np.int64 if column in ("Start", "End") else str)
                             for column in columns})
    with _quiet_pyranges():
        merged = pr.PyRanges(intervals[columns]).merge(strand=False, by="Label" if by_label else None).df
    merged["Chromosome"] = merged["Chromosome"].astype(str)
    if by_label:
        merged["Label"] = merged["Label"].astype(str)
    return merged[columns]


def _overlaps(windows: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (window, interval) overlap: ``window`` (row position), ``Overlap`` (bp), extras."""
    import pyranges as pr

    extra = [column for column in intervals.columns if column not in ("Chromosome", "Start", "End")]
    empty = pd.DataFrame({"window": pd.Series(dtype=np.int64), "Overlap": pd.Series(dtype=np.int64),
                          **{column: intervals[column].iloc[:0] for column in extra}})
    if windows.empty or intervals.empty:
        return empty
    left = pd.DataFrame({"Chromosome": windows["Chromosome"].astype(str).to_numpy(),
                         "Start": windows["Start"].to_numpy(np.int64), "End": windows["End"].to_numpy(np.int64),
                         "window": np.arange(len(windows))})
    with _quiet_pyranges():
        joined = pr.PyRanges(left).join(pr.PyRanges(intervals), strandedness=False, report_overlap=True).df
    if joined.empty:
        return empty
    return joined[["window", "Overlap", *extra]].reset_index(drop=True)


def _check_windows(windows: pd.DataFrame) -> np.ndarray:
    """Validate windows and return their lengths in bp."""
    _require_columns(windows, ["Chromosome", "Start", "End"], what="windows",
                     fix="give one row per window with 0-based half-open Start and End")
    lengths = windows["End"].to_numpy(np.int64) - windows["Start"].to_numpy(np.int64)
    if (lengths < 0).any():
        row = int(np.flatnonzero(lengths < 0)[0])
        raise GroverInputError(f"windows row {row}: End before Start; give 0-based half-open windows.")
    return lengths


def _per_window(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Divide bp totals by window lengths; zero-length windows give NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lengths > 0, values / np.maximum(lengths, 1), np.nan)


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------

def window_label_fractions(windows: pd.DataFrame, annotation: pd.DataFrame, *,
                           min_fraction: float = 0.0) -> pd.DataFrame:
    """Return the windows with the share of their bp covered by each annotation label.

    Each label's intervals are merged first, so overlapping intervals of one label count once;
    different labels may overlap each other and are each counted on their own, so the ``frac_``
    columns of a window can sum to more than ``covered_fraction``.

    Parameters
    ----------
    windows
        ``Chromosome, Start, End`` (0-based half-open) and any other columns, which are kept.
    annotation
        ``Chromosome, Start, End, Label`` as from ``read_bed``.
    min_fraction
        The majority label must cover at least this share of the window, else the window's
        ``majority_label`` is ``"none"``; 0.0 accepts any coverage (uncovered windows are "none").

    Returns
    -------
    A new DataFrame: the windows (same index and columns; columns of the names below are replaced)
    plus ``frac_<label>`` for each label (float in [0, 1], NaN for zero-length windows),
    ``majority_label`` (str: the label covering most bp, first label on ties, or "none") and
    ``covered_fraction`` (share covered by any label). ``attrs["label_columns"]`` maps each label
    to its column.
    """
    lengths = _check_windows(windows)
    keyed, order = _keyed_annotation(annotation, strand_aware=False)
    n_windows = len(windows)
    per_label = _overlaps(windows, _merged(keyed, by_label=True))
    codes = pd.Categorical(per_label["Label"], categories=order).codes
    covered_bp = np.zeros((n_windows, len(order)), dtype=np.float64)
    np.add.at(covered_bp, (per_label["window"].to_numpy(), codes), per_label["Overlap"].to_numpy())
    fractions = _per_window(covered_bp, lengths[:, None])

    union = _overlaps(windows, _merged(keyed, by_label=False))
    union_bp = np.bincount(union["window"].to_numpy(np.int64), weights=union["Overlap"].to_numpy(np.float64),
                           minlength=n_windows)

    columns = {label: FRACTION_PREFIX + label for label in order}
    out = windows.copy()
    for j, label in enumerate(order):
        out[columns[label]] = fractions[:, j]
    # A sentinel column of zeros makes "none" the answer for windows no label covers (and for an
    # empty annotation); argmax keeps the first label on ties.
    scored = np.column_stack([np.nan_to_num(fractions, nan=0.0), np.zeros(n_windows)])
    best = scored.argmax(axis=1)
    best_fraction = scored[np.arange(n_windows), best]
    has_majority = (best_fraction > 0) & (best_fraction >= min_fraction)
    names = np.asarray([*order, NO_LABEL], dtype=object)
    out["majority_label"] = np.where(has_majority, names[best], NO_LABEL).astype(str)
    out["covered_fraction"] = _per_window(union_bp, lengths)
    out.attrs["label_columns"] = columns
    out.attrs["min_fraction"] = min_fraction
    return out


def window_signal_mean(windows: pd.DataFrame, signal: pd.DataFrame) -> np.ndarray:
    """Return the bp-weighted mean signal value over each window (float64, one per window row).

    Each signal interval weighs by the bp it shares with the window; signal intervals that overlap
    each other both count, and NaN values are skipped. A window no signal covers gives NaN.
    """
    _check_windows(windows)
    _require_columns(signal, ["Chromosome", "Start", "End", "Value"], what="signal",
                     fix="read bedGraph or bigWig files with read_signal")
    values = signal["Value"].to_numpy(np.float64)
    intervals = pd.DataFrame({"Chromosome": signal["Chromosome"].astype(str).to_numpy(),
                              "Start": signal["Start"].to_numpy(np.int64), "End": signal["End"].to_numpy(np.int64),
                              "Value": values})[~np.isnan(values)]
    pairs = _overlaps(windows, intervals)
    window = pairs["window"].to_numpy(np.int64)
    overlap = pairs["Overlap"].to_numpy(np.float64)
    weighted = np.bincount(window, weights=overlap * pairs["Value"].to_numpy(np.float64), minlength=len(windows))
    covered = np.bincount(window, weights=overlap, minlength=len(windows))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(covered > 0, weighted / np.maximum(covered, 1), np.nan)


_TIMING_LABELS = {"median": ("late", "early"), "tertiles": ("late", "mid", "early")}


def binned_timing(values: np.ndarray, *, method: str = "median", labels: Sequence[str] | None = None,
                  high_is_early: bool = True) -> np.ndarray:
    """Return a replication-timing bin name for each value (str array; "none" for NaN).

    Convention: high values replicate early (Repli-seq log2(early/late), as in the demo's
    bedGraph); pass ``high_is_early=False`` for timing measures where low means early.

    ``method="median"``: above the median is early, at or below is late (labels default
    ``("late", "early")``). ``method="tertiles"``: split at the 1/3 and 2/3 quantiles into late,
    mid, early (labels default ``("late", "mid", "early")``). Labels run from late to early.
    Quantiles ignore NaN.
    """
    if method not in _TIMING_LABELS:
        raise GroverInputError(f"timing method {method!r} is unknown; use one of {', '.join(_TIMING_LABELS)}.")
    labels = tuple(_TIMING_LABELS[method] if labels is None else labels)
    n_bins = len(_TIMING_LABELS[method])
    if len(labels) != n_bins:
        raise GroverInputError(f"method {method!r} makes {n_bins} bins but {len(labels)} labels were given; "
                               f"give {n_bins} labels, from late to early.")
    values = np.asarray(values, dtype=np.float64)
    timing = values if high_is_early else -values
    finite = ~np.isnan(timing)
    out = np.full(values.shape, NO_LABEL, dtype=object)
    if finite.any():
        edges = np.quantile(timing[finite], np.arange(1, n_bins) / n_bins)
        # right=True: a value equal to an edge stays in the later (lower) bin.
        out[finite] = np.asarray(labels, dtype=object)[np.digitize(timing[finite], edges, right=True)]
    return out.astype(str)


# --------------------------------------------------------------------------------------------
# Tokens and genome background
# --------------------------------------------------------------------------------------------

def _intervals_by_chromosome(merged: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{chromosome: (starts, ends)}`` of disjoint intervals, sorted by start."""
    out = {}
    for chrom, group in merged.groupby("Chromosome", sort=False, observed=True):
        order = np.argsort(group["Start"].to_numpy(np.int64), kind="stable")
        out[str(chrom)] = (group["Start"].to_numpy(np.int64)[order], group["End"].to_numpy(np.int64)[order])
    return out


def _inside(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Return a mask of the points lying in one of the sorted, disjoint ``[start, end)`` intervals."""
    index = np.searchsorted(starts, points, side="right") - 1
    return (index >= 0) & (points < ends[np.maximum(index, 0)])


def token_occurrence_shares(genome, annotation: pd.DataFrame, *, token_lengths: np.ndarray,
                            strand_aware: bool = False, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> pd.DataFrame:
    """Return, for every token id, the share of its genome occurrences that lie inside each label.

    An occurrence lies inside a label when its midpoint (``start + length // 2``) does. The genome
    streams chromosome by chromosome in chunks of ``chunk_tokens`` tokens, so memory stays bounded
    by one chunk whatever the chromosome size.

    Parameters
    ----------
    genome
        A ``grover_core.tokenized_genome.TokenizedGenome``.
    annotation
        ``Chromosome, Start, End, Label[, Strand]`` as from ``read_bed``; chromosomes the genome
        lacks are ignored.
    token_lengths
        ``token_lengths[id]`` = nucleotides of token id (0 for special tokens); at least
        ``genome.vocab_size`` long.
    strand_aware
        Split each label by the annotation's strand into ``<label>_plus`` and ``<label>_minus``
        (a token read on + inside a - strand repeat is part of the repeat's reverse complement).
        Intervals of strand ``.`` then count only in ``share_any``.

    Returns
    -------
    DataFrame indexed by token id ``0 .. vocab_size - 1`` with ``token_id``, ``occurrences``
    (int64), one ``share_<label>`` per label (float, NaN for tokens that never occur) and
    ``share_any`` (inside any interval). ``attrs["label_columns"]`` maps each label to its column.
    """
    keyed, order = _keyed_annotation(annotation, strand_aware=strand_aware)
    if "any" in order:
        raise GroverInputError("an annotation label is called 'any', which would overwrite share_any; "
                               "rename that label in the annotation.")
    token_lengths = np.asarray(token_lengths, dtype=np.int64)
    vocab_size = int(genome.vocab_size)
    if token_lengths.shape[0] < vocab_size:
        raise GroverInputError(f"token_lengths has {token_lengths.shape[0]} entries but the genome's "
                               f"vocabulary has {vocab_size} ids; give one length per token id.")
    if chunk_tokens < 1:
        raise GroverInputError(f"chunk_tokens must be at least 1, got {chunk_tokens}.")
    # One interval set per label key, plus the union under the key None.
    merged = _merged(keyed, by_label=True)
    interval_sets: dict[str | None, dict[str, tuple[np.ndarray, np.ndarray]]] = {
        label: _intervals_by_chromosome(merged[merged["Label"] == label]) for label in order}
    all_intervals = keyed if not strand_aware else _keyed_annotation(annotation, strand_aware=False)[0]
    interval_sets[None] = _intervals_by_chromosome(_merged(all_intervals, by_label=False))

    occurrences = np.zeros(vocab_size, dtype=np.int64)
    inside_counts = {key: np.zeros(vocab_size, dtype=np.int64) for key in interval_sets}
    for chrom in genome.chromosomes:
        chrom_ids, chrom_starts = genome.ids(chrom), genome.starts(chrom)
        present = {key: sets[chrom] for key, sets in interval_sets.items() if chrom in sets}
        for lo in range(0, chrom_ids.shape[0], chunk_tokens):
            ids = np.asarray(chrom_ids[lo: lo + chunk_tokens], dtype=np.int64)
            if ids.size and ids.max() >= vocab_size:
                raise GroverInputError(f"{chrom}: token id {int(ids.max())} is outside the genome's vocabulary "
                                       f"of {vocab_size}; re-tokenize the genome.")
            midpoints = np.asarray(chrom_starts[lo: lo + chunk_tokens], dtype=np.int64) + token_lengths[ids] // 2
            occurrences += np.bincount(ids, minlength=vocab_size)
            for key, (starts, ends) in present.items():
                inside_counts[key] += np.bincount(ids[_inside(midpoints, starts, ends)], minlength=vocab_size)

    columns = {label: SHARE_PREFIX + label for label in order}
    table = pd.DataFrame({"token_id": np.arange(vocab_size), "occurrences": occurrences})
    with np.errstate(invalid="ignore", divide="ignore"):
        for key, column in [*columns.items(), (None, SHARE_PREFIX + "any")]:
            table[column] = np.where(occurrences > 0, inside_counts[key] / np.maximum(occurrences, 1), np.nan)
    table.attrs["label_columns"] = columns
    table.attrs["strand_aware"] = strand_aware
    return table


def genome_label_fractions(annotation: pd.DataFrame, chromosome_sizes: dict[str, int], *,
                           strand_aware: bool = False) -> pd.Series:
    """Return the share of the genome's bp covered by each label (the background for enrichment).

    Each label's intervals are merged and clipped to ``[0, size)``; intervals on chromosomes not
    in ``chromosome_sizes`` are ignored. The denominator is the sum of ``chromosome_sizes`` (pass
    sizes without N runs to compare with token shares, which only see sequenced bases).

    Returns
    -------
    Series named ``genome_fraction``, indexed by label in label order (``<label>_plus`` /
    ``<label>_minus`` with ``strand_aware``), values in [0, 1].
    """
    keyed, order = _keyed_annotation(annotation, strand_aware=strand_aware)
    total = float(sum(chromosome_sizes.values()))
    if total <= 0:
        raise GroverInputError("chromosome_sizes sum to 0 bp; give each chromosome's length.")
    merged = _merged(keyed, by_label=True)
    sizes = merged["Chromosome"].map(chromosome_sizes)
    known = sizes.notna().to_numpy()
    merged, sizes = merged[known], sizes[known].to_numpy(np.int64)
    clipped = (np.minimum(merged["End"].to_numpy(np.int64), sizes)
               - np.maximum(merged["Start"].to_numpy(np.int64), 0)).clip(min=0)
    covered = pd.Series(clipped, index=merged["Label"].to_numpy()).groupby(level=0).sum()
    return (covered.reindex(order, fill_value=0) / total).rename("genome_fraction")
