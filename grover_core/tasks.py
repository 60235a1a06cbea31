"""Fine-tuning task tables in GROVER's designs: Prom300, PromScan and CTCF, plus users' own tables.

Every builder returns a pandas DataFrame with at least ``TASK_COLUMNS``, one row per example:

* ``sequence``: upper-case A/C/G/T (windows holding any other letter are skipped and counted);
* ``label``: int class index;
* ``chromosome``, ``start``, ``end``: where the window lies, 0-based half-open (BED convention);
* ``split``: ``"train"``, ``"validation"`` or ``"test"``.

``df.attrs`` records how the table was made: ``task``, ``config`` (the config as a dict), ``skipped``
(windows left out, per reason), ``splits`` (the rule and the chromosomes of each split) and, where it
applies, ``label_names``. ``write_task_table`` saves the table as Parquet (attrs included) and the same
record as JSON beside it.

The three designs (``GROVER.md``, "Fine-tuning tasks"):

* **Prom300** (``build_prom300``): 300 bp promoters, -249..+50 around each TSS on the gene's strand,
  against the same windows with their tokens shuffled (one shuffled twin per promoter: balanced).
* **PromScan** (``build_promscan``): 1 kb tiles over 10 kb around each TSS; a tile is positive when any
  TSS lies inside it (unbalanced, as in the paper).
* **CTCF** (``build_ctcf``): windows centred on genome-wide matches of the JASPAR CTCF matrix MA0139.1,
  positive when the match overlaps a ChIP-seq peak. The paper's window length is not in ``GROVER.md``;
  ours is ``CtcfConfig.window_bp`` (200 bp by default).

Splits
------
Splits go by chromosome, so no window (nor its shuffled twin, nor an overlapping tile) is shared between
train and test. Each config has ``test_chromosomes`` and ``validation_chromosomes``. Among the
chromosomes that hold examples, in genome order, a field left empty takes:

* test: the last chromosome not named for validation, when at least two such chromosomes exist;
* validation: the last chromosome left after the test chromosomes, when at least two are left;
* train: every other chromosome.

So three or more chromosomes give last = test, second-to-last = validation, the rest train; two give
train = first, test = last and **no validation split**; a single chromosome (with neither field set) is
cut by position instead: the examples whose start lies in the first 80% of the distinct starts are
train, the next 10% validation, the last 10% test (``df.attrs["splits"]["rule"] == "position"``).
Chromosomes named in a config must exist in the genome.
"""
from __future__ import annotations

import bisect
import dataclasses
import gzip
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from grover_core.atomic import atomic_path, atomic_write_text
from grover_core.errors import GroverInputError
from grover_core.genome import NOT_ACGT, encode_nucleotides, iter_fasta

# Same names as analysis.run.TASK_COLUMNS (grover_core does not import analysis).
TASK_COLUMNS = ("sequence", "label", "chromosome", "start", "end", "split")
SPLITS = ("train", "validation", "test")
#: The JASPAR CTCF count matrix shipped with the repository.
DEFAULT_CTCF_JASPAR = Path(__file__).resolve().parents[1] / "data" / "reference" / "MA0139.1_CTCF.jaspar"

_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_WINDOW_BATCH = 4096  # windows checked for non-ACGT letters at a time (bounds memory for 1 kb windows)
_SHUFFLE_TRIES = 10  # a shuffle equal to its source is redrawn this many times before the window is skipped
_SCORE_TOLERANCE = 1e-9  # threshold slack: sums of the same log-odds in another order differ by ~1e-15
_BED_HEADERS = ("#", "track", "browser")
_BED_NAMES = ("chromosome", "start", "end", "name", "score", "strand")


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------

def _check_split_fields(config) -> None:
    # Frozen dataclasses: normalise lists to tuples so configs stay hashable and JSON-able.
    for name in ("test_chromosomes", "validation_chromosomes"):
        value = getattr(config, name)
        if isinstance(value, str):
            value = (value,)
        value = tuple(value)
        if not all(isinstance(c, str) and c for c in value):
            raise GroverInputError(f"{type(config).__name__}.{name} must be chromosome names, got {value!r}")
        object.__setattr__(config, name, value)
    both = set(config.test_chromosomes) & set(config.validation_chromosomes)
    if both:
        raise GroverInputError(f"{type(config).__name__}: {sorted(both)} named for both test and validation; "
                               "give each chromosome to one split")


def _check_positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise GroverInputError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Prom300Config:
    """How ``build_prom300`` cuts promoters and makes their shuffled twins.

    The window runs from ``-upstream_bp`` to ``+downstream_bp`` around the TSS (the TSS is position 0,
    so the window is ``upstream_bp + 1 + downstream_bp`` long: 300 bp by default), read 5'->3' on the
    gene's strand.
    """

    upstream_bp: int = 249  # the paper's -249 ...
    downstream_bp: int = 50  # ... to +50: 300 bp with the TSS
    shuffle_chunk: int = 6  # without a tokenizer, shuffle chunks of this many nt (last partial chunk too)
    seed: int = 0  # the shuffles (the only random step)
    test_chromosomes: tuple[str, ...] = ()  # empty: the default rule (module docstring, "Splits")
    validation_chromosomes: tuple[str, ...] = ()

    def __post_init__(self):
        _check_positive(self, "shuffle_chunk")
        if self.upstream_bp < 0 or self.downstream_bp < 0:
            raise GroverInputError(f"Prom300Config: upstream_bp and downstream_bp must be >= 0, got "
                                   f"{self.upstream_bp} and {self.downstream_bp}")
        _check_split_fields(self)

    @property
    def window_bp(self) -> int:
        return self.upstream_bp + 1 + self.downstream_bp


@dataclass(frozen=True)
class PromScanConfig:
    """How ``build_promscan`` tiles the regions around TSSs (nothing here is random).

    Each TSS at position ``p`` gets the region ``[p - region_bp // 2, p - region_bp // 2 + region_bp)``,
    tiled from its left end by windows of ``window_bp`` every ``stride_bp``:
    ``(region_bp - window_bp) // stride_bp + 1`` tiles (10 by default). Tiles are on the + strand.
    """

    region_bp: int = 10_000  # the paper's 10 kb around the TSS
    window_bp: int = 1_000  # 1 kb tiles
    stride_bp: int | None = None  # None: window_bp (non-overlapping tiles, as GROVER's PromScan)
    test_chromosomes: tuple[str, ...] = ()
    validation_chromosomes: tuple[str, ...] = ()

    def __post_init__(self):
        _check_positive(self, "region_bp", "window_bp")
        if self.stride_bp is not None:
            _check_positive(self, "stride_bp")
        if self.window_bp > self.region_bp:
            raise GroverInputError(f"PromScanConfig: window_bp ({self.window_bp}) is longer than region_bp "
                                   f"({self.region_bp}); make the region at least one window long")
        _check_split_fields(self)

    @property
    def stride(self) -> int:
        return self.window_bp if self.stride_bp is None else self.stride_bp

    @property
    def tiles_per_region(self) -> int:
        return (self.region_bp - self.window_bp) // self.stride + 1


@dataclass(frozen=True)
class CtcfConfig:
    """How ``build_ctcf`` finds motif sites and labels them (nothing here is random).

    Sites are matches of the JASPAR matrix on either strand with relative score
    ``(score - min) / (max - min) >= min_relative_score`` (the demo genome plants its sites with the
    same definition, pseudocount and uniform background). Each kept site becomes a ``window_bp`` window
    centred on the motif's middle base, read on the + strand.
    """

    jaspar: str | None = None  # JASPAR count matrix; None: data/reference/MA0139.1_CTCF.jaspar
    window_bp: int = 200  # GROVER.md does not give the paper's length; 200 bp holds the motif and flanks
    min_relative_score: float = 0.8
    pseudocount: float = 1.0  # added per column, spread over A/C/G/T by the background
    background: str | float = "uniform"  # "uniform", "genome" (its A/C/G/T frequencies) or a GC fraction
    bound_column: int | None = None  # 1-based BED column (7 = ctcf_sites.bed's `bound`); None: every row is a peak
    label_by: Literal["motif", "window"] = "motif"  # which interval must overlap a peak for label 1
    chromosomes: tuple[str, ...] = ()  # scan only these; empty: every chromosome of the genome
    chunk_bp: int = 1 << 20  # positions scored at a time (memory ~ 30 bytes per position)
    test_chromosomes: tuple[str, ...] = ()
    validation_chromosomes: tuple[str, ...] = ()

    def __post_init__(self):
        _check_positive(self, "window_bp", "chunk_bp")
        if not 0.0 <= self.min_relative_score <= 1.0:
            raise GroverInputError(f"CtcfConfig.min_relative_score must lie in [0, 1], got {self.min_relative_score}")
        if self.pseudocount < 0:
            raise GroverInputError(f"CtcfConfig.pseudocount must be >= 0, got {self.pseudocount}")
        if isinstance(self.background, str):
            if self.background not in ("uniform", "genome"):
                raise GroverInputError(f"CtcfConfig.background must be 'uniform', 'genome' or a GC fraction, "
                                       f"got {self.background!r}")
        elif not 0.0 < float(self.background) < 1.0:
            raise GroverInputError(f"CtcfConfig.background as a GC fraction must lie in (0, 1), got {self.background}")
        if self.bound_column is not None and (isinstance(self.bound_column, bool) or not isinstance(
                self.bound_column, (int, np.integer)) or self.bound_column < 4):
            raise GroverInputError(f"CtcfConfig.bound_column is a 1-based BED column after the coordinates "
                                   f"(>= 4, e.g. 7), got {self.bound_column!r}")
        if self.label_by not in ("motif", "window"):
            raise GroverInputError(f"CtcfConfig.label_by must be 'motif' or 'window', got {self.label_by!r}")
        if self.jaspar is not None:
            object.__setattr__(self, "jaspar", str(self.jaspar))
        object.__setattr__(self, "chromosomes", tuple([self.chromosomes] if isinstance(self.chromosomes, str)
                                                       else self.chromosomes))
        _check_split_fields(self)


# ----------------------------------------------------------------------------------------------
# Reading genomes and BED files
# ----------------------------------------------------------------------------------------------

def _iter_genome(genome, chromosomes: Sequence[str] | None = None) -> Iterator[tuple[str, bytes, np.ndarray]]:
    # One chromosome at a time: (name, raw letters, codes). Letters stay raw (soft-masked lower case);
    # windows are upper-cased when cut, so no second copy of a 250 Mbp chromosome is made.
    for name, letters in iter_fasta(genome, chromosomes=chromosomes or None):
        yield name, letters, encode_nucleotides(letters)


def read_bed(path: str | os.PathLike, *, what: str = "BED") -> pd.DataFrame:
    """Read a BED file (plain or gzip) into a DataFrame.

    Lines starting with ``#``, ``track`` or ``browser`` and blank lines are skipped. Columns are
    ``chromosome`` (str), ``start``, ``end`` (int, 0-based half-open), then as far as present ``name``,
    ``score``, ``strand`` (str) and ``column_7``, ``column_8``, ... (str, as read).

    Raises
    ------
    GroverInputError
        When the file is missing, has rows with fewer than 3 columns, or coordinates that are not
        integers with ``0 <= start <= end``.
    """
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"{what} file {path} does not exist: give the path of a BED file")
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rt") if gz else open(path)) as fh:
        lines = [(i, line) for i, line in enumerate(fh, 1) if line.strip() and not line.startswith(_BED_HEADERS)]
    if not lines:
        return pd.DataFrame({"chromosome": pd.Series(dtype=object), "start": pd.Series(dtype=np.int64),
                             "end": pd.Series(dtype=np.int64)})
    try:
        table = pd.read_csv(io.StringIO("".join(line for _, line in lines)), sep="\t", header=None, dtype=str,
                            keep_default_na=False)
    except pd.errors.ParserError as err:
        raise GroverInputError(f"{what} file {path} is not tab-separated BED with the same columns on every "
                               f"line ({err})") from None
    if table.shape[1] < 3:
        raise GroverInputError(f"{what} file {path} has {table.shape[1]} column(s); BED needs chrom, start, end "
                               "separated by tabs")
    table.columns = [_BED_NAMES[i] if i < len(_BED_NAMES) else f"column_{i + 1}" for i in range(table.shape[1])]
    for col in ("start", "end"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() | (values % 1 != 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise GroverInputError(f"{what} file {path}, line {lines[i][0]}: {col} {table[col].iloc[i]!r} is not "
                                   "an integer; BED columns 2-3 are 0-based start and end")
        table[col] = values.astype(np.int64)
    bad = (table["start"] < 0) | (table["end"] < table["start"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise GroverInputError(f"{what} file {path}, line {lines[i][0]}: start {table['start'].iloc[i]} and end "
                               f"{table['end'].iloc[i]} need 0 <= start <= end")
    return table


def _read_tss(path, *, need_strand: bool) -> pd.DataFrame:
    # TSS position: start on +, end - 1 on - (a 1-bp TSS BED and a gene BED both work).
    bed = read_bed(path, what="TSS BED")
    if need_strand:
        if "strand" not in bed:
            raise GroverInputError(f"TSS BED {path} has no strand column: Prom300 reads the window on the gene's "
                                   "strand; give BED6 (chrom, start, end, name, score, strand)")
        bad = ~bed["strand"].isin(["+", "-"])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise GroverInputError(f"TSS BED {path}: row {i + 1} has strand {bed['strand'].iloc[i]!r}; Prom300 "
                                   "needs + or - for every TSS")
    strand = bed["strand"] if "strand" in bed else pd.Series(".", index=bed.index)
    name = bed["name"] if "name" in bed else pd.Series("", index=bed.index)
    minus = (strand == "-").to_numpy()
    tss = np.where(minus, np.maximum(bed["end"].to_numpy() - 1, bed["start"].to_numpy()), bed["start"].to_numpy())
    return pd.DataFrame({"chromosome": bed["chromosome"].astype(str), "tss": tss.astype(np.int64),
                         "strand": strand.astype(str), "name": name.astype(str)})


def _unknown_chromosomes(what: str, path, wanted: set[str], genome_order: list[str], n_rows: int) -> set[str]:
    # Rows on chromosomes absent from the genome are counted; if none match, names must disagree.
    unknown = wanted - set(genome_order)
    if n_rows and unknown == wanted:
        raise GroverInputError(f"none of the chromosomes of {what} {path} ({', '.join(sorted(wanted)[:5])}) is in "
                               f"the genome ({', '.join(genome_order[:5])}): names must match, e.g. 'chr1' in both")
    return unknown


def _has_non_acgt(codes: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Return, per window ``[start, start + width)`` (inside ``codes``), whether it holds a non-ACGT letter."""
    out = np.zeros(starts.size, dtype=bool)
    offsets = np.arange(width)
    for a in range(0, starts.size, _WINDOW_BATCH):
        s = starts[a:a + _WINDOW_BATCH]
        out[a:a + s.size] = (codes[s[:, None] + offsets] == NOT_ACGT).any(axis=1)
    return out


def reverse_complement(sequence: str) -> str:
    """Return the reverse complement of an upper-case A/C/G/T string."""
    return sequence.translate(_COMPLEMENT)[::-1]


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------

def split_chromosomes(chromosomes: Sequence[str], *, test_chromosomes: Sequence[str] = (),
                      validation_chromosomes: Sequence[str] = ()) -> dict[str, str]:
    """Return chromosome -> split for ``chromosomes`` (genome order) by the rule of the module docstring.

    Named chromosomes win; an empty field takes its default from the chromosomes left. Named chromosomes
    missing from ``chromosomes`` are simply unused here (the builders check them against the genome).
    """
    test, validation = set(test_chromosomes), set(validation_chromosomes)
    if not test:
        left = [c for c in chromosomes if c not in validation]
        test = {left[-1]} if len(left) >= 2 else set()
    if not validation:
        left = [c for c in chromosomes if c not in test]
        validation = {left[-1]} if len(left) >= 2 else set()
    return {c: "test" if c in test else "validation" if c in validation else "train" for c in chromosomes}


def _apply_splits(df: pd.DataFrame, genome_order: list[str], config) -> pd.DataFrame:
    named = set(config.test_chromosomes) | set(config.validation_chromosomes)
    missing = sorted(named - set(genome_order))
    if missing:
        raise GroverInputError(f"{type(config).__name__} names chromosome(s) {missing} that the genome lacks "
                               f"(it has {', '.join(genome_order[:8])}{'...' if len(genome_order) > 8 else ''})")
    present = [c for c in genome_order if c in set(df["chromosome"])]
    if len(present) == 1 and not named:
        # One chromosome: contiguous position blocks keep the splits apart along it.
        starts = df["start"].to_numpy()
        distinct = np.unique(starts)
        rank = np.searchsorted(distinct, starts)
        cut1, cut2 = round(0.8 * distinct.size), round(0.9 * distinct.size)
        split = np.where(rank < cut1, "train", np.where(rank < cut2, "validation", "test"))
        df["split"] = split
        rule = "position"
    else:
        mapping = split_chromosomes(present, test_chromosomes=config.test_chromosomes,
                                    validation_chromosomes=config.validation_chromosomes)
        df["split"] = df["chromosome"].map(mapping).astype(object)
        rule = "chromosome"
    chroms = {s: [c for c in present if (df.loc[df["split"] == s, "chromosome"] == c).any()] for s in SPLITS}
    df.attrs["splits"] = {"rule": rule, **chroms}
    return df


def _finish(rows: dict[str, list], extra: Sequence[str], *, task: str, config, genome_order: list[str],
            skipped: Counter, **attrs) -> pd.DataFrame:
    df = pd.DataFrame({col: rows[col] for col in ("sequence", "label", "chromosome", "start", "end", *extra)})
    df = df.astype({"label": np.int64, "start": np.int64, "end": np.int64})
    df.insert(5, "split", None)
    df = _apply_splits(df, genome_order, config)
    df.attrs.update(task=task, config=_jsonable(dataclasses.asdict(config)),
                    skipped={k: int(v) for k, v in sorted(skipped.items())}, **attrs)
    return df


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return str(value)
    return value


def _empty_rows(*extra: str) -> dict[str, list]:
    return {col: [] for col in ("sequence", "label", "chromosome", "start", "end", *extra)}


# ----------------------------------------------------------------------------------------------
# Prom300
# ----------------------------------------------------------------------------------------------

def shuffle_sequence(sequence: str, *, rng: np.random.Generator, tokenizer=None, chunk_bp: int = 6) -> str:
    """Return ``sequence`` with its tokens (or fixed chunks) in a random order: same nucleotide composition.

    With ``tokenizer`` (a DNA tokenizer whose ``tokenize`` returns nucleotide strings) its tokens are
    shuffled; without one, non-overlapping chunks of ``chunk_bp`` nt (the last one may be shorter).
    The result may equal ``sequence`` (one token, or all alike); ``build_prom300`` redraws then.
    """
    if tokenizer is not None:
        pieces = [str(t) for t in tokenizer.tokenize(sequence)]
        if "".join(pieces).upper() != sequence.upper():
            raise GroverInputError("tokenizer.tokenize does not return nucleotide strings that join back to the "
                                   f"sequence (got {pieces[:5]}...): pass the tokenizer of a DNA vocabulary, or "
                                   "tokenizer=None to shuffle fixed chunks")
    else:
        pieces = [sequence[i:i + chunk_bp] for i in range(0, len(sequence), chunk_bp)]
    return "".join(pieces[i] for i in rng.permutation(len(pieces))).upper()


def build_prom300(genome: str | os.PathLike, tss_bed: str | os.PathLike, *, config: Prom300Config = Prom300Config(),
                  tokenizer=None) -> pd.DataFrame:
    """Build Prom300: TSS-centred promoters (label 1) against their token-shuffled twins (label 0).

    Each TSS (BED6: the TSS is ``start`` on +, ``end - 1`` on -) gives the window
    ``-upstream_bp..+downstream_bp`` around it on the gene's strand. Minus-strand windows are
    reverse-complemented, so every sequence reads 5'->3' on the gene's strand and the TSS is always at
    index ``upstream_bp`` (249). ``start``/``end`` are the genomic window (+ strand coordinates).
    The twin shuffles the window's tokens (``tokenizer.tokenize``) or, without a tokenizer,
    ``shuffle_chunk``-nt chunks; its composition is the promoter's exactly, and it is never equal to it.

    Returns
    -------
    DataFrame
        ``TASK_COLUMNS`` plus ``strand`` (gene strand), ``tss`` (0-based TSS position), ``name`` (BED
        name) and ``pair`` (the same int for a promoter and its twin, which share coordinates and split).
        Rows alternate promoter, twin, in genome order. ``attrs["skipped"]`` counts TSSs left out:
        ``off_chromosome`` (window runs off the end), ``non_acgt`` (N or IUPAC inside), ``duplicate``
        (same chromosome, position and strand as an earlier TSS), ``unknown_chromosome`` (not in the
        genome), ``unshuffleable`` (every shuffle equalled the promoter). ``attrs["negatives"]`` says how
        twins were made.
    """
    cfg = config
    width = cfg.window_bp
    tss = _read_tss(tss_bed, need_strand=True)
    n_rows = len(tss)
    skipped = Counter(dict.fromkeys(("off_chromosome", "non_acgt", "duplicate", "unshuffleable"), 0))
    dup = tss.duplicated(["chromosome", "tss", "strand"])
    skipped["duplicate"] = int(dup.sum())
    tss = tss[~dup]
    by_chrom = {c: g.sort_values(["tss", "strand"], kind="stable") for c, g in tss.groupby("chromosome", sort=False)}
    rng = np.random.default_rng(cfg.seed)
    rows = _empty_rows("strand", "tss", "name", "pair")
    genome_order: list[str] = []
    for chrom, letters, codes in _iter_genome(genome):
        genome_order.append(chrom)
        sites = by_chrom.get(chrom)
        if sites is None:
            continue
        p, minus = sites["tss"].to_numpy(), (sites["strand"] == "-").to_numpy()
        # + strand: [p - 249, p + 51); - strand: upstream lies to the right, [p - 50, p + 250).
        starts = np.where(minus, p - cfg.downstream_bp, p - cfg.upstream_bp)
        off = (starts < 0) | (starts + width > codes.size)
        skipped["off_chromosome"] += int(off.sum())
        bad = np.zeros(starts.size, dtype=bool)
        bad[~off] = _has_non_acgt(codes, starts[~off], width)
        skipped["non_acgt"] += int(bad.sum())
        for i in np.flatnonzero(~off & ~bad):
            s = int(starts[i])
            seq = letters[s:s + width].decode("ascii").upper()
            if minus[i]:
                seq = reverse_complement(seq)
            for _ in range(_SHUFFLE_TRIES):
                twin = shuffle_sequence(seq, rng=rng, tokenizer=tokenizer, chunk_bp=cfg.shuffle_chunk)
                if twin != seq:
                    break
            else:
                skipped["unshuffleable"] += 1
                continue
            pair = len(rows["pair"]) // 2
            for sequence, label in ((seq, 1), (twin, 0)):
                rows["sequence"].append(sequence)
                rows["label"].append(label)
                rows["chromosome"].append(chrom)
                rows["start"].append(s)
                rows["end"].append(s + width)
                rows["strand"].append("-" if minus[i] else "+")
                rows["tss"].append(int(p[i]))
                rows["name"].append(sites["name"].iloc[i])
                rows["pair"].append(pair)
    unknown = _unknown_chromosomes("TSS BED", tss_bed, set(tss["chromosome"]), genome_order, n_rows)
    skipped["unknown_chromosome"] = int(tss["chromosome"].isin(unknown).sum())
    negatives = "shuffled tokens of the tokenizer" if tokenizer is not None else \
        f"shuffled {cfg.shuffle_chunk}-nt chunks"
    return _finish(rows, ("strand", "tss", "name", "pair"), task="prom300", config=cfg, genome_order=genome_order,
                   skipped=skipped, negatives=negatives)


# ----------------------------------------------------------------------------------------------
# PromScan
# ----------------------------------------------------------------------------------------------

def build_promscan(genome: str | os.PathLike, tss_bed: str | os.PathLike, *,
                   config: PromScanConfig = PromScanConfig()) -> pd.DataFrame:
    """Build PromScan: tiles over the region around each TSS, label 1 when a TSS lies inside the tile.

    The region of a TSS at ``p`` is ``[p - region_bp // 2, p - region_bp // 2 + region_bp)``, tiled from
    its left end every ``stride`` by ``window_bp`` windows (10 contiguous 1 kb tiles by default, the TSS
    in the sixth). A tile's label is 1 when any TSS of the BED (not only its region's) lies in it.
    Sequences are read on the + strand. Labels are unbalanced, as in the paper.

    Returns
    -------
    DataFrame
        ``TASK_COLUMNS`` plus ``tss`` (the region's TSS), ``strand`` (its strand, ``.`` if the BED has
        none), ``name`` (its name), ``tile`` (0-based index of the tile in the region) and
        ``tss_count`` (TSSs inside the tile). Rows in genome order by region, then tile.
        ``attrs["skipped"]`` counts tiles left out: ``off_chromosome``, ``non_acgt``, ``duplicate`` (the
        same window already made from a nearby TSS's region, or a repeated TSS), and TSS rows on an
        ``unknown_chromosome``. Overlapping tiles of nearby regions that are not identical are all kept.
    """
    cfg = config
    width, stride, n_tiles = cfg.window_bp, cfg.stride, cfg.tiles_per_region
    tss = _read_tss(tss_bed, need_strand=False)
    n_rows = len(tss)
    by_chrom = {c: g.sort_values(["tss", "strand"], kind="stable") for c, g in tss.groupby("chromosome", sort=False)}
    skipped = Counter(dict.fromkeys(("off_chromosome", "non_acgt", "duplicate"), 0))
    rows = _empty_rows("tss", "strand", "name", "tile", "tss_count")
    genome_order: list[str] = []
    for chrom, letters, codes in _iter_genome(genome):
        genome_order.append(chrom)
        sites = by_chrom.get(chrom)
        if sites is None:
            continue
        p = sites["tss"].to_numpy()
        all_tss = np.sort(p)  # every TSS of this chromosome, for the labels
        tile = np.tile(np.arange(n_tiles), p.size)
        region = np.repeat(np.arange(p.size), n_tiles)
        starts = p[region] - cfg.region_bp // 2 + tile * stride
        off = (starts < 0) | (starts + width > codes.size)
        bad = np.zeros(starts.size, dtype=bool)
        bad[~off] = _has_non_acgt(codes, starts[~off], width)
        seen = pd.Series(starts).duplicated().to_numpy()
        # Order of reasons: off the chromosome, then non-ACGT, then duplicate (one reason per tile).
        skipped["off_chromosome"] += int(off.sum())
        skipped["non_acgt"] += int(bad.sum())
        skipped["duplicate"] += int((seen & ~off & ~bad).sum())
        keep = np.flatnonzero(~off & ~bad & ~seen)
        counts = np.searchsorted(all_tss, starts[keep] + width) - np.searchsorted(all_tss, starts[keep])
        strands, names = sites["strand"].to_numpy(), sites["name"].to_numpy()
        for j, i in enumerate(keep):
            s = int(starts[i])
            rows["sequence"].append(letters[s:s + width].decode("ascii").upper())
            rows["label"].append(int(counts[j] > 0))
            rows["chromosome"].append(chrom)
            rows["start"].append(s)
            rows["end"].append(s + width)
            rows["tss"].append(int(p[region[i]]))
            rows["strand"].append(str(strands[region[i]]))
            rows["name"].append(str(names[region[i]]))
            rows["tile"].append(int(tile[i]))
            rows["tss_count"].append(int(counts[j]))
    unknown = _unknown_chromosomes("TSS BED", tss_bed, set(tss["chromosome"]), genome_order, n_rows)
    skipped["unknown_chromosome"] = int(tss["chromosome"].isin(unknown).sum())
    return _finish(rows, ("tss", "strand", "name", "tile", "tss_count"), task="promscan", config=cfg,
                   genome_order=genome_order, skipped=skipped)


# ----------------------------------------------------------------------------------------------
# Motifs and CTCF
# ----------------------------------------------------------------------------------------------

def read_jaspar(path: str | os.PathLike) -> np.ndarray:
    """Return a JASPAR count matrix as a float (4, width) array, rows A, C, G, T.

    Reads the JASPAR format (a ``>ID NAME`` line, then rows ``A [ 87 167 ... ]``) and the bare
    ``.pfm`` format (four rows of numbers, in the order A, C, G, T).
    """
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"JASPAR file {path} does not exist: give a count matrix such as "
                               f"{DEFAULT_CTCF_JASPAR}")
    lettered, bare = {}, []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(">"):
            continue
        m = re.fullmatch(r"([ACGT])\s*\[([^\]]*)\]", line)
        text = m.group(2) if m else line
        try:
            values = [float(x) for x in text.split()]
        except ValueError:
            raise GroverInputError(f"{path}: cannot read {line!r}; a JASPAR matrix has rows like "
                                   "'A [ 87 167 ... ]' for A, C, G and T") from None
        if m:
            lettered[m.group(1)] = values
        else:
            bare.append(values)
    if lettered and bare:
        raise GroverInputError(f"{path} mixes lettered rows ('A [ ... ]') and bare rows; use one JASPAR format")
    rows = [lettered.get(b) for b in "ACGT"] if lettered else bare
    if len(rows) != 4 or any(r is None for r in rows) or len({len(r) for r in rows}) != 1 or not rows[0]:
        raise GroverInputError(f"{path} is not a JASPAR count matrix: it needs four rows (A, C, G, T) of the "
                               "same length")
    counts = np.array(rows, dtype=float)
    if (counts < 0).any() or (counts.sum(axis=0) <= 0).any():
        raise GroverInputError(f"{path}: counts must be >= 0 with every column summing above 0")
    return counts


def motif_log_odds(counts: np.ndarray, *, pseudocount: float = 1.0, background: Sequence[float] | None = None
                   ) -> np.ndarray:
    """Return the (4, width) log2-odds matrix of a count matrix against a background.

    ``p = (count + pseudocount * bg) / (column total + pseudocount)`` and ``log2(p / bg)``, with ``bg`` the
    A, C, G, T background (uniform when None). With the defaults this is the demo genome's matrix.
    """
    counts = np.asarray(counts, dtype=float)
    bg = np.full(4, 0.25) if background is None else np.asarray(background, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != 4 or bg.shape != (4,) or (bg <= 0).any():
        raise GroverInputError("motif_log_odds needs (4, width) counts and 4 positive background frequencies")
    bg = bg / bg.sum()
    probs = (counts + pseudocount * bg[:, None]) / (counts.sum(axis=0) + pseudocount)
    return np.log2(probs / bg[:, None])


def relative_score(scores, pwm: np.ndarray):
    """Return ``(score - min) / (max - min)``: 0 for the worst possible site of ``pwm``, 1 for the best."""
    lo, hi = pwm.min(axis=0).sum(), pwm.max(axis=0).sum()
    return (np.asarray(scores, dtype=float) - lo) / (hi - lo)


def _codes_of(codes_or_sequence) -> np.ndarray:
    # uint8 arrays are codes (encode_nucleotides output); text is encoded here.
    if isinstance(codes_or_sequence, np.ndarray):
        if codes_or_sequence.dtype != np.uint8 or codes_or_sequence.ndim != 1:
            raise GroverInputError("scan_motif: an array must be 1-D uint8 codes from encode_nucleotides; "
                                   "pass a str or bytes sequence instead")
        if ((codes_or_sequence > 3) & (codes_or_sequence != NOT_ACGT)).any():
            raise GroverInputError("scan_motif: a uint8 array must hold codes A0 C1 G2 T3 (other letters 255), "
                                   "as encode_nucleotides gives; pass a str or bytes sequence instead")
        return codes_or_sequence
    if isinstance(codes_or_sequence, (str, bytes, bytearray)):
        return encode_nucleotides(bytes(codes_or_sequence) if isinstance(codes_or_sequence, bytearray)
                                  else codes_or_sequence)
    raise GroverInputError(f"scan_motif needs a sequence (str/bytes) or uint8 codes, got {type(codes_or_sequence)}")


def scan_motif(codes_or_sequence, pwm: np.ndarray, *, threshold: float, chunk_bp: int = 1 << 20) -> pd.DataFrame:
    """Find every match of a log-odds matrix on both strands with relative score >= ``threshold``.

    ``codes_or_sequence`` is a DNA string/bytes or uint8 codes (``encode_nucleotides``); windows holding a
    non-ACGT letter never match. Scoring is vectorised: one pass per motif column over ``chunk_bp``
    positions at a time, so memory stays ~30 bytes x ``chunk_bp`` whatever the sequence length. The
    minus strand is scored with the reverse-complemented matrix (rows and columns reversed).

    Returns
    -------
    DataFrame
        ``start``, ``end`` (0-based, half-open, + strand coordinates of the motif), ``strand`` (``+``:
        the matrix reads the sequence as given; ``-``: it reads the reverse complement),
        ``motif_score`` (log-odds), ``relative_score``; sorted by start, then strand.
    """
    pwm = np.asarray(pwm, dtype=float)
    if pwm.ndim != 2 or pwm.shape[0] != 4 or pwm.shape[1] == 0:
        raise GroverInputError(f"scan_motif needs a (4, width) log-odds matrix, got shape {pwm.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise GroverInputError(f"scan_motif: threshold is a relative score in [0, 1], got {threshold}")
    codes = _codes_of(codes_or_sequence)
    width = pwm.shape[1]
    lo, hi = pwm.min(axis=0).sum(), pwm.max(axis=0).sum()
    cutoff = lo + threshold * (hi - lo) - _SCORE_TOLERANCE
    # One 256-row table per strand indexed by the codes themselves (no copy of the chromosome); every
    # row but A/C/G/T scores -inf, so a window holding N never reaches the cutoff.
    tables = {}
    for strand, matrix in (("+", pwm), ("-", pwm[::-1, ::-1])):  # reverse complement: rows and columns reversed
        table = np.full((width, 256), -np.inf)
        table[:, :4] = matrix.T
        tables[strand] = table
    n_pos = codes.size - width + 1
    found = []
    for a in range(0, max(n_pos, 0), chunk_bp):
        n = min(chunk_bp, n_pos - a)
        for strand, table in tables.items():
            score = np.zeros(n)
            for j in range(width):  # a loop over motif columns, vectorised over positions
                score += np.take(table[j], codes[a + j:a + j + n])
            hit = np.flatnonzero(score >= cutoff)
            if hit.size:
                found.append(pd.DataFrame({"start": a + hit, "strand": strand, "motif_score": score[hit]}))
    if not found:
        return pd.DataFrame({"start": pd.Series(dtype=np.int64), "end": pd.Series(dtype=np.int64),
                             "strand": pd.Series(dtype=object), "motif_score": pd.Series(dtype=float),
                             "relative_score": pd.Series(dtype=float)})
    out = pd.concat(found, ignore_index=True).sort_values(["start", "strand"], kind="stable", ignore_index=True)
    out["start"] = out["start"].astype(np.int64)
    out.insert(1, "end", out["start"] + width)
    out["relative_score"] = (out["motif_score"] - lo) / (hi - lo)
    return out


def best_non_overlapping(matches: pd.DataFrame) -> pd.DataFrame:
    """Keep the best of overlapping matches (``start``, ``end``, ``motif_score``): greedy by score.

    The highest-scoring match is kept and every match overlapping it dropped, then the next; ties go to
    the leftmost, then the + strand. So both strands of one site give one row. Returns the kept rows in
    the input's order.
    """
    if matches.empty:
        return matches
    m = matches.sort_values(["start", "strand"], kind="stable")
    starts, ends = m["start"].to_numpy(), m["end"].to_numpy()
    # Clusters of chained overlaps; a singleton needs no decision, so the loop below sees few matches.
    new_cluster = np.concatenate(([True], starts[1:] >= np.maximum.accumulate(ends)[:-1]))
    cluster = np.cumsum(new_cluster)
    sizes = np.bincount(cluster)
    keep = sizes[cluster] == 1
    crowded = np.flatnonzero(~keep)
    if crowded.size:
        sub = m.iloc[crowded]
        # Best score first, then leftmost, then + strand (lexsort's last key is the primary one).
        order = crowded[np.lexsort(((sub["strand"] != "+").to_numpy(), starts[crowded],
                                    -sub["motif_score"].to_numpy()))]
        kept_starts: list[int] = []  # sorted starts of kept matches in crowded clusters (one width)
        kept_ends: list[int] = []
        for i in order:
            k = bisect.bisect_left(kept_starts, starts[i])
            left = k > 0 and kept_ends[k - 1] > starts[i]
            right = k < len(kept_starts) and kept_starts[k] < ends[i]
            if not (left or right):
                kept_starts.insert(k, int(starts[i]))
                kept_ends.insert(k, int(ends[i]))
                keep[i] = True
    return matches.loc[m.index[keep]].sort_index()


def _background(cfg: CtcfConfig, genome) -> np.ndarray | None:
    if cfg.background == "uniform":
        return None
    if cfg.background == "genome":
        # One extra pass over the genome, strand-symmetrised (A=T, C=G) as both strands are scanned.
        counts = np.zeros(4)
        for _, _, codes in _iter_genome(genome, cfg.chromosomes):
            counts += np.bincount(codes, minlength=256)[:4]
        if counts.sum() == 0:
            raise GroverInputError(f"genome {genome} holds no A/C/G/T: cannot use background='genome'")
        counts = counts + counts[::-1]
        return counts / counts.sum()
    gc = float(cfg.background)
    return np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])


def _overlaps(starts: np.ndarray, ends: np.ndarray, peaks: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Return whether each interval [start, end) overlaps any peak (peaks sorted by start)."""
    peak_starts, max_end = peaks
    if peak_starts.size == 0:
        return np.zeros(starts.size, dtype=bool)
    k = np.searchsorted(peak_starts, ends, side="left")  # peaks starting before the interval ends
    return (k > 0) & (max_end[np.maximum(k - 1, 0)] > starts)


def _read_peaks(path, cfg: CtcfConfig) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, np.ndarray]]]:
    bed = read_bed(path, what="peaks BED")
    if cfg.bound_column is not None:
        if cfg.bound_column > bed.shape[1]:
            raise GroverInputError(f"peaks BED {path} has {bed.shape[1]} columns, so bound_column="
                                   f"{cfg.bound_column} does not exist; set it to the 1-based column of the "
                                   "bound flag, or None to take every row as a peak")
        flag = pd.to_numeric(bed.iloc[:, cfg.bound_column - 1], errors="coerce")
        if flag.isna().any():
            i = int(np.flatnonzero(flag.isna().to_numpy())[0])
            raise GroverInputError(f"peaks BED {path}: row {i + 1}, column {cfg.bound_column} is "
                                   f"{bed.iloc[i, cfg.bound_column - 1]!r}, not a number (bound_column needs 1/0)")
        bed = bed[flag.to_numpy() != 0]
    peaks = {}
    for chrom, g in bed.groupby("chromosome", sort=False):
        g = g.sort_values("start", kind="stable")
        peaks[chrom] = (g["start"].to_numpy(), np.maximum.accumulate(g["end"].to_numpy()))
    return bed, peaks


def build_ctcf(genome: str | os.PathLike, peaks_bed: str | os.PathLike, *,
               config: CtcfConfig = CtcfConfig()) -> pd.DataFrame:
    """Build CTCF: windows on genome-wide motif matches, label 1 when the match overlaps a peak.

    Every chromosome (or ``config.chromosomes``) is scanned on both strands with the log-odds matrix of
    ``config.jaspar`` (``scan_motif``); overlapping matches (both strands of one site, or shifted
    matches) keep only the best (``best_non_overlapping``). Each match gives a ``window_bp`` window
    centred on its middle base, read on the + strand. The label is 1 when the motif
    (``label_by="motif"``) or the whole window (``"window"``) overlaps a row of ``peaks_bed`` (with
    ``bound_column``: a row whose value there is nonzero), else 0.

    Returns
    -------
    DataFrame
        ``TASK_COLUMNS`` plus ``strand`` (the motif's), ``motif_start``, ``motif_end`` (genomic),
        ``motif_offset`` (motif start inside the sequence), ``motif_score`` (log2-odds) and
        ``relative_score``; in genome order. ``attrs["skipped"]`` counts matches left out:
        ``overlapping`` (a better match overlapped them), ``off_chromosome`` (window runs off the end),
        ``non_acgt``, and ``unknown_chromosome`` peak rows. ``attrs["motif"]`` holds the matrix path
        and background used.
    """
    cfg = config
    jaspar = Path(cfg.jaspar) if cfg.jaspar is not None else DEFAULT_CTCF_JASPAR
    counts = read_jaspar(jaspar)
    peak_rows, peaks = _read_peaks(peaks_bed, cfg)
    background = _background(cfg, genome)
    pwm = motif_log_odds(counts, pseudocount=cfg.pseudocount, background=background)
    width = pwm.shape[1]
    half = cfg.window_bp // 2 - width // 2  # motif start inside the window: its middle base is centred
    skipped = Counter(dict.fromkeys(("overlapping", "off_chromosome", "non_acgt"), 0))
    rows = _empty_rows("strand", "motif_start", "motif_end", "motif_offset", "motif_score", "relative_score")
    genome_order: list[str] = []
    for chrom, letters, codes in _iter_genome(genome, cfg.chromosomes):
        genome_order.append(chrom)
        matches = scan_motif(codes, pwm, threshold=cfg.min_relative_score, chunk_bp=cfg.chunk_bp)
        best = best_non_overlapping(matches)
        skipped["overlapping"] += len(matches) - len(best)
        ms = best["start"].to_numpy()
        starts = ms - half
        off = (starts < 0) | (starts + cfg.window_bp > codes.size)
        bad = np.zeros(starts.size, dtype=bool)
        bad[~off] = _has_non_acgt(codes, starts[~off], cfg.window_bp)
        skipped["off_chromosome"] += int(off.sum())
        skipped["non_acgt"] += int(bad.sum())
        keep = ~off & ~bad
        best, starts = best[keep], starts[keep]
        chrom_peaks = peaks.get(chrom, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        if cfg.label_by == "motif":
            labels = _overlaps(best["start"].to_numpy(), best["end"].to_numpy(), chrom_peaks)
        else:
            labels = _overlaps(starts, starts + cfg.window_bp, chrom_peaks)
        for s in starts:
            rows["sequence"].append(letters[s:s + cfg.window_bp].decode("ascii").upper())
        rows["label"].extend(labels.astype(int).tolist())
        rows["chromosome"].extend([chrom] * len(best))
        rows["start"].extend(starts.tolist())
        rows["end"].extend((starts + cfg.window_bp).tolist())
        rows["strand"].extend(best["strand"].tolist())
        rows["motif_start"].extend(best["start"].tolist())
        rows["motif_end"].extend(best["end"].tolist())
        rows["motif_offset"].extend([half] * len(best))
        rows["motif_score"].extend(best["motif_score"].tolist())
        rows["relative_score"].extend(best["relative_score"].tolist())
    if not cfg.chromosomes:  # with a chosen subset, peaks elsewhere are simply not scanned
        unknown = _unknown_chromosomes("peaks BED", peaks_bed, set(peak_rows["chromosome"]), genome_order,
                                       len(peak_rows))
        skipped["unknown_chromosome"] = int(peak_rows["chromosome"].isin(unknown).sum())
    motif = {"jaspar": str(jaspar), "width": width,
             "background": None if background is None else [float(x) for x in background]}
    return _finish(rows, ("strand", "motif_start", "motif_end", "motif_offset", "motif_score", "relative_score"),
                   task="ctcf", config=cfg, genome_order=genome_order, skipped=skipped, motif=motif)


# ----------------------------------------------------------------------------------------------
# Users' tables
# ----------------------------------------------------------------------------------------------

def _table_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip", ".zst"):
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last == ".csv":
        return ","
    if last in (".tsv", ".tab"):
        return "\t"
    # Unknown extension: sniff the first bytes.
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    first = head.split(b"\n", 1)[0]
    if b"\t" in first:
        return "\t"
    if b"," in first:
        return ","
    raise GroverInputError(f"cannot tell the format of {path}: name it .csv, .tsv or .parquet")


def read_task_table(path: str | os.PathLike, *, sequence_column: str = "sequence", label_column: str = "label",
                    seed: int = 0, split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> pd.DataFrame:
    """Load a user's task table (CSV, TSV or Parquet; by extension, else sniffed) in ``TASK_COLUMNS`` form.

    Sequences must be A/C/G/T/N (any case; returned upper case). Integer labels (or booleans, or floats
    holding integers) are kept; text labels become 0, 1, ... in sorted order with
    ``attrs["label_names"][i]`` the name of label ``i``. A ``split`` column must hold train/validation/
    test; without one, a seeded split stratified by label is made: per label, the examples are permuted
    and ``split_fractions`` (80/10/10) of them, rounded, go to validation and test (the rest train).
    Missing ``chromosome`` becomes None and missing ``start``/``end`` -1. Other columns are kept.

    Raises
    ------
    GroverInputError
        Missing file or column (the message lists the columns found), an empty table, a bad sequence or
        label (the message names the first bad row, 1-based, header not counted), or bad split values.
    """
    path = Path(path)
    if not path.is_file():
        raise GroverInputError(f"task table {path} does not exist: give a CSV, TSV or Parquet file")
    kind = _table_format(path)
    try:
        df = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path, sep=kind)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise GroverInputError(f"cannot read task table {path} as {'Parquet' if kind == 'parquet' else 'CSV/TSV'}: "
                               f"{err}") from None
    missing = [c for c in (sequence_column, label_column) if c not in df.columns]
    if missing:
        raise GroverInputError(f"task table {path} has no column {', '.join(map(repr, missing))}; columns found: "
                               f"{', '.join(map(str, df.columns))}. Pass sequence_column= / label_column=")
    for wanted, given in (("sequence", sequence_column), ("label", label_column)):
        if given != wanted and wanted in df.columns:
            raise GroverInputError(f"task table {path} has a column {wanted!r} besides {given!r}; rename one")
    if df.empty:
        raise GroverInputError(f"task table {path} has no rows")
    df = df.rename(columns={sequence_column: "sequence", label_column: "label"}).reset_index(drop=True)

    seq = df["sequence"]
    bad = ~seq.map(lambda s: isinstance(s, str) and re.fullmatch(r"[ACGTNacgtn]+", s) is not None).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = seq.iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        shown = repr(value[:40] + "...") if isinstance(value, str) and len(value) > 40 else repr(value)
        raise GroverInputError(f"task table {path}: row {i + 1} of column {sequence_column!r} is {shown}; sequences "
                               "must be non-empty A/C/G/T/N (any case)")
    df["sequence"] = seq.str.upper()
    df["label"], label_names = _labels(df["label"], path, label_column)

    if "split" in df.columns:
        bad = ~df["split"].isin(SPLITS).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise GroverInputError(f"task table {path}: row {i + 1} has split {df['split'].iloc[i]!r}; use train, "
                                   "validation or test (or drop the column for a seeded 80/10/10 split)")
        split_rule = "given"
    else:
        df["split"] = _stratified_split(df["label"].to_numpy(), seed=seed, fractions=split_fractions)
        split_rule = "stratified"
    if "chromosome" not in df.columns:
        df["chromosome"] = None
    for col in ("start", "end"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(-1).astype(np.int64) if col in df.columns else -1
    df = df[list(TASK_COLUMNS) + [c for c in df.columns if c not in TASK_COLUMNS]]
    df.attrs.update(task=path.name.split(".")[0], source=str(path),
                    splits={"rule": split_rule, "seed": seed, "fractions": list(split_fractions)})
    if label_names is not None:
        df.attrs["label_names"] = label_names
    return df


def _labels(labels: pd.Series, path: Path, column: str) -> tuple[pd.Series, list[str] | None]:
    missing = labels.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise GroverInputError(f"task table {path}: row {i + 1} has no value in label column {column!r}")
    if pd.api.types.is_bool_dtype(labels) or pd.api.types.is_integer_dtype(labels):
        return labels.astype(np.int64), None
    if pd.api.types.is_float_dtype(labels):
        bad = (labels % 1 != 0).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise GroverInputError(f"task table {path}: row {i + 1} has label {float(labels.iloc[i])!r}; labels "
                                   "must be integers or class names")
        return labels.astype(np.int64), None
    text = labels.astype(str)
    names = sorted(text.unique())
    return text.map({name: i for i, name in enumerate(names)}).astype(np.int64), names


def _stratified_split(labels: np.ndarray, *, seed: int, fractions: Sequence[float]) -> np.ndarray:
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
        raise GroverInputError(f"split_fractions must be three numbers >= 0 summing to 1 (train, validation, "
                               f"test), got {fractions}")
    rng = np.random.default_rng(seed)
    split = np.full(labels.size, "train", dtype=object)
    for value in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == value))
        n_val, n_test = round(fractions[1] * idx.size), round(fractions[2] * idx.size)
        split[idx[:n_val]] = "validation"
        split[idx[n_val:n_val + n_test]] = "test"
    return split


def write_task_table(df: pd.DataFrame, path: str | os.PathLike, *, config=None) -> Path:
    """Write a task table as Parquet atomically, with its record as JSON beside it; return the Parquet path.

    The JSON (``path`` with suffix ``.json``) holds ``task``, ``config`` (``config`` as
    ``dataclasses.asdict``, else ``df.attrs["config"]``), ``rows``, ``summary`` (``task_summary``) and
    the rest of ``df.attrs`` (skipped counts, splits, label names). Both files appear under a temporary
    name and are renamed, so a reader never sees half a file.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise GroverInputError(f"{path}: give the Parquet path (e.g. prom300.parquet); the JSON goes beside it")
    missing = [c for c in TASK_COLUMNS if c not in df.columns]
    if missing:
        raise GroverInputError(f"task table lacks column(s) {missing}; it needs {list(TASK_COLUMNS)}")
    attrs = _jsonable(dict(df.attrs))
    if config is not None:
        attrs["config"] = _jsonable(dataclasses.asdict(config))
    out = df.copy()
    out.attrs = attrs
    with atomic_path(path) as tmp:
        out.to_parquet(tmp, index=False)
    summary = task_summary(df)
    record = {"task": attrs.get("task"), "config": attrs.get("config"), "rows": int(len(df)),
              "summary": json.loads(summary.to_json(orient="records")),
              **{k: v for k, v in attrs.items() if k not in ("task", "config")}}
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=2, default=str) + "\n")
    return path


def task_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Return one row per split (train, validation, test; empty ones too).

    Columns: ``split``, ``n`` (examples), ``positives`` (label 1), ``positive_fraction`` (NaN when
    ``n`` is 0) and ``chromosomes`` (distinct chromosomes in the split).
    """
    rows = []
    for split in SPLITS:
        part = df[df["split"] == split]
        n = len(part)
        positives = int((part["label"] == 1).sum())
        rows.append({"split": split, "n": n, "positives": positives,
                     "positive_fraction": positives / n if n else float("nan"),
                     "chromosomes": int(part["chromosome"].nunique())})
    return pd.DataFrame(rows)
